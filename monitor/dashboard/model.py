"""What the dashboard shows, built from the monitor's JSON API and SSE messages.

Pure data and pure updates, so rendering can be tested without a server.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STATE_ORDER", "DistrictView", "PointView", "Snapshot"]

#: states from worst to best, for sorting "needs attention"
STATE_ORDER = ("down", "unreachable", "degraded", "unknown", "maintenance", "up")


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

    @classmethod
    def from_api(cls, p: dict[str, Any]) -> PointView:
        m = p.get("metrics") or {}
        return cls(
            id=p["id"],
            name=p["name"],
            district=p["district"],
            level=p.get("level", ""),
            parent=p.get("parent"),
            state=p["state"],
            since=float(p.get("since") or 0.0),
            reason=p.get("reason") or "",
            rtt=m.get("rtt"),
            jitter=m.get("jitter"),
            loss=m.get("loss"),
            mos=m.get("mos"),
        )


@dataclass
class DistrictView:
    """A district: its headquarters and the communes below it, in inventory order."""

    id: str
    hq: PointView
    communes: list[PointView]


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
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    connected: bool = False
    error: str = ""
    last_message: float = 0.0  # wall time of the last message from the server
    url: str = ""
    notes: list[str] = field(default_factory=list)  # shown under the header (e.g. by the demo)
    #: id of the newest event applied; a reconnect asks the stream for what came after it
    last_event_id: int | None = None

    # --- updates --------------------------------------------------------------------------

    def apply_summary(self, s: dict[str, Any]) -> None:
        self.name = s.get("name", self.name)
        self.counts = dict(s.get("states", self.counts))
        self.readiness = float(s.get("readiness", self.readiness))
        self.readiness_target = float(s.get("readiness_target", self.readiness_target))
        sched = s.get("scheduler") or {}
        self.last_cycle = sched.get("last_cycle_seconds", self.last_cycle)
        if "agents" in s:
            self.agents = {a["id"]: bool(a["online"]) for a in s["agents"]}
        self.touch()

    def apply_points(self, points: list[dict[str, Any]]) -> None:
        self.points = {p["id"]: PointView.from_api(p) for p in points}
        self.touch()

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        """Events as /api/v1/events gives them (newest first)."""
        self.events.clear()
        for e in reversed(events):
            self.events.append(e)
        self.last_event_id = max((int(e.get("id", 0)) for e in events), default=0)

    def apply_state(self, e: dict[str, Any]) -> None:
        """One ``state`` message from the stream (one already applied, by id, is ignored)."""
        eid = e.get("id")
        if isinstance(eid, int):
            if self.last_event_id is not None and eid <= self.last_event_id:
                return
            self.last_event_id = eid
        p = self.points.get(e["point"])
        if p is not None:
            p.state = e["to"]
            p.since = float(e["at"])
            p.reason = e.get("reason", "")
            m = e.get("metrics") or {}
            p.rtt, p.jitter, p.loss, p.mos = (
                m.get("rtt"),
                m.get("jitter"),
                m.get("loss"),
                m.get("mos"),
            )
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
