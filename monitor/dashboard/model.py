"""What the dashboard shows, built from the monitor's JSON API and SSE messages.

Pure data and pure updates, so rendering can be tested without a server.

Everything read from the server is checked here, at the boundary, so that the
view can trust it: a message of the wrong shape (a list where an object
belongs, a name that is a number, a time in the year 30,000) raises
:class:`BadAnswer` (a :class:`ValueError`, which the client reports as a failed
read), an unknown state reads as ``unknown``, and every text (names, reasons,
ids) goes through :func:`monitor.text.printable`, so a name holding ESC
sequences shows as ``\x1b[2J`` instead of clearing the operator's screen or a
snapshot.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from monitor.core.events import incident_key
from monitor.text import printable

__all__ = [
    "STATE_ORDER",
    "BadAnswer",
    "DistrictView",
    "EventGroup",
    "Incident",
    "PointView",
    "ProbeView",
    "Snapshot",
]

#: states from worst to best, for sorting "needs attention"
STATE_ORDER = ("down", "unreachable", "degraded", "unknown", "maintenance", "up")

#: longest text kept from the server (a name, a reason), in characters
TEXT_LIMIT = 200
#: latest time accepted from the server, in Unix seconds (year 5138): datetime's range is wider
LATEST = 1e11


class BadAnswer(ValueError):
    """The monitor answered something of the wrong shape; the message says what."""


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadAnswer(f"{what} is not a JSON object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadAnswer(f"{what} is not a JSON list")
    return value


def _text(value: object, what: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise BadAnswer(f"{what} is not a string")
    return printable(value, TEXT_LIMIT)


def _number(value: object, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer(f"{what} is not a number")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise BadAnswer(f"{what} is out of range")
    return number


def _optional_number(value: object, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _time(value: object, what: str) -> float:
    return 0.0 if value is None else _number(value, what, 0.0, LATEST)


def _state(value: object) -> str:
    return value if isinstance(value, str) and value in STATE_ORDER else "unknown"


def _metrics(value: object, what: str) -> dict[str, float | None]:
    m = _object(value, what) if value is not None else {}
    return {k: _optional_number(m.get(k), f"{what}.{k}") for k in ("rtt", "jitter", "loss", "mos")}


def event_from_api(value: object) -> dict[str, Any]:
    """One state change from ``/api/v1/events`` or the stream, checked and made printable."""
    e = _object(value, "an event")
    eid = e.get("id")
    if eid is not None and (isinstance(eid, bool) or not isinstance(eid, int) or eid < 0):
        raise BadAnswer("an event's id is not a whole number")
    return {
        "id": eid,
        "point": _text(e.get("point"), "an event's point"),
        "name": _text(e.get("name"), "an event's name", default=""),
        "from": _state(e.get("from")),
        "to": _state(e.get("to")),
        "at": _time(e.get("at"), "an event's time"),
        "reason": _text(e.get("reason"), "an event's reason", default=""),
        "cause": _text(e.get("cause"), "an event's cause", default="") or None,
        "metrics": _metrics(e.get("metrics"), "an event's metrics"),
    }


@dataclass
class PointView:
    """One point as the dashboard knows it."""

    id: str
    name: str
    district: str
    level: str
    parent: str | None
    state: str
    since: float
    reason: str
    rtt: float | None = None
    jitter: float | None = None
    loss: float | None = None
    mos: float | None = None
    #: the point where the trouble of this state is (itself, or the uplink it is behind)
    cause: str = ""
    host: str = ""

    @classmethod
    def from_api(cls, value: object) -> PointView:
        """One point of ``/api/v1/points``; :class:`BadAnswer` if it has the wrong shape."""
        p = _object(value, "a point")
        pid = _text(p.get("id"), "a point's id")
        m = _metrics(p.get("metrics"), f"point {pid}: metrics")
        parent = p.get("parent")
        return cls(
            id=pid,
            name=_text(p.get("name"), f"point {pid}: name"),
            district=_text(p.get("district"), f"point {pid}: district"),
            level=_text(p.get("level"), f"point {pid}: level", default=""),
            parent=None if parent is None else _text(parent, f"point {pid}: parent"),
            state=_state(p.get("state")),
            since=_time(p.get("since"), f"point {pid}: since"),
            reason=_text(p.get("reason"), f"point {pid}: reason", default=""),
            rtt=m["rtt"],
            jitter=m["jitter"],
            loss=m["loss"],
            mos=m["mos"],
            cause=_text(p.get("cause"), f"point {pid}: cause", default=pid) or pid,
            host=_text(p.get("host"), f"point {pid}: host", default=""),
        )


@dataclass
class ProbeView:
    """A point's latest result of one probe, for its detail: figures and phases."""

    probe: str
    ok: bool
    at: float
    rtt: float | None
    jitter: float | None
    loss: float | None
    mos: float | None
    error: str
    warning: str
    #: (name, ok, seconds) of each phase (resolve, send, answer, ...)
    phases: list[tuple[str, bool, float | None]]
    #: when the phases were taken, if not with this result (an agent's steady results
    #: come without them; the API gives the last result that had them as ``described``)
    phases_at: float | None = None

    @classmethod
    def from_api(cls, value: object, what: str) -> ProbeView:
        r = _object(value, what)
        phases = []
        phases_at = None
        source = r
        if not r.get("phases") and r.get("described") is not None:
            source = _object(r["described"], f"{what}: described")
            phases_at = _time(source.get("at"), f"{what}: described: time")
        for ph in _list(source.get("phases") or [], f"{what}: phases")[:20]:
            ph = _object(ph, f"{what}: a phase")
            phases.append(
                (
                    _text(ph.get("name"), f"{what}: a phase's name"),
                    ph.get("ok") is True,
                    _optional_number(ph.get("seconds"), f"{what}: a phase's seconds"),
                )
            )
        return cls(
            probe=_text(r.get("probe"), f"{what}: probe"),
            ok=r.get("ok") is True,
            at=_time(r.get("at"), f"{what}: time"),
            rtt=_optional_number(r.get("rtt"), f"{what}: rtt"),
            jitter=_optional_number(r.get("jitter"), f"{what}: jitter"),
            loss=_optional_number(r.get("loss"), f"{what}: loss"),
            mos=_optional_number(r.get("mos"), f"{what}: mos"),
            error=_text(r.get("error"), f"{what}: error", default=""),
            warning=_text(r.get("warning"), f"{what}: warning", default=""),
            phases=phases,
            phases_at=phases_at,
        )


@dataclass
class DistrictView:
    """A district: its headquarters and the communes below it, in inventory order."""

    id: str
    hq: PointView
    communes: list[PointView]


@dataclass
class Incident:
    """One row of "needs attention": a point not up and the points whose trouble it is
    (the rooms unreachable behind a down uplink), or a monitoring gap (``head`` is then
    None): the rooms of an agent gone offline (``cause`` is ``agent:ID``), or a district's
    rooms without fresh data (``gap:DISTRICT``)."""

    cause: str
    head: PointView | None
    behind: list[PointView] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.head.state if self.head is not None else "unknown"

    @property
    def since(self) -> float:
        if self.head is not None:
            return self.head.since
        return min((p.since for p in self.behind), default=0.0)

    @property
    def size(self) -> int:
        """Points in the incident, its head included."""
        return len(self.behind) + (self.head is not None)


@dataclass
class EventGroup:
    """State changes with one cause close together in time, shown as one line: a district's
    outage is its headquarters' change and the count of the rooms that followed it."""

    first: dict[str, Any]  # the cause's own change, else the first of the group
    followers: Counter[str] = field(default_factory=Counter)  # new state -> rooms

    @property
    def size(self) -> int:
        return 1 + sum(self.followers.values())


#: reads of the points kept per point for the sparklines (one every few seconds)
HISTORY = 120
#: state changes the screen keeps (the most the events API gives in one answer)
EVENTS_KEPT = 1000

#: changes of one cause this close to the group's first are shown with it (seconds): a cut
#: district's rooms are judged over a cycle or two after their headquarters
GROUP_WINDOW = 60.0


@dataclass
class Snapshot:
    """Everything on screen. Updated from the API (full reads) and the stream (changes)."""

    name: str = "confmon"
    points: dict[str, PointView] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    readiness: float = 0.0
    readiness_target: float = 0.98
    last_cycle: float | None = None
    agents: dict[str, bool] = field(default_factory=dict)
    #: a server's: why results are not arriving (its broker is unreachable), else None
    broker_error: str | None = None
    #: enough for a burst of several districts at once, with the 450 first results before
    #: it, to stay whole: an outage's row counts every room it took
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    connected: bool = False
    error: str = ""
    last_message: float = 0.0  # wall time of the last message from the server
    url: str = ""
    notes: list[str] = field(default_factory=list)  # shown under the header (e.g. by the demo)
    #: id of the newest event applied; a reconnect asks the stream for what came after it
    last_event_id: int | None = None
    #: acknowledged incidents: cause -> (who, when)
    acks: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: the latest result of each probe of the point whose detail is open (point -> probes)
    probes: dict[str, list[ProbeView]] = field(default_factory=dict)
    #: per point, its figures at each read of the points (time, rtt, loss): the detail
    #: view's sparklines (:data:`HISTORY` reads, a few minutes)
    history: dict[str, deque[tuple[float, float | None, float | None]]] = field(
        default_factory=dict
    )

    # --- updates --------------------------------------------------------------------------

    def apply_summary(self, value: object) -> None:
        """``/api/v1/status`` or a ``summary``/``hello`` message; :class:`BadAnswer` if malformed."""
        s = _object(value, "the status")
        name = _text(s.get("name"), "the status's name", default=self.name)
        states = s.get("states")
        counts = dict(self.counts)
        if states is not None:
            counts = {
                _text(k, "a state"): int(_number(v, f"the count of {k!r}", 0, 1e9))
                for k, v in _object(states, "the status's states").items()
            }
        readiness = s.get("readiness", self.readiness)
        target = s.get("readiness_target", self.readiness_target)
        sched = _object(s.get("scheduler") or {}, "the status's scheduler")
        cycle = sched.get("last_cycle_seconds", self.last_cycle)
        agents = self.agents
        if "agents" in s:
            agents = {}
            for a in _list(s["agents"], "the status's agents"):
                agent = _object(a, "an agent")
                agents[_text(agent.get("id"), "an agent's id")] = agent.get("online") is True
        broker_error = self.broker_error
        if "broker" in s:
            broker = _object(s["broker"], "the status's broker")
            broker_error = (
                None
                if broker.get("broker_connected") is True
                else _text(broker.get("broker_error"), "the broker's error", default="unreachable")
            )
        acks = self.acks
        if "acks" in s:
            acks = {}
            for a in _list(s["acks"], "the status's acks"):
                ack = _object(a, "an acknowledgement")
                acks[_text(ack.get("cause"), "an acknowledgement's cause")] = (
                    _text(ack.get("by"), "who acknowledged", default=""),
                    _time(ack.get("at"), "an acknowledgement's time"),
                )
        # checked whole before any of it is applied: a bad answer changes nothing
        self.acks = acks
        self.broker_error = broker_error
        self.name = name
        self.counts = counts
        self.readiness = _number(readiness, "the readiness", 0.0, 1.0)
        self.readiness_target = _number(target, "the readiness target", 0.0, 1.0)
        self.last_cycle = _optional_number(cycle, "the last cycle's seconds")
        self.agents = agents
        self.touch()

    def apply_points(self, points: object) -> None:
        """The ``points`` list of ``/api/v1/points``; :class:`BadAnswer` if malformed."""
        views = [PointView.from_api(p) for p in _list(points, "the points")]
        self.points = {p.id: p for p in views}
        now = time.time()
        for p in views:
            h = self.history.get(p.id)
            if h is None:
                h = self.history[p.id] = deque(maxlen=HISTORY)
            h.append((now, p.rtt, p.loss))
        for gone in self.history.keys() - self.points.keys():
            del self.history[gone]
        self.touch()

    def apply_point_detail(self, value: object) -> None:
        """``/api/v1/points/{id}``: its probes' latest results; :class:`BadAnswer` if malformed."""
        p = _object(value, "a point")
        pid = _text(p.get("id"), "a point's id")
        probes = _object(p.get("probes") or {}, f"point {pid}: probes")
        views = [
            ProbeView.from_api(r, f"point {pid}: probe {_text(name, 'a probe')}")
            for name, r in list(probes.items())[:20]
        ]
        self.probes = {pid: views}  # only the open one is kept

    def apply_events(self, events: object) -> None:
        """Events as /api/v1/events gives them (newest first)."""
        checked = [event_from_api(e) for e in _list(events, "the events")]
        self.events.clear()
        for e in reversed(checked):
            self.events.append(e)
        self.last_event_id = max((e["id"] or 0 for e in checked), default=0)

    def apply_state(self, value: object) -> None:
        """One ``state`` message from the stream (one already applied, by id, is ignored)."""
        e = event_from_api(value)
        eid = e["id"]
        if eid is not None:
            if self.last_event_id is not None and eid <= self.last_event_id:
                return
            self.last_event_id = eid
        p = self.points.get(e["point"])
        if p is not None:
            p.state = e["to"]
            p.since = e["at"]
            p.reason = e["reason"]
            p.cause = e["cause"] or p.id
            m = e["metrics"]
            p.rtt, p.jitter, p.loss, p.mos = m["rtt"], m["jitter"], m["loss"], m["mos"]
        self.events.append(e)
        self.touch()

    def touch(self) -> None:
        self.last_message = time.time()

    # --- views ----------------------------------------------------------------------------

    def districts(self) -> list[DistrictView]:
        out: dict[str, DistrictView] = {}
        for p in self.points.values():
            if p.parent is None:
                out[p.id] = DistrictView(p.id, p, [])
        for p in self.points.values():
            if p.parent is not None and p.district in out:
                out[p.district].communes.append(p)
        return list(out.values())

    def attention(self) -> list[PointView]:
        """Points not up, worst first: down, unreachable, then degraded by MOS, then unknown."""
        bad = [p for p in self.points.values() if p.state not in ("up", "maintenance")]

        def key(p: PointView) -> tuple[int, float, float]:
            mos = p.mos if p.mos is not None else 5.0
            return (STATE_ORDER.index(p.state), mos, p.since)

        return sorted(bad, key=key)

    def incidents(self) -> list[Incident]:
        """Points not up as incidents, worst first: outages by how many rooms they take down,
        then rooms down alone, unreachable ones whose uplink is not known, degraded (lowest
        MOS first), and monitoring gaps."""
        points = self.points
        out: dict[str, Incident] = {}
        followers: list[PointView] = []
        for p in points.values():
            if p.state in ("up", "maintenance"):
                continue
            cause = points.get(p.cause)
            if p.state == "unreachable" and cause is not None and cause is not p:
                followers.append(p)
            elif p.state == "unknown":
                # a gap in monitoring, not an outage: one row per agent gone, or per district
                # whose rooms have no fresh data (a lost probe, a broker away)
                gap = incident_key(p.state, p.id, p.cause, p.district)
                out.setdefault(gap, Incident(gap, None)).behind.append(p)
            else:
                out[p.id] = Incident(p.id, p)
        for p in followers:
            head = out.get(p.cause)
            if head is None:  # its uplink is up again, or not yet judged: a row of its own
                out[p.id] = Incident(p.id, p)
            else:
                head.behind.append(p)

        def key(i: Incident) -> tuple[int, int, float, float]:
            mos = i.head.mos if i.head is not None and i.head.mos is not None else 5.0
            return (STATE_ORDER.index(i.state), -i.size, mos, i.since)

        return sorted(out.values(), key=key)

    def event_groups(self) -> list[EventGroup]:
        """The events newest first, those of one cause within :data:`GROUP_WINDOW` of each
        other as one group (first results, unknown -> up, are left out: they are in the
        counts, and 450 of them would bury the news)."""
        groups: dict[tuple[str, str], EventGroup] = {}
        out: list[EventGroup] = []
        for e in self.events:  # oldest first
            if e["from"] == "unknown" and e["to"] == "up":
                continue
            cause = e.get("cause") or e["point"]
            going = "bad" if e["to"] in ("down", "unreachable") else e["to"]
            g = groups.get((cause, going))
            if g is not None and float(e["at"]) - float(g.first["at"]) <= GROUP_WINDOW:
                if e["point"] == cause and g.first["point"] != cause:
                    g.followers[g.first["to"]] += 1  # the cause's own change leads the group
                    g.first = e
                else:
                    g.followers[e["to"]] += 1
                continue
            g = EventGroup(e)
            groups[(cause, going)] = g
            out.append(g)
        return out[::-1]
