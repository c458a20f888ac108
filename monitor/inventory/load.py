"""Loading an inventory: YAML -> strict schema -> whole-tree rules -> :class:`Inventory`.

Every problem becomes a :class:`~monitor.errors.ConfigIssue` naming file, line
and field, and all of them are raised together as one
:class:`~monitor.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory.model import (
    PROBE_TYPES,
    AgentsSettings,
    AlertsSettings,
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
from monitor.probes.base import TICK
from monitor.probes.registry import SEPARATE, deadline_of
from monitor.text import has_control, printable, quoted

__all__ = [
    "DEFAULT_LEVELS",
    "MAX_LEVELS",
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
    agents: AgentsSettings = field(default_factory=AgentsSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)

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


#: levels of the tree of points (top-level points are level 1); a council's plan has 3 or 4
MAX_LEVELS = 32


def _control_issues(source: Source) -> list[ConfigIssue]:
    """Every text in the file (keys too) holding a control character.

    Names, ids and keys reach terminals, snapshots, errors and ``/metrics``: an
    ESC there can clear the operator's screen and a CR breaks the exposition.
    The data is walked with an explicit stack, so no depth makes it recurse.
    """
    issues: list[ConfigIssue] = []
    stack: list[tuple[Loc, Any]] = [((), source.data)]
    while stack and len(issues) < 100:
        loc, value = stack.pop()
        if isinstance(value, str):
            if has_control(value):
                issues.append(source.issue(loc, _control_message(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and has_control(key):
                    issues.append(source.issue(loc, f"key {_control_message(key)}"))
                    continue
                stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(value))
    return issues


def _control_message(text: str) -> str:
    if "\n" in text or "\r" in text:
        return f"{quoted(text)} holds a line break: write it on one line"
    return (
        f"{quoted(text)} holds a control character: remove it (text here is shown on "
        "terminals and in /metrics)"
    )


_NO_PROFILES = "none; add a 'profiles:' section"


class _Hints:
    """``did you mean`` for the first few mistakes only: each one compares a word with every
    id, and a sheet of 10,000 rows with a wrong parent each must not take minutes."""

    def __init__(self, limit: int = 20) -> None:
        self.left = limit

    def __call__(self, word: str, choices: list[str]) -> str:
        if self.left <= 0:
            return ""
        self.left -= 1
        return did_you_mean(word, choices)


def _reference_issues(source: Source, hints: _Hints) -> list[ConfigIssue]:
    """Unknown profiles and parents, read from the raw data when the schema already failed,
    so that one run lists them with the other mistakes (a row of a sheet with a bad host
    and a misspelt profile gets both)."""
    data = source.data
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        return []
    profiles = data.get("profiles")
    names = [k for k in profiles if isinstance(k, str)] if isinstance(profiles, dict) else None
    found: list[tuple[Loc, dict[str, Any]]] = []
    stack: list[tuple[Loc, Any]] = [(("points",), data["points"])]
    while stack:
        loc, items = stack.pop()
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict):
                found.append(((*loc, i), item))
                stack.append(((*loc, i, "points"), item.get("points")))
    ids = [item["id"] for _, item in found if isinstance(item.get("id"), str)]
    known = set(ids)
    issues = []
    listed = ", ".join(printable(d, 40) for d in (names or [])[:20]) or _NO_PROFILES
    for loc, item in found:
        profile, parent = item.get("profile"), item.get("parent")
        if names is not None and isinstance(profile, str) and profile not in names:
            issues.append(source.issue((*loc, "profile"), _unknown_profile(profile, names, hints)))
        if isinstance(parent, str) and parent not in known:
            issues.append(source.issue((*loc, "parent"), _unknown_parent(parent, ids, hints)))
        if len(loc) == 2 and profile is None and parent is None:  # top level, nothing to inherit
            issues.append(
                source.issue(loc, f"no profile: set 'profile' on this point (defined: {listed})")
            )
    return issues


def _unknown_profile(name: str, defined: list[str], hints: _Hints) -> str:
    listed = ", ".join(printable(d, 40) for d in defined[:20]) or _NO_PROFILES
    more = f" and {len(defined) - 20} more" if len(defined) > 20 else ""
    return f"unknown profile {quoted(name)}{hints(name, defined)}; defined: {listed}{more}"


def _unknown_parent(ref: str, ids: list[str], hints: _Hints) -> str:
    return f"parent {quoted(ref)} is not the id of any point{hints(ref, ids)}"


def _spec(source: Source) -> InventorySpec:
    issues = _control_issues(source)
    if issues:
        raise ConfigError(issues)
    try:
        return validate(source, InventorySpec, "a mapping with 'points:' at the top")
    except ConfigError as exc:
        said = {(i.line, i.field) for i in exc.issues}
        more = [i for i in _reference_issues(source, _Hints()) if (i.line, i.field) not in said]
        raise ConfigError([*exc.issues, *more]) from None


# --- whole-tree rules ------------------------------------------------------------------------


@dataclass
class _Flat:
    spec: PointSpec
    loc: Loc
    parent: str | None
    parent_loc: Loc | None  # where the parent reference is written (for error lines)


def _flatten(specs: list[PointSpec], loc: Loc) -> list[_Flat]:
    """Every point written, in file order (depth-first), with the parent it is nested under."""
    out: list[_Flat] = []
    stack: list[tuple[Iterator[tuple[int, PointSpec]], Loc, str | None]] = [
        (iter(enumerate(specs)), loc, None)
    ]
    while stack:
        items, base, parent = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        i, spec = step
        here = (*base, i)
        out.append(_Flat(spec, here, parent, None))
        if spec.points:
            stack.append((iter(enumerate(spec.points)), (*here, "points"), spec.id))
    return out


def _timing_issues(spec: InventorySpec, source: Source) -> list[ConfigIssue]:
    """Settings under which a point would flap, or which the probes cannot keep apart.

    A point is ``unknown`` when its newest result was *taken* (started) more than
    ``stale_after`` ago. A failing probe runs to its deadline ``D``; the scheduler skips
    the slots that fall while a cycle still runs, so a failing point's cycles start
    ``P = interval * (floor(D / interval) + 1)`` apart and a result can arrive up to
    ``P + D`` after the one before was taken. That must stay below ``stale_after``
    (for media, which runs every ``every`` on its own, below ``every + stale_after``:
    how long health counts a media result).
    """
    issues: list[ConfigIssue] = []
    settings = spec.monitor
    interval, stale = settings.interval, settings.stale_after

    def fd(seconds: float) -> str:  # 30.08s reads better than format_duration's 30080ms
        return f"{round(seconds, 3):g}s" if seconds >= 1 else format_duration(seconds)

    if stale <= interval:
        return [
            source.issue(
                ("monitor", "stale_after"),
                f"{fd(stale)} must be longer than monitor.interval ({fd(interval)}), or every "
                "point would flap to unknown",
            )
        ]
    for name, profile in spec.profiles.items():
        cycle = [p for p in profile.probes() if p not in SEPARATE]
        if cycle:
            slowest, worst = max((deadline_of(p, getattr(profile, p)), p) for p in cycle)
            gap = interval * (math.floor(slowest / interval) + 1) + slowest
            if gap >= stale:
                issues.append(
                    source.issue(
                        ("profiles", name, worst, "timeout"),
                        f"a failing {worst} probe takes up to {fd(slowest)}, so at monitor.interval"
                        f" {fd(interval)} a point's results can come {fd(gap)} apart, not less than"
                        f" monitor.stale_after ({fd(stale)}): the point would flap to unknown;"
                        f" shorten the timeout or make stale_after longer than {fd(gap)}",
                    )
                )
        media = profile.media
        if media is not None:
            if media.every < TICK:
                issues.append(
                    source.issue(
                        ("profiles", name, "media", "every"),
                        f"{fd(media.every)} is shorter than the scheduler's {fd(TICK)} grid:"
                        f" write at least {fd(TICK)} (30s is usual)",
                    )
                )
            else:
                slowest = deadline_of("media", media)
                gap = media.every * (math.floor(slowest / media.every) + 1) + slowest
                if gap >= media.every + stale:
                    issues.append(
                        source.issue(
                            ("profiles", name, "media", "timeout"),
                            f"a media run takes up to {fd(slowest)} (packets x pacing + timeout),"
                            f" so at every {fd(media.every)} its results can come {fd(gap)} apart,"
                            f" more than every + monitor.stale_after ({fd(media.every + stale)})"
                            " that a media result counts: send fewer packets, shorten the"
                            " timeout or make every or stale_after longer",
                        )
                    )
            sip = profile.sip
            if sip is not None and sip.transport == "udp" and sip.port == media.port:
                issues.append(
                    source.issue(
                        ("profiles", name, "media", "port"),
                        f"media and sip both use UDP port {media.port}: an echo reflector there"
                        " would answer the SIP probe with its own request; give the media"
                        " reflector its own port (7078 is usual)",
                    )
                )
    return issues


def _depths(by_id: dict[str, _Flat], source: Source, issues: list[ConfigIssue]) -> dict[str, int]:
    """Each point's depth below its top-level ancestor, in time linear in the points.

    Parent cycles are reported once each (at their first point in file order), and
    a point deeper than :data:`MAX_LEVELS` once per branch; points on or below a cycle
    get no depth.
    """
    depth: dict[str, int] = {}
    broken: set[str] = set()  # on a cycle, or below one
    for start in by_id:
        if start in depth or start in broken:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        cur: str | None = start
        while cur is not None and cur not in depth and cur not in broken and cur not in on_path:
            path.append(cur)
            on_path.add(cur)
            cur = by_id[cur].parent
        if cur is not None and cur in on_path:
            cycle = path[path.index(cur) :]
            first = min(cycle, key=lambda pid: by_id[pid].loc)
            at = cycle.index(first)
            ring = cycle[at:] + cycle[:at]
            shown = [*ring, first]
            if len(shown) > 12:
                shown = [*ring[:5], f"... ({len(ring) - 8} more)", *ring[-3:], first]
            item = by_id[first]
            issues.append(
                source.issue(
                    item.parent_loc or item.loc,
                    f"parent chain forms a cycle: {' -> '.join(shown)}",
                )
            )
            broken.update(path)
            continue
        if cur is not None and cur in broken:
            broken.update(path)
            continue
        level = -1 if cur is None else depth[cur]
        for pid in reversed(path):
            level += 1
            depth[pid] = level
            if level == MAX_LEVELS:
                item = by_id[pid]
                issues.append(
                    source.issue(
                        item.parent_loc or item.loc,
                        f"points nest more than {MAX_LEVELS} levels deep here (this point is"
                        f" {level + 1} levels down): check the parent chain",
                    )
                )
    return depth


def _resolve(spec: InventorySpec, source: Source) -> Inventory:
    issues = _timing_issues(spec, source)
    for name, profile in spec.profiles.items():
        if not profile.probes():
            issues.append(
                source.issue(
                    ("profiles", name),
                    f"profile runs no probe: add {', '.join(PROBE_TYPES[:-1])} or {PROBE_TYPES[-1]}",
                )
            )
    defined = list(spec.profiles)
    hints = _Hints()

    flat = _flatten(spec.points, ("points",))
    by_id: dict[str, _Flat] = {}
    for item in flat:
        first = by_id.get(item.spec.id)
        if first is not None:
            issues.append(
                source.issue(
                    (*item.loc, "id"),
                    f"duplicate id {quoted(item.spec.id)} (first used on line"
                    f" {source.line_of((*first.loc, 'id'))})",
                )
            )
            continue
        by_id[item.spec.id] = item
        if item.spec.profile is not None and item.spec.profile not in spec.profiles:
            issues.append(
                source.issue(
                    (*item.loc, "profile"), _unknown_profile(item.spec.profile, defined, hints)
                )
            )

    # explicit `parent:` references (flat form), checked against nesting
    ids = list(by_id)
    for item in by_id.values():
        ref = item.spec.parent
        if ref is None:
            continue
        ref_loc = (*item.loc, "parent")
        if item.parent is not None and ref != item.parent:
            issues.append(
                source.issue(
                    ref_loc,
                    f"parent {quoted(ref)} contradicts nesting under {quoted(item.parent)}",
                )
            )
        elif ref not in by_id:
            issues.append(source.issue(ref_loc, _unknown_parent(ref, ids, hints)))
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
                        f"{quoted(pid)} is not the id of any point{hints(pid, ids)}",
                    )
                )

    for agent, districts in spec.agents.districts.items():
        for j, pid in enumerate(districts):
            if pid not in by_id:
                issues.append(
                    source.issue(
                        ("agents", "districts", agent, j),
                        f"{quoted(pid)} is not the id of any point{hints(pid, ids)}",
                    )
                )
            elif by_id[pid].parent is not None:
                issues.append(
                    source.issue(
                        ("agents", "districts", agent, j),
                        f"{quoted(pid)} is not a district (a top-level point): an agent "
                        "probes whole districts",
                    )
                )

    for i, receiver in enumerate(spec.alerts.receivers):
        for j, pid in enumerate(receiver.districts):
            where = ("alerts", "receivers", i, "districts", j)
            if pid not in by_id:
                issues.append(
                    source.issue(
                        where, f"{quoted(pid)} is not the id of any point{hints(pid, ids)}"
                    )
                )
            elif by_id[pid].parent is not None:
                issues.append(
                    source.issue(where, f"{quoted(pid)} is not a district (a top-level point)")
                )

    depth = _depths(by_id, source, issues)
    if issues:
        raise ConfigError(issues)

    children: dict[str | None, list[str]] = {}
    for item in by_id.values():
        children.setdefault(item.parent, []).append(item.spec.id)

    listed = ", ".join(printable(d, 40) for d in defined[:20]) or _NO_PROFILES
    points: dict[str, Point] = {}
    roots = tuple(children.get(None, ()))
    # depth-first, in file order, with an explicit stack: (id, district, inherited profile)
    stack: list[tuple[str, str, str | None]] = [(r, r, None) for r in reversed(roots)]
    while stack:
        pid, district, inherited = stack.pop()
        item = by_id[pid]
        chosen = item.spec.profile or inherited
        if chosen is None:
            issues.append(
                source.issue(
                    item.loc, f"no profile: set 'profile' on this point (defined: {listed})"
                )
            )
        level = item.spec.level or DEFAULT_LEVELS[min(depth[pid], len(DEFAULT_LEVELS) - 1)]
        kids = children.get(pid, ())
        points[pid] = Point(
            id=pid,
            name=item.spec.name,
            host=item.spec.host,
            profile=chosen or "",
            level=level,
            parent=item.parent,
            district=district,
            depth=depth[pid],
            children=tuple(kids),
        )
        stack.extend((child, district, chosen) for child in reversed(kids))
    levels = sorted({p.level for p in points.values()})
    for i, receiver in enumerate(spec.alerts.receivers):
        for j, level in enumerate(receiver.levels):
            if level not in levels:
                issues.append(
                    source.issue(
                        ("alerts", "receivers", i, "levels", j),
                        f"{quoted(level)} is not the level of any point (levels: "
                        f"{', '.join(levels)}){hints(level, levels)}",
                    )
                )
    if issues:
        raise ConfigError(issues)
    return Inventory(
        file=source.file,
        settings=spec.monitor,
        thresholds=spec.thresholds,
        profiles=dict(spec.profiles),
        points=points,
        roots=roots,
        maintenance=tuple(spec.maintenance),
        agents=spec.agents,
        alerts=spec.alerts,
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
