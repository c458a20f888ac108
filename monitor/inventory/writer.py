"""Writing an inventory back out as YAML (readable, diacritics intact) or CSV.

The YAML is emitted by hand rather than by ``yaml.dump`` so that it reads like a
file an operator would write: settings in human units (``5s``, ``2%``), one
line per commune in flow style, Vietnamese names unescaped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from pydantic import BaseModel, BeforeValidator

from monitor.inventory.load import DEFAULT_LEVELS, Inventory, Point
from monitor.inventory.source import reads_as_text
from monitor.inventory.units import format_duration, parse_duration, parse_ratio

__all__ = ["CSV_COLUMNS", "FORMULA_START", "csv_cell", "points_yaml", "to_csv", "to_yaml"]

#: columns of the operator's spreadsheet, in order (``level`` is optional on import)
CSV_COLUMNS = ("id", "name", "parent", "host", "profile")

#: a cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"):
#: ``=cmd|' /C calc'!A0`` as a name would run on the operator's machine
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and reads_as_text(text) and yaml.safe_load(text) == text:
        return text  # plain only if both our loader and a YAML 1.1 one read it back as text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _human(model: BaseModel) -> dict[str, Any]:
    """A model's fields in config spelling, leaving out values equal to the defaults."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None or (
            not info.is_required() and value == info.get_default(call_default_factory=True)
        ):
            continue
        funcs = [m.func for m in info.metadata if isinstance(m, BeforeValidator)]
        if parse_duration in funcs:
            value = format_duration(value)
        elif parse_ratio in funcs:
            value = f"{value * 100:g}%"
        elif isinstance(value, BaseModel):
            value = _human(value)
        out[name] = value
    return out


def _value(value: Any) -> str:
    """Any value in YAML flow style."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return _scalar(value)


def _flow(mapping: dict[str, Any]) -> str:
    return _value(mapping)


def _point_fields(inv: Inventory, p: Point) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": p.id, "name": p.name, "host": p.host}
    inherited = inv.points[p.parent].profile if p.parent else None
    if p.profile != inherited:
        fields["profile"] = p.profile
    if p.level != DEFAULT_LEVELS[min(p.depth, len(DEFAULT_LEVELS) - 1)]:
        fields["level"] = p.level
    return fields


def _points(inv: Inventory, ids: Iterable[str], indent: str, out: list[str]) -> None:
    """The points ``ids`` and everything below them, nested (an explicit stack, no recursion)."""
    stack: list[tuple[Iterator[str], str]] = [(iter(ids), indent)]
    while stack:
        pending, here = stack[-1]
        pid = next(pending, None)
        if pid is None:
            stack.pop()
            continue
        p = inv.points[pid]
        fields = _point_fields(inv, p)
        if not p.children:
            out.append(f"{here}- {_flow(fields)}")
            continue
        first = True
        for key, value in fields.items():
            out.append(f"{here}{'- ' if first else '  '}{key}: {_scalar(value)}")
            first = False
        out.append(f"{here}  points:")
        stack.append((iter(p.children), here + "    "))


def to_yaml(inv: Inventory, header: str = "") -> str:
    """The inventory as YAML that :func:`monitor.inventory.load_inventory` reads back equal."""
    out = [line.rstrip() for line in header.splitlines()]
    for section, model in (("monitor", inv.settings), ("thresholds", inv.thresholds)):
        fields = _human(model)
        if fields:
            out.append(f"{section}:")
            out.extend(f"  {k}: {_scalar(v)}" for k, v in fields.items())
    if inv.maintenance:
        out.append("maintenance:")
        for window in inv.maintenance:
            fields = window.model_dump(by_alias=True, exclude_none=True)
            out.append(f"  - {_flow(fields)}")
    for section, settings in (("agents", inv.agents), ("alerts", inv.alerts)):
        dumped = settings.model_dump(mode="json", exclude_defaults=True)
        if dumped:  # JSON is YAML: nested lists of receivers in one exact line
            out.append(f"{section}: {json.dumps(dumped, ensure_ascii=False)}")
    if inv.profiles:
        out.append("profiles:")
        for name, profile in inv.profiles.items():
            out.append(f"  {_scalar(name)}:")
            for probe, settings in _human(profile).items():
                out.append(f"    {probe}: {_value(settings)}")
    return "\n".join(out) + "\n" + points_yaml(inv)


def points_yaml(inv: Inventory) -> str:
    """Only the ``points:`` section, nested by parent."""
    out = ["points:"]
    _points(inv, inv.roots, "  ", out)
    return "\n".join(out) + "\n"


def csv_cell(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a ``'`` in front of a cell that would start a
    formula (or that starts with ``'`` itself, so that the import, which takes one ``'`` off
    such cells, gives back exactly ``text``)."""
    return f"'{text}" if text.startswith((*FORMULA_START, "'")) else text


def to_csv(inv: Inventory) -> str:
    """The points as the spreadsheet that ``confmon inventory import`` reads (every cell
    guarded by :func:`csv_cell`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, "level"])
    for p in inv.points.values():
        row = [p.id, p.name, p.parent or "", p.host, p.profile, p.level]
        writer.writerow([csv_cell(cell) for cell in row])
    return buf.getvalue()
