"""The session report's figures, computed once from an event log: every renderer (HTML,
Markdown, CSV, JSON) formats this same :class:`Report` and computes nothing of its own.

How each figure is made is written down in ``docs/report.md``; in short:

- **Each room's timeline** over the window: its state at the start is the last change
  stored before it (or, when none is, the ``from`` of its first change inside it), then
  each change in the window. Time when no monitor was running (outside every recorded run
  of the log) is *not running*, whatever state the log last wrote.
- **Time in each condition**: ``up`` and ``degraded`` are available; ``down`` and
  ``unreachable`` are out; ``maintenance`` is planned; ``unknown`` (no fresh data) and
  *not running* are *not monitored*. **Availability** = available / (available + out):
  maintenance and time not monitored are left out of the denominator, and the time not
  monitored is given on its own beside it, never counted as up.
- **Incidents** (outages): the times a room was down or unreachable, grouped by their
  cause (:func:`monitor.core.events.incident_key`, as the screens group them): a district
  whose uplink is down is one incident with all its rooms counted. It starts at the first
  room's change and ends when the last room is back (or is ongoing at the window's end).
  **Time to detect**: from the first failed result behind the cause's change (the event's
  ``evidence``) to the incident's first change; **time to recover**: from the first good
  result after it to the last room back.
- **Degraded periods**: each time a room was degraded, with what crossed (the change's
  reason) and the figures it had then.
- **Monitoring gaps**: time not monitored, as *not running* periods and periods of rooms
  without fresh data (one row per lost agent, the others merged when they overlap).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from monitor import __version__
from monitor.core.events import SEVERITY, State, incident_key
from monitor.errors import ConfmonError
from monitor.inventory import Inventory
from monitor.report.source import Change, LogExtract

__all__ = [
    "NOT_RUNNING",
    "DegradedPeriod",
    "District",
    "EmptyWindow",
    "Figures",
    "Gap",
    "Incident",
    "Meta",
    "Note",
    "Period",
    "Report",
    "Room",
    "Segment",
    "Summary",
    "Times",
    "compute",
]

#: the condition of a room while no monitor was running (not a state: nothing judged it)
NOT_RUNNING = "not_running"

_OUT = (State.DOWN, State.UNREACHABLE)
_AVAILABLE = (State.UP, State.DEGRADED)


class EmptyWindow(ConfmonError):
    """The window holds nothing the log can tell about (exit 2, one line)."""

    exit_code = 2


@dataclass(frozen=True)
class Times:
    """Seconds spent in each condition (one room's, or summed over rooms: room-seconds)."""

    up: float = 0.0
    degraded: float = 0.0
    down: float = 0.0
    unreachable: float = 0.0
    maintenance: float = 0.0
    #: ``unknown``: monitored, but no fresh result (a lost agent, a broker away)
    unknown: float = 0.0
    #: no monitor was running
    not_running: float = 0.0

    def __add__(self, other: Times) -> Times:
        return Times(
            self.up + other.up,
            self.degraded + other.degraded,
            self.down + other.down,
            self.unreachable + other.unreachable,
            self.maintenance + other.maintenance,
            self.unknown + other.unknown,
            self.not_running + other.not_running,
        )

    @property
    def available(self) -> float:
        return self.up + self.degraded

    @property
    def out(self) -> float:
        """Down or unreachable: the room could not take part in the call."""
        return self.down + self.unreachable

    @property
    def monitored(self) -> float:
        """The denominator of availability: available or out."""
        return self.available + self.out

    @property
    def not_monitored(self) -> float:
        return self.unknown + self.not_running

    @property
    def availability(self) -> float | None:
        """available / (available + out); None when nothing was monitored."""
        return self.available / self.monitored if self.monitored > 0 else None

    @property
    def total(self) -> float:
        return self.monitored + self.maintenance + self.not_monitored

    @property
    def not_monitored_share(self) -> float | None:
        """The share of the time (maintenance included) that was not monitored."""
        return self.not_monitored / self.total if self.total > 0 else None


@dataclass(frozen=True)
class Figures:
    """The worst quality seen: highest RTT, jitter and loss, lowest MOS (None: not seen)."""

    rtt: float | None = None
    jitter: float | None = None
    loss: float | None = None
    mos: float | None = None

    def worst(self, other: Figures) -> Figures:
        return Figures(
            _worse(self.rtt, other.rtt, highest=True),
            _worse(self.jitter, other.jitter, highest=True),
            _worse(self.loss, other.loss, highest=True),
            _worse(self.mos, other.mos, highest=False),
        )

    @classmethod
    def of(cls, metrics: dict[str, float | None]) -> Figures:
        return cls(
            metrics.get("rtt"), metrics.get("jitter"), metrics.get("loss"), metrics.get("mos")
        )


def _worse(a: float | None, b: float | None, *, highest: bool) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if highest else min(a, b)


@dataclass(frozen=True)
class Room:
    """One meeting point over the window."""

    id: str
    name: str
    district: str
    level: str
    times: Times
    #: its condition when the window starts: a state, or :data:`NOT_RUNNING`
    at_start: str
    #: worst figures among its changes inside the window
    worst: Figures
    #: state changes inside the window
    changes: int

    @property
    def availability(self) -> float | None:
        return self.times.availability

    @property
    def troubled(self) -> bool:
        """Out or degraded at some time in the window."""
        return self.times.out > 0 or self.times.degraded > 0


@dataclass(frozen=True)
class Segment:
    """A stretch of a district's timeline in which nothing changed: its worst condition and
    how many rooms were in each condition other than up."""

    start: float
    end: float
    worst: str
    rooms: dict[str, int]


@dataclass(frozen=True)
class District:
    """A district-level unit: its headquarters and the rooms below it."""

    id: str
    name: str
    rooms: int
    times: Times
    #: wall time during which at least one of its rooms was down or unreachable
    out_seconds: float
    #: rooms that were down or unreachable at some time in the window
    rooms_out: int
    #: rooms that were degraded at some time in the window
    rooms_degraded: int
    worst: Figures
    timeline: tuple[Segment, ...]

    @property
    def availability(self) -> float | None:
        return self.times.availability


@dataclass(frozen=True)
class Period:
    """What an incident and a degraded period both have: when, for how long, how soon it was
    told and how soon the repair was, and why."""

    number: int
    district: str
    district_name: str
    start: float
    #: when it was over (for an incident: the last room back); None: still on at the end
    end: float | None
    #: it started before the window (its start is the stored change's time)
    before_window: bool
    duration: float
    time_to_detect: float | None
    time_to_recover: float | None
    #: the reason of the change that began it, as the health model wrote it (for a degraded
    #: period, what crossed: ``loss 5.2% > 2.0% (13 of 250 packets)``)
    reason: str


@dataclass(frozen=True)
class Incident(Period):
    """An outage: the rooms down or unreachable for one cause, over one stretch of time."""

    cause: str
    cause_name: str
    #: rooms counted once each, by the worst state they had in it
    rooms_by_state: dict[str, int]
    points: tuple[str, ...]

    @property
    def rooms(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class DegradedPeriod(Period):
    """A room in the call with its quality across a threshold."""

    point: str
    name: str
    #: the room's figures when it was judged degraded
    figures: Figures


@dataclass(frozen=True)
class Gap:
    """Time not monitored: no monitor running, or rooms without fresh data."""

    kind: Literal["not_running", "no_data", "agent"]
    #: ``confmon`` (not running), ``agent:ID`` or ``no_data``
    cause: str
    start: float
    end: float | None
    duration: float
    rooms: int
    districts: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Summary:
    rooms: int
    districts: int
    #: rooms with some monitored time (available or out) in the window
    rooms_monitored: int
    #: conditions at the window's start: state (or not_running) -> rooms
    at_start: dict[str, int]
    #: (up + degraded) / rooms not in maintenance, at the start; None if all were
    readiness_at_start: float | None
    readiness_target: float | None
    times: Times
    #: rooms down or unreachable at some time
    rooms_out: int
    #: rooms degraded at some time
    rooms_degraded: int
    outages: int
    degraded_periods: int
    gaps: int
    worst_district: str | None

    @property
    def ready_at_start(self) -> int:
        return self.at_start.get(State.UP, 0) + self.at_start.get(State.DEGRADED, 0)

    @property
    def availability(self) -> float | None:
        return self.times.availability


@dataclass(frozen=True)
class Note:
    """Something a reader must know to read the figures right; ``code`` names it."""

    code: str
    text: str
    at: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class Meta:
    title: str
    source: str
    inventory: str | None
    timezone: str
    #: the window asked for
    requested_start: float
    requested_end: float
    #: the window reported (its end is now when the one asked for ends later)
    start: float
    end: float
    generated_at: float
    interval: float | None
    version: str = __version__


@dataclass(frozen=True)
class Report:
    meta: Meta
    summary: Summary
    incidents: tuple[Incident, ...]
    degraded: tuple[DegradedPeriod, ...]
    gaps: tuple[Gap, ...]
    districts: tuple[District, ...]
    rooms: tuple[Room, ...]
    notes: tuple[Note, ...] = ()

    def district(self, district_id: str) -> District:
        return next(d for d in self.districts if d.id == district_id)


# --- the computation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PointInfo:
    id: str
    name: str
    district: str
    level: str


@dataclass(slots=True)
class _Stretch:
    """A span of one room's timeline in one state (not yet split by the runs)."""

    start: float
    end: float
    state: State
    cause: str
    #: the change that began it (None: the state was known without one)
    opened: Change | None
    #: the change that ended it (None: it lasts to the window's end)
    closed: Change | None = None


@dataclass(slots=True)
class _Piece:
    """A room's trouble of one kind and cause, across stretches of its timeline."""

    point: str
    state: State
    cause: str
    start: float
    end: float | None
    opened: Change | None
    closed: Change | None
    states: set[State] = field(default_factory=set)


def compute(
    extract: LogExtract,
    start: float,
    end: float,
    *,
    now: float,
    inventory: Inventory | None = None,
    timezone: str,
    title: str,
    interval: float | None = None,
    timezone_assumed: bool = False,
) -> Report:
    """The report over ``start``..``end`` (Unix seconds); see the module docstring.

    Raises :class:`EmptyWindow` when the log can tell nothing about the window: it has no
    event at all, its first event comes after the window, or no monitor ran in it."""
    notes: list[Note] = []
    if timezone_assumed:
        notes.append(
            Note(
                "timezone_assumed",
                f"neither an inventory nor the event log names the time zone: {timezone} "
                "is assumed",
            )
        )
    effective_end = min(end, now)
    if effective_end < end:
        notes.append(
            Note(
                "window_in_future",
                "the window ends later than now: the figures go up to the time of the report",
                at=effective_end,
            )
        )
    _check_window(extract, start, effective_end)
    points = _points(extract, inventory, notes)
    coverage = _coverage(extract, start, effective_end, notes)
    by_point: dict[str, list[Change]] = defaultdict(list)
    for c in extract.changes:
        by_point[c.point].append(c)

    rooms: list[Room] = []
    split: dict[str, list[tuple[float, float, str]]] = {}
    pieces: list[_Piece] = []
    stretches_of: dict[str, list[_Stretch]] = {}
    for p in points:
        stretches = _timeline(p.id, extract, by_point.get(p.id, []), start, effective_end)
        stretches_of[p.id] = stretches
        parts = list(_split(stretches, coverage, start))
        split[p.id] = parts
        changes = by_point.get(p.id, [])
        worst = Figures()
        for c in changes:
            worst = worst.worst(Figures.of(c.metrics))
        rooms.append(
            Room(
                id=p.id,
                name=p.name,
                district=p.district,
                level=p.level,
                times=_times(parts),
                at_start=parts[0][2] if parts else State.UNKNOWN.value,
                worst=worst,
                changes=len(changes),
            )
        )
        pieces.extend(_pieces(p.id, stretches))

    names = {p.id: p.name for p in points}
    district_of = {p.id: p.district for p in points}
    district_names = _district_names(points, inventory)
    window = (start, effective_end)
    incidents = _incidents(pieces, names, district_of, district_names, window)
    degraded = _degraded(pieces, names, district_of, district_names, window)
    gaps = _gaps(points, split, stretches_of, coverage, window)
    districts = _districts(rooms, split, district_names)
    summary = _summary(rooms, districts, incidents, degraded, gaps, inventory)
    meta = Meta(
        title=title,
        source=extract.path,
        inventory=inventory.file if inventory is not None else None,
        timezone=timezone,
        requested_start=start,
        requested_end=end,
        start=start,
        end=effective_end,
        generated_at=now,
        interval=interval,
    )
    return Report(
        meta,
        summary,
        tuple(incidents),
        tuple(degraded),
        tuple(gaps),
        tuple(districts),
        tuple(rooms),
        tuple(notes),
    )


def _check_window(extract: LogExtract, start: float, end: float) -> None:
    if extract.first_event is None and not extract.last_states:
        raise EmptyWindow(f"the event log {extract.path} has no state changes yet")
    if extract.first_event is not None and extract.first_event > end and not extract.before:
        raise EmptyWindow(
            "the window ends before the event log's first state change; "
            "give a window within the session the log recorded"
        )
    runs = extract.runs
    if runs and not extract.changes:
        legacy = extract.first_event is not None and extract.first_event < runs[0].started
        ran = any(r.started < end and r.until > start for r in runs)
        if not ran and not (legacy and start < runs[0].started):
            raise EmptyWindow(
                "no monitor was writing the event log during the window; "
                "give a window within the session the log recorded"
            )


def _points(
    extract: LogExtract, inventory: Inventory | None, notes: list[Note]
) -> list[_PointInfo]:
    if inventory is not None:
        out = [_PointInfo(p.id, p.name, p.district, p.level) for p in inventory.points.values()]
        extra = [pid for pid in extract.known if pid not in inventory.points]
        if extra:
            notes.append(
                Note(
                    "not_in_inventory",
                    f"{len(extra)} points of the event log are not in the inventory and are "
                    "left out",
                    count=len(extra),
                )
            )
        return out
    notes.append(
        Note(
            "no_inventory",
            "no inventory was given: the rooms are the ones the event log names, with the "
            "names it stored",
            count=len(extract.known),
        )
    )

    def key(pid: str) -> tuple[str, int, str]:
        district = extract.known[pid][0]
        return (district, pid != district, pid)

    return [
        _PointInfo(
            pid,
            extract.known[pid][1] or pid,
            extract.known[pid][0],
            "district" if pid == extract.known[pid][0] else "commune",
        )
        for pid in sorted(extract.known, key=key)
    ]


def _district_names(points: Sequence[_PointInfo], inventory: Inventory | None) -> dict[str, str]:
    if inventory is not None:
        names = {d.id: d.name for d in inventory.districts()}
    else:
        names = {p.id: p.name for p in points if p.id == p.district}
    for p in points:
        names.setdefault(p.district, p.district)
    return names


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _coverage(
    extract: LogExtract, start: float, end: float, notes: list[Note]
) -> list[tuple[float, float]]:
    """When a monitor was writing the log, within the window."""
    runs = extract.runs
    if not runs:
        notes.append(
            Note(
                "no_runs",
                "the event log does not record when a monitor ran (an older confmon wrote "
                "it): time is counted from the state changes alone, so a time when no "
                "monitor ran reads as the state last stored",
            )
        )
        return [(start, end)]
    spans = [(r.started, r.until) for r in runs]
    first = runs[0].started
    if extract.first_event is not None and extract.first_event < first:
        # written by a confmon that did not record its runs: only its events tell
        spans.append((-math.inf, first))
        if start < first:
            notes.append(
                Note(
                    "before_runs",
                    "the window starts before the log's first recorded run: until then "
                    "time is counted from the state changes alone",
                    at=first,
                )
            )
    return [(max(a, start), min(b, end)) for a, b in _merge(spans) if b > start and a < end]


def _timeline(
    pid: str, extract: LogExtract, changes: list[Change], start: float, end: float
) -> list[_Stretch]:
    """The room's states from ``start`` to ``end``, from the log alone."""
    before = extract.before.get(pid)
    if before is not None:
        current = _Stretch(before.at, start, before.state, before.cause, before)
    elif changes:
        current = _Stretch(start, start, changes[0].previous, pid, None)
    elif pid in extract.last_states and extract.last_states[pid][1] <= start:
        state, since = extract.last_states[pid]
        current = _Stretch(since, start, state, pid, None)
    else:
        current = _Stretch(start, start, State.UNKNOWN, pid, None)
    out: list[_Stretch] = []
    for c in changes:
        at = min(max(c.at, current.end, start), end)
        current.end = at
        current.closed = c
        out.append(current)
        current = _Stretch(at, at, c.state, c.cause, c)
    current.end = end
    out.append(current)
    return out


def _split(
    stretches: list[_Stretch], coverage: list[tuple[float, float]], start: float
) -> Iterable[tuple[float, float, str]]:
    """The timeline within the window (from ``start``), split by the runs: (start, end,
    state), the state :data:`NOT_RUNNING` where no monitor ran."""
    for s in stretches:
        t, hi = max(s.start, start), s.end
        if hi <= t:
            continue
        for c0, c1 in coverage:
            if c1 <= t or c0 >= hi:
                continue
            if c0 > t:
                yield (t, c0, NOT_RUNNING)
            yield (max(t, c0), min(hi, c1), s.state.value)
            t = min(hi, c1)
        if t < hi:
            yield (t, hi, NOT_RUNNING)


def _times(parts: Iterable[tuple[float, float, str]]) -> Times:
    seconds: dict[str, float] = defaultdict(float)
    for a, b, state in parts:
        seconds[state] += b - a
    return Times(
        up=seconds[State.UP],
        degraded=seconds[State.DEGRADED],
        down=seconds[State.DOWN],
        unreachable=seconds[State.UNREACHABLE],
        maintenance=seconds[State.MAINTENANCE],
        unknown=seconds[State.UNKNOWN],
        not_running=seconds[NOT_RUNNING],
    )


def _pieces(pid: str, stretches: list[_Stretch]) -> Iterable[_Piece]:
    """The room's outages (down or unreachable, one cause) and degraded stretches."""
    piece: _Piece | None = None
    for s in stretches:
        if s.state in _OUT and piece is not None and piece.cause == s.cause:
            piece.end, piece.closed = _end_of(s), s.closed
            piece.states.add(s.state)
            continue
        if piece is not None:
            yield piece
            piece = None
        if s.state in _OUT or s.state is State.DEGRADED:
            piece = _Piece(pid, s.state, s.cause, s.start, _end_of(s), s.opened, s.closed)
            piece.states.add(s.state)
            if s.state is State.DEGRADED:
                yield piece
                piece = None
    if piece is not None:
        yield piece


def _end_of(s: _Stretch) -> float | None:
    return s.end if s.closed is not None else None


def _evidence_lag(moment: float | None, change: Change | None) -> float | None:
    """``moment`` minus the change's evidence time (never negative); None if not known."""
    if moment is None or change is None or change.evidence is None:
        return None
    return max(0.0, moment - change.evidence)


def _recovered(change: Change | None) -> Change | None:
    """The change that ended a trouble, if it was a recovery (not a gap or maintenance)."""
    return change if change is not None and change.state in _AVAILABLE else None


def _incidents(
    pieces: list[_Piece],
    names: dict[str, str],
    district_of: dict[str, str],
    district_names: dict[str, str],
    window: tuple[float, float],
) -> list[Incident]:
    """Outage pieces grouped by cause, those of one cause that overlap in time together."""
    by_cause: dict[str, list[_Piece]] = defaultdict(list)
    for piece in pieces:
        if piece.state in _OUT:
            district = district_of.get(piece.point, piece.point)
            key = incident_key(piece.state.value, piece.point, piece.cause, district)
            by_cause[key].append(piece)
    groups: list[tuple[str, list[_Piece]]] = []
    for cause, group in by_cause.items():
        group.sort(key=lambda p: p.start)
        current: list[_Piece] = []
        last: float | None = -math.inf
        for piece in group:
            if current and (last is None or piece.start <= last):
                current.append(piece)
                last = None if last is None or piece.end is None else max(last, piece.end)
                continue
            if current:
                groups.append((cause, current))
            current, last = [piece], piece.end
        if current:
            groups.append((cause, current))
    out: list[Incident] = []
    for cause, group in sorted(groups, key=lambda g: (min(p.start for p in g[1]), g[0])):

        def ended(p: _Piece) -> float:
            return math.inf if p.end is None else p.end

        first = min(group, key=lambda p: p.start)
        # the cause's own stretches (its headquarters flapping is one incident, several
        # stretches) say when it was first seen failing and first seen good again
        heads = [p for p in group if p.point == cause]
        opening = min(heads, key=lambda p: p.start) if heads else first
        closing = _recovered(max(heads or group, key=ended).closed)
        start = first.start
        finish = None if any(p.end is None for p in group) else max(ended(p) for p in group)
        worst: dict[str, State] = {}
        for p in group:
            for state in p.states:
                if p.point not in worst or SEVERITY[state] > SEVERITY[worst[p.point]]:
                    worst[p.point] = state
        district = district_of.get(cause) or district_of.get(first.point, cause)
        out.append(
            Incident(
                number=len(out) + 1,
                cause=cause,
                cause_name=names.get(cause, cause),
                district=district,
                district_name=district_names.get(district, district),
                start=start,
                end=finish,
                before_window=first.opened is None or start < window[0],
                duration=(window[1] if finish is None else finish) - start,
                time_to_detect=_evidence_lag(start, opening.opened),
                time_to_recover=_evidence_lag(finish, closing),
                rooms_by_state=dict(Counter(s.value for s in worst.values())),
                reason=(opening.opened.reason if opening.opened is not None else ""),
                points=tuple(sorted(worst, key=lambda pid: (pid != cause, pid))),
            )
        )
    return out


def _degraded(
    pieces: list[_Piece],
    names: dict[str, str],
    district_of: dict[str, str],
    district_names: dict[str, str],
    window: tuple[float, float],
) -> list[DegradedPeriod]:
    out: list[DegradedPeriod] = []
    for piece in sorted(
        (p for p in pieces if p.state is State.DEGRADED), key=lambda p: (p.start, p.point)
    ):
        district = district_of.get(piece.point, piece.point)
        opened = piece.opened
        out.append(
            DegradedPeriod(
                number=len(out) + 1,
                point=piece.point,
                name=names.get(piece.point, piece.point),
                district=district,
                district_name=district_names.get(district, district),
                start=piece.start,
                end=piece.end,
                before_window=opened is None or piece.start < window[0],
                duration=(window[1] if piece.end is None else piece.end) - piece.start,
                time_to_detect=_evidence_lag(piece.start, opened),
                time_to_recover=_evidence_lag(piece.end, _recovered(piece.closed)),
                reason=opened.reason if opened is not None else "",
                figures=Figures.of(opened.metrics) if opened is not None else Figures(),
            )
        )
    return out


def _gaps(
    points: list[_PointInfo],
    split: dict[str, list[tuple[float, float, str]]],
    stretches_of: dict[str, list[_Stretch]],
    coverage: list[tuple[float, float]],
    window: tuple[float, float],
) -> list[Gap]:
    """Time not monitored: each stretch without a running monitor (every room), then rooms
    without fresh data, per lost agent or, for the others, merged while they overlap."""
    start, end = window
    everyone = tuple(dict.fromkeys(p.district for p in points))
    out: list[Gap] = []
    t = start
    for c0, c1 in [*coverage, (end, end)]:
        if c0 > t:
            out.append(
                Gap(
                    kind="not_running",
                    cause="confmon",
                    start=t,
                    end=c0 if c0 < end else None,
                    duration=c0 - t,
                    rooms=len(points),
                    districts=everyone,
                    reason="no monitor was running",
                )
            )
        t = max(t, c1)
    # (start, end, point, district, reason) of each stretch of unknown, by gap
    spans: dict[str, list[tuple[float, float, str, str, str]]] = defaultdict(list)
    for p in points:
        for s in stretches_of[p.id]:
            if s.state is not State.UNKNOWN:
                continue
            key = incident_key(s.state.value, p.id, s.cause, p.district)
            key = key if key.startswith("agent:") else "no_data"
            reason = s.opened.reason if s.opened is not None else "no result yet"
            for a, b, state in split[p.id]:
                if state == State.UNKNOWN and a < s.end and b > s.start:
                    spans[key].append((max(a, s.start), min(b, s.end), p.id, p.district, reason))
    for key, found in spans.items():
        found.sort()
        group: list[tuple[float, float, str, str, str]] = []
        for span in [*found, None]:
            if span is not None and (not group or span[0] <= max(g[1] for g in group)):
                group.append(span)
                continue
            if group:
                finish = max(g[1] for g in group)
                out.append(
                    Gap(
                        kind="agent" if key.startswith("agent:") else "no_data",
                        cause=key,
                        start=group[0][0],
                        end=finish if finish < end else None,
                        duration=finish - group[0][0],
                        rooms=len({g[2] for g in group}),
                        districts=tuple(dict.fromkeys(g[3] for g in group)),
                        reason=Counter(g[4] for g in group).most_common(1)[0][0],
                    )
                )
            group = [span] if span is not None else []
    out.sort(key=lambda g: (g.start, g.kind, g.cause))
    return out


def _condition_order(condition: str) -> int:
    """How bad a condition is, for a district's worst (not running counts as unknown)."""
    return SEVERITY[State.UNKNOWN if condition == NOT_RUNNING else State(condition)]


def _districts(
    rooms: list[Room],
    split: dict[str, list[tuple[float, float, str]]],
    district_names: dict[str, str],
) -> list[District]:
    members: dict[str, list[Room]] = defaultdict(list)
    for room in rooms:
        members[room.district].append(room)
    out: list[District] = []
    for did, its in members.items():
        timeline = _district_timeline([split[r.id] for r in its])
        times = Times()
        worst = Figures()
        for r in its:
            times += r.times
            worst = worst.worst(r.worst)
        out.append(
            District(
                id=did,
                name=district_names.get(did, did),
                rooms=len(its),
                times=times,
                out_seconds=sum(
                    s.end - s.start
                    for s in timeline
                    if s.rooms.get(State.DOWN, 0) or s.rooms.get(State.UNREACHABLE, 0)
                ),
                rooms_out=sum(1 for r in its if r.times.out > 0),
                rooms_degraded=sum(1 for r in its if r.times.degraded > 0),
                worst=worst,
                timeline=tuple(timeline),
            )
        )
    return out


def _district_timeline(parts: list[list[tuple[float, float, str]]]) -> list[Segment]:
    """The rooms' timelines laid over each other: one segment per stretch where none changed."""
    cuts = sorted({t for room in parts for a, b, _ in room for t in (a, b)})
    at = [0] * len(parts)
    out: list[Segment] = []
    for a, b in itertools.pairwise(cuts):
        counts: Counter[str] = Counter()
        for i, room in enumerate(parts):
            while at[i] < len(room) and room[at[i]][1] <= a:
                at[i] += 1
            if at[i] < len(room) and room[at[i]][0] <= a:
                counts[room[at[i]][2]] += 1
        if not counts:
            continue
        worst = max(counts, key=_condition_order)
        rooms = {k: v for k, v in sorted(counts.items()) if k != State.UP}
        if out and out[-1].worst == worst and out[-1].rooms == rooms and out[-1].end == a:
            out[-1] = Segment(out[-1].start, b, worst, rooms)
        else:
            out.append(Segment(a, b, worst, rooms))
    return out


def _summary(
    rooms: list[Room],
    districts: list[District],
    incidents: list[Incident],
    degraded: list[DegradedPeriod],
    gaps: list[Gap],
    inventory: Inventory | None,
) -> Summary:
    times = Times()
    for r in rooms:
        times += r.times
    at_start = dict(Counter(r.at_start for r in rooms))
    counted = len(rooms) - at_start.get(State.MAINTENANCE, 0)
    ready = at_start.get(State.UP, 0) + at_start.get(State.DEGRADED, 0)
    worst: District | None = None
    for d in districts:
        if d.availability is None or d.availability >= 1.0:
            continue
        if (
            worst is None
            or worst.availability is None
            or (d.availability, -d.times.out) < (worst.availability, -worst.times.out)
        ):
            worst = d
    return Summary(
        rooms=len(rooms),
        districts=len(districts),
        rooms_monitored=sum(1 for r in rooms if r.times.monitored > 0),
        at_start=at_start,
        readiness_at_start=ready / counted if counted > 0 else None,
        readiness_target=inventory.settings.readiness_target if inventory is not None else None,
        times=times,
        rooms_out=sum(1 for r in rooms if r.times.out > 0),
        rooms_degraded=sum(1 for r in rooms if r.times.degraded > 0),
        outages=len(incidents),
        degraded_periods=len(degraded),
        gaps=len(gaps),
        worst_district=worst.id if worst is not None else None,
    )
