"""``confmon inventory import``: an operator's spreadsheet (CSV) -> inventory YAML.

Columns (header row required, any order): ``id,name,parent,host,profile`` and
optionally ``level``. ``parent`` is empty for a district headquarters;
``profile`` may be empty to inherit the parent's. Settings and profiles come
from a base inventory (``--base``) or from the built-in defaults. Rows are
checked by the same rules as a YAML inventory, and problems are reported by
file and line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory.load import Inventory, from_source
from monitor.inventory.source import Loc, Source, load_yaml
from monitor.inventory.writer import CSV_COLUMNS

__all__ = ["DEFAULT_PROFILES", "import_csv", "read_csv"]

#: profiles written when no base inventory is given
DEFAULT_PROFILES: dict[str, Any] = {
    "meeting-room": {
        "icmp": {"count": 5, "spacing": "20ms", "timeout": "1s"},
        "sip": {"transport": "udp", "port": 5060, "timeout": "1s"},
        "media": {"port": 7078, "packets": 50, "pacing": "20ms", "every": "30s"},
    }
}

_OPTIONAL = ("level",)


def read_csv(raw: bytes, file: str, base: Source | None = None) -> Inventory:
    """Validate spreadsheet bytes against the inventory rules; lines are CSV line numbers."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [ConfigIssue(line, "", "not valid UTF-8; export the sheet as 'CSV UTF-8'", file)]
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames
    if not header:
        raise ConfigError([ConfigIssue(1, "", "the file is empty; expected a header row", file)])
    names = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [c for c in names if c not in CSV_COLUMNS and c not in _OPTIONAL]
    if missing or unknown:
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(unknown)}")
        expected = ",".join(CSV_COLUMNS)
        raise ConfigError(
            [ConfigIssue(1, "header", f"{'; '.join(what)}; expected {expected}[,level]", file)]
        )
    reader.fieldnames = names

    data: dict[str, Any] = dict(base.data) if base is not None else {"profiles": DEFAULT_PROFILES}
    lines: dict[Loc, int] = {}
    points: list[dict[str, Any]] = []
    issues: list[ConfigIssue] = []
    try:
        for row in reader:
            if None in row:  # more cells than header columns
                issues.append(
                    ConfigIssue(reader.line_num, "", "more cells than header columns", file)
                )
                continue
            cells = {k: (v or "").strip() for k, v in row.items()}
            if not any(cells.values()):
                continue
            point: dict[str, Any] = {
                "id": cells["id"],
                "name": cells["name"],
                "host": cells["host"],
            }
            for optional in ("parent", "profile", "level"):
                if cells.get(optional):
                    point[optional] = cells[optional]
            loc: Loc = ("points", len(points))
            lines[loc] = reader.line_num
            for key in point:
                lines[(*loc, key)] = reader.line_num
            points.append(point)
    except csv.Error as exc:
        issues.append(ConfigIssue(reader.line_num, "", f"CSV syntax error: {exc}", file))
    if issues:
        raise ConfigError(issues)
    if not points:
        raise ConfigError([ConfigIssue(1, "", "no rows: list at least one meeting point", file)])
    data["points"] = points
    # settings and profiles keep the base file's lines; point rows get the CSV's
    base_lines = {k: v for k, v in (base.lines if base else {}).items() if k[:1] != ("points",)}
    source = Source(file=file, data=data, lines={**base_lines, (): 1, **lines})
    try:
        return from_source(source)
    except ConfigError as exc:
        # issues outside the rows belong to the base file, not to the CSV
        fixed = [
            ConfigIssue(i.line, i.field, i.message, base.file)
            if base is not None and not i.field.startswith("points")
            else i
            for i in exc.issues
        ]
        raise ConfigError(fixed) from None


def import_csv(path: str | Path, base: str | Path | None = None) -> Inventory:
    """Read a spreadsheet file (see :func:`read_csv`)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(0, "", f"cannot read file: {exc.strerror}", str(path))]
        ) from None
    return read_csv(raw, str(path), load_yaml(base) if base is not None else None)
