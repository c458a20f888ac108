"""Loading an inventory: YAML -> strict schema -> whole-tree rules -> :class:`Inventory`.

Every problem becomes a :class:`~monitor.errors.ConfigIssue` naming file, line
and field, and all of them are raised together as one
:class:`~monitor.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory.model import (
    PROBE_TYPES,
    InventorySpec,
    MaintenanceWindow,
    MonitorSettings,
    PointSpec,
    Profile,
    Thresholds,
)
from monitor.inventory.source import Loc, Source, load_yaml, parse_yaml
from monitor.inventory.units import format_duration
from monitor.inventory.validate import did_you_mean, validate

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
            for key in ("reachable_by", "required"):
                names = getattr(profile, key)
                if names is not None:
                    kept = [p for p in names if p not in probes]
                    # all of them left out: back to the default of what the profile still runs
                    update[key] = kept or None
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


def _spec(source: Source) -> InventorySpec:
    return validate(source, InventorySpec, "a mapping with 'points:' at the top")


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
                    ("profiles", name),
                    f"profile runs no probe: add {', '.join(PROBE_TYPES[:-1])} or {PROBE_TYPES[-1]}",
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
                    f"parent {ref!r} is not the id of any point{did_you_mean(ref, list(by_id))}",
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
                        f"{pid!r} is not the id of any point{did_you_mean(pid, list(by_id))}",
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
                    f"{did_you_mean(item.spec.profile, list(spec.profiles))}; defined: {defined}",
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
