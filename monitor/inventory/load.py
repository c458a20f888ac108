"""Loading an inventory: YAML -> strict schema -> whole-tree rules -> :class:`Inventory`.

Every problem becomes a :class:`~monitor.errors.ConfigIssue` naming file, line
and field, and all of them are raised together as one
:class:`~monitor.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory.model import (
    InventorySpec,
    MaintenanceWindow,
    MonitorSettings,
    PointSpec,
    Profile,
    Thresholds,
)
from monitor.inventory.source import Loc, Source, load_yaml, parse_yaml
from monitor.inventory.units import format_duration

__all__ = [
    "DEFAULT_LEVELS",
    "Inventory",
    "Point",
    "from_source",
    "load_inventory",
    "parse_inventory",
]

#: level of a point by its depth in the tree, when the file does not say
DEFAULT_LEVELS = ("district", "commune", "site")


@dataclass(frozen=True, slots=True)
class Point:
    """A meeting point as the rest of confmon sees it: resolved and immutable."""

    id: str
    name: str
    host: str
    profile: str
    level: str
    parent: str | None
    district: str
    depth: int
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """A validated inventory. ``points`` is in tree (depth-first) order."""

    file: str
    settings: MonitorSettings
    thresholds: Thresholds
    profiles: dict[str, Profile]
    points: dict[str, Point]
    roots: tuple[str, ...] = field(default=())
    maintenance: tuple[MaintenanceWindow, ...] = ()

    def profile_of(self, point: Point | str) -> Profile:
        """The probe profile of a point."""
        p = self.points[point] if isinstance(point, str) else point
        return self.profiles[p.profile]

    def without_probes(self, probes: frozenset[str] | set[str]) -> Inventory:
        """A copy whose profiles do not run ``probes`` (e.g. ICMP when it is not permitted).

        A profile left with no probe keeps running nothing; its points then
        show ``unknown``.
        """
        if not probes:
            return self
        profiles = {}
        for name, profile in self.profiles.items():
            update: dict[str, object] = dict.fromkeys(probes & set(profile.probes()))
            if profile.reachable_by is not None:
                update["reachable_by"] = [p for p in profile.reachable_by if p not in probes]
            profiles[name] = profile.model_copy(update=update)
        return dataclasses.replace(self, profiles=profiles)

    def districts(self) -> list[Point]:
        """The top-level points (district headquarters), in file order."""
        return [self.points[r] for r in self.roots]

    def descendants(self, point_id: str) -> list[Point]:
        """Every point below ``point_id``, depth-first."""
        out: list[Point] = []
        stack = list(reversed(self.points[point_id].children))
        while stack:
            p = self.points[stack.pop()]
            out.append(p)
            stack.extend(reversed(p.children))
        return out


# --- pydantic error translation -------------------------------------------------------------


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that the value at ``loc`` is validated against, if any."""
    current: Any = InventorySpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part)
            current = info.annotation if info else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _message(err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    value = err.get("input")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        if model is None:
            return "unknown key"
        return (
            f"unknown key{_did_you_mean(str(loc[-1]), list(model.model_fields))}; expected one of: "
            + (", ".join(model.model_fields))
        )
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_describe(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_describe(value)}"
    if kind in ("string_type",):
        return f"expected text, got {_describe(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_describe(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys to values, got {_describe(value)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(value)}"
    if kind == "string_pattern_mismatch" and loc and loc[0] == "profiles":
        return f"{value!r} is not a valid profile name: use letters, digits, '-', '_' and '.'"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not valid: use lowercase letters, digits, '-' and '_'"
    if kind == "too_short" and loc == ("points",):
        return "no points: list at least one meeting point"
    bounds = {
        "less_than_equal": "at most",
        "greater_than_equal": "at least",
        "less_than": "less than",
        "greater_than": "greater than",
    }
    if kind in bounds:
        limit = next(iter(err.get("ctx", {}).values()), "?")
        return f"must be {bounds[kind]} {limit}, got {_describe(value)}"
    msg = str(err["msg"])
    return f"{msg[:1].lower()}{msg[1:]}, got {_describe(value)}"


def _spec(source: Source) -> InventorySpec:
    if not isinstance(source.data, dict):
        raise ConfigError(
            [
                source.issue(
                    (),
                    f"expected a mapping with 'points:' at the top, got {_describe(source.data)}",
                )
            ]
        )
    try:
        return InventorySpec.model_validate(source.data)
    except pydantic.ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            loc: Loc = tuple(err["loc"])
            # a dict-key error has the key itself as the last element, with "[key]" suffix
            loc = tuple(p for p in loc if not (isinstance(p, str) and p.endswith("[key]")))
            issues.append(source.issue(loc, _message(err)))
        raise ConfigError(_dedupe(issues)) from None


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[int, str]] = set()
    out = []
    for issue in issues:
        if (issue.line, issue.field) not in seen:
            seen.add((issue.line, issue.field))
            out.append(issue)
    return out


# --- whole-tree rules ------------------------------------------------------------------------


@dataclass
class _Flat:
    spec: PointSpec
    loc: Loc
    parent: str | None
    parent_loc: Loc | None  # where the parent reference is written (for error lines)


def _flatten(specs: list[PointSpec], loc: Loc, parent: str | None, out: list[_Flat]) -> None:
    for i, spec in enumerate(specs):
        here = (*loc, i)
        out.append(_Flat(spec, here, parent, None))
        _flatten(spec.points, (*here, "points"), spec.id, out)


def _resolve(spec: InventorySpec, source: Source) -> Inventory:
    issues: list[ConfigIssue] = []
    settings = spec.monitor
    if settings.stale_after <= settings.interval:
        issues.append(
            source.issue(
                ("monitor", "stale_after"),
                f"{format_duration(settings.stale_after)} must be longer than monitor.interval "
                f"({format_duration(settings.interval)}), or every point would flap to unknown",
            )
        )
    for name, profile in spec.profiles.items():
        if not profile.probes():
            issues.append(
                source.issue(
                    ("profiles", name), "profile runs no probe: add icmp, tcp, http, sip or media"
                )
            )

    flat: list[_Flat] = []
    _flatten(spec.points, ("points",), None, flat)
    by_id: dict[str, _Flat] = {}
    for item in flat:
        first = by_id.get(item.spec.id)
        if first is not None:
            issues.append(
                source.issue(
                    (*item.loc, "id"),
                    f"duplicate id {item.spec.id!r} (first used on line {source.line_of((*first.loc, 'id'))})",
                )
            )
            continue
        by_id[item.spec.id] = item

    # explicit `parent:` references (flat form), checked against nesting
    for item in by_id.values():
        ref = item.spec.parent
        if ref is None:
            continue
        ref_loc = (*item.loc, "parent")
        if item.parent is not None and ref != item.parent:
            issues.append(
                source.issue(ref_loc, f"parent {ref!r} contradicts nesting under {item.parent!r}")
            )
        elif ref not in by_id:
            issues.append(
                source.issue(
                    ref_loc,
                    f"parent {ref!r} is not the id of any point{_did_you_mean(ref, list(by_id))}",
                )
            )
        elif ref == item.spec.id:
            issues.append(source.issue(ref_loc, "a point cannot be its own parent"))
        else:
            item.parent = ref
            item.parent_loc = ref_loc

    for i, window in enumerate(spec.maintenance):
        for j, pid in enumerate(window.points):
            if pid not in by_id:
                issues.append(
                    source.issue(
                        ("maintenance", i, "points", j),
                        f"{pid!r} is not the id of any point{_did_you_mean(pid, list(by_id))}",
                    )
                )

    # cycles, reported once per cycle at its first point in file order
    reported: set[str] = set()
    for item in by_id.values():
        chain = [item.spec.id]
        cur = item.parent
        while cur is not None and cur in by_id and cur not in chain:
            chain.append(cur)
            cur = by_id[cur].parent
        if cur is not None and cur in chain:
            cycle = chain[chain.index(cur) :]
            if not reported.intersection(cycle):
                reported.update(cycle)
                text = " -> ".join([*cycle, cur])
                issues.append(
                    source.issue(item.parent_loc or item.loc, f"parent chain forms a cycle: {text}")
                )
    if issues:
        raise ConfigError(issues)

    children: dict[str | None, list[str]] = {}
    for item in by_id.values():
        children.setdefault(item.parent, []).append(item.spec.id)

    defined = ", ".join(spec.profiles) or "none; add a 'profiles:' section"
    points: dict[str, Point] = {}

    def visit(pid: str, depth: int, district: str, inherited: str | None) -> None:
        item = by_id[pid]
        profile = item.spec.profile or inherited
        if item.spec.profile is not None and item.spec.profile not in spec.profiles:
            issues.append(
                source.issue(
                    (*item.loc, "profile"),
                    f"unknown profile {item.spec.profile!r}"
                    f"{_did_you_mean(item.spec.profile, list(spec.profiles))}; defined: {defined}",
                )
            )
        elif profile is None:
            issues.append(
                source.issue(
                    item.loc, f"no profile: set 'profile' on this point (defined: {defined})"
                )
            )
        level = item.spec.level or DEFAULT_LEVELS[min(depth, len(DEFAULT_LEVELS) - 1)]
        points[pid] = Point(
            id=pid,
            name=item.spec.name,
            host=item.spec.host,
            profile=profile or "",
            level=level,
            parent=item.parent,
            district=district,
            depth=depth,
            children=tuple(children.get(pid, ())),
        )
        for child in children.get(pid, ()):
            visit(child, depth + 1, district, profile)

    roots = tuple(children.get(None, ()))
    for root in roots:
        visit(root, 0, root, None)
    if issues:
        raise ConfigError(issues)
    return Inventory(
        file=source.file,
        settings=settings,
        thresholds=spec.thresholds,
        profiles=dict(spec.profiles),
        points=points,
        roots=roots,
        maintenance=tuple(spec.maintenance),
    )


def from_source(source: Source) -> Inventory:
    """Validate parsed data (YAML, or rows of a spreadsheet) into an :class:`Inventory`."""
    return _resolve(_spec(source), source)


def parse_inventory(text: bytes | str, file: str = "<config>") -> Inventory:
    """Validate inventory YAML text; raise :class:`ConfigError` listing every problem."""
    return from_source(parse_yaml(text, file))


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory file; raise :class:`ConfigError` listing every problem."""
    return from_source(load_yaml(path))
