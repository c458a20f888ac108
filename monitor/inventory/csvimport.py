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
from collections import Counter
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory.load import Inventory, from_source
from monitor.inventory.source import Loc, Source, config_issue, load_yaml, read_config_bytes
from monitor.inventory.writer import CSV_COLUMNS, FORMULA_START
from monitor.text import printable, quoted

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


def _unescape(cell: str) -> str:
    """A cell as exported by :func:`monitor.inventory.writer.to_csv`, without its guard."""
    if cell.startswith("'") and cell[1:2] in (*FORMULA_START, "'"):
        return cell[1:]
    return cell


def _syntax(exc: csv.Error, start: int, file: str) -> ConfigIssue:
    text = str(exc)
    if "unexpected end of data" in text:
        text = f"a quoted cell opened on line {start} is never closed (a '\"' is missing)"
    return config_issue(start, "", f"CSV syntax error: {text}", file)


def _header(header: list[str] | None, file: str) -> list[str]:
    """The column names, or the one line that says what is wrong with the header row."""
    if not header or not any(h.strip() for h in header):
        raise ConfigError([config_issue(1, "", "the file is empty; expected a header row", file)])
    names = [h.strip() for h in header]
    if len(names) == 1 and ";" in names[0]:
        raise ConfigError(
            [
                config_issue(
                    1,
                    "header",
                    "the cells are separated by ';': export the sheet as 'CSV UTF-8', "
                    "with ',' between cells",
                    file,
                )
            ]
        )
    twice = [c for c, n in Counter(names).items() if n > 1]
    if twice:
        which = ", ".join(quoted(c) for c in twice)
        raise ConfigError(
            [
                config_issue(
                    1,
                    "header",
                    f"column {which} appears twice: keep one"
                    if len(twice) == 1
                    else f"columns {which} appear twice: keep one of each",
                    file,
                )
            ]
        )
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [c for c in names if c not in CSV_COLUMNS and c not in _OPTIONAL]
    if missing or unknown:
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(quoted(c, 40) for c in unknown)}")
        expected = ",".join(CSV_COLUMNS)
        raise ConfigError(
            [config_issue(1, "header", f"{'; '.join(what)}; expected {expected}[,level]", file)]
        )
    return names


def read_csv(raw: bytes, file: str, base: Source | None = None) -> Inventory:
    """Validate spreadsheet bytes against the inventory rules; lines are CSV line numbers.

    Every bad row and every bad cell of a row is reported (with the rules of a YAML
    inventory), a CSV syntax error with the line where its record starts.
    """
    file = printable(file)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [config_issue(line, "", "not valid UTF-8; export the sheet as 'CSV UTF-8'", file)]
        ) from None
    # strict: an unterminated quote is an error, not a cell that swallows the rest
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ConfigError([_syntax(exc, 1, file)]) from None
    names = _header(header, file)
    if base is not None and not isinstance(base.data, dict):
        raise ConfigError([base.issue((), "expected a mapping with 'profiles:' at the top")])

    data: dict[str, Any] = dict(base.data) if base is not None else {"profiles": DEFAULT_PROFILES}
    lines: dict[Loc, int] = {}
    points: list[dict[str, Any]] = []
    issues: list[ConfigIssue] = []
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: its record starts here
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            issues.append(_syntax(exc, start, file))
            break
        if len(row) > len(names):
            issues.append(config_issue(start, "", "more cells than header columns", file))
            continue
        cells = {k: _unescape(v.strip()) for k, v in zip(names, row, strict=False)}
        if not any(cells.values()):
            continue  # a blank row
        point: dict[str, Any] = {
            "id": cells.get("id", ""),
            "name": cells.get("name", ""),
            "host": cells.get("host", ""),
        }
        for optional in ("parent", "profile", "level"):
            if cells.get(optional):
                point[optional] = cells[optional]
        loc: Loc = ("points", len(points))
        lines[loc] = start
        for key in point:
            lines[(*loc, key)] = start
        points.append(point)
    if issues:
        raise ConfigError(issues)
    if not points:
        raise ConfigError([config_issue(1, "", "no rows: list at least one meeting point", file)])
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
    """Read a spreadsheet file (see :func:`read_csv`); the file is read as a config file is
    (a regular file of at most 16 MiB, see :func:`~monitor.inventory.source.read_config_bytes`)."""
    raw = read_config_bytes(path, "CSV")
    return read_csv(raw, str(path), load_yaml(base) if base is not None else None)
