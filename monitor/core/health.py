"""The health model: probe results in, point states and state-change events out.

Pure and synchronous (no I/O, no clock of its own: callers pass ``now`` in
Unix seconds), so it is fast and can be tested exhaustively.

States (contract): ``up``, ``degraded``, ``down``, ``unreachable``, ``unknown``,
``maintenance``. Each cycle of a point answers two questions (the profile says
which probes answer which, :meth:`Profile.reachability` and
:meth:`Profile.requirement`):

- **Is the network path up?** Yes when any ``reachable_by`` probe succeeded.
- **Can the room take part in the call?** Yes when every ``required`` probe
  succeeded (by default SIP, when the profile runs it).

The rules, in order:

1. **Maintenance** windows (from the inventory) show as ``maintenance``; the point
   is still measured, and its own state is tracked underneath.
2. **Staleness**: no fresh cycle for ``stale_after`` -> ``unknown`` (never
   ``down``; losing an agent or the broker must not raise 450 alarms). The
   counters restart, so ``unknown`` becomes ``down`` only after ``fail_after``
   fresh failed cycles. Results taken longer ago than ``stale_after`` (an agent's
   buffer emptied late) update the figures but never the state.
3. **Hysteresis**, on each question apart: ``down`` after ``fail_after`` failed
   cycles in a row (path failed, or path up but a required probe failed); back ``up``
   after ``recover_after`` good ones. From ``unknown``, one good cycle is enough.
   The reason says which half failed: ``"2 failed cycles (sip: no response ...)"``
   for the path, ``"host answers icmp; sip: no response ..."`` for the service.
4. **Topology**: a point that would be ``down`` while an ancestor's *path* is down
   (or failed its last cycle) is ``unreachable``: one root cause, not fifteen; its
   ``cause`` names that ancestor. It stays ``unreachable`` (not ``down``) while it
   recovers together with its uplink. An ancestor whose path is up but whose SIP is
   dead is ``down`` itself and leaves the points behind it alone.
5. **Degraded**: a point in the call whose quality over the window
   (:mod:`monitor.core.quality`: loss with a confidence bound, mean RTT, jitter and
   MOS of the last ``quality_window``) crosses a threshold, or whose other probes
   fail (http alone) or warn (a SIP endpoint answering 503), for ``fail_after``
   cycles in a row; it clears after ``recover_after`` cycles back inside the
   thresholds by a margin. When a path comes back after failing, the window starts
   anew: figures taken during the outage do not keep a repaired room yellow.

Every change of the visible state is an :class:`Event`.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.core.events import Event, State
from monitor.core.quality import CLEAR_MARGIN, Verdict, Window, unused_probes
from monitor.core.results import ProbeResult
from monitor.inventory import Inventory, Point
from monitor.probes import registry

__all__ = ["CLEAR_MARGIN", "STATES", "Event", "HealthModel", "PointHealth", "State"]


STATES: tuple[State, ...] = tuple(State)


@dataclass(slots=True)
class PointHealth:
    """Everything the model knows about one point."""

    point: Point
    reach: tuple[str, ...]
    required: tuple[str, ...]
    window: Window
    state: State = State.UNKNOWN
    own: State = State.UNKNOWN  # up/down/unknown, ignoring topology, quality, maintenance
    since: float = 0.0
    reason: str = "no result yet"  # of the visible state
    cause: str = ""  # the point where the trouble of the visible state is (see Event.cause)
    #: why results stopped, when that is known (``agent:ID``: its agent is offline); the
    #: cause of the ``unknown`` state until a fresh result arrives
    gap: str = ""
    own_reason: str = "no result yet"  # of the point's own down/unknown state, kept apart
    fails: int = 0  # path: failed cycles in a row
    goods: int = 0  # path: good cycles in a row
    path_down: bool = False
    service_fails: int = 0  # required probes: failed cycles in a row (path up)
    service_goods: int = 0
    service_down: bool = False
    last_seen: float | None = None
    last_ok: bool | None = None  # the path, in the last cycle
    #: when the path last came back after a failed cycle: quality results taken before it
    #: (a media run that timed out during the outage) no longer count
    recovered_at: float = 0.0
    quality_bad: bool = False
    quality_reason: str = ""
    #: what crossed, as short names (``rtt``, ``jitter``, ``loss``, ``mos``, ``probe``)
    quality_kinds: tuple[str, ...] = ()
    quality_fails: int = 0
    quality_goods: int = 0
    in_maintenance: bool = False
    latest: dict[str, ProbeResult] = field(default_factory=dict)  # mutated in place only
    #: each probe's latest result that came with its phases (an agent describes a steady
    #: probe's results once a minute: :class:`~monitor.core.results.Describer`)
    described: dict[str, ProbeResult] = field(default_factory=dict)  # mutated in place only
    #: how long a probe's last result still counts, for probes slower than the interval
    #: (media every 30 s: a result lasts its period plus stale_after, or the point flaps)
    fresh_for: dict[str, float] = field(default_factory=dict)
    #: the window's figures at the last judgement (rtt, jitter, loss, mos)
    verdict: Verdict | None = None
    #: without a fresh path result for this long the point is unknown: stale_after, or
    #: longer when the path is judged only by probes on a longer period of their own
    stale_for: float = 0.0
    #: when the current run of failed (good) cycles began, for each question and for
    #: quality: the evidence behind a state change (:attr:`Event.evidence`)
    path_fail_at: float | None = None
    path_good_at: float | None = None
    service_fail_at: float | None = None
    service_good_at: float | None = None
    quality_fail_at: float | None = None
    quality_good_at: float | None = None

    def evidence(self, state: State, previous: State) -> float | None:
        """When the results that lead to ``state`` began (see :attr:`Event.evidence`)."""
        if state in (State.DOWN, State.UNREACHABLE):
            return self.path_fail_at if self.path_down else self.service_fail_at
        if state is State.DEGRADED:
            return self.quality_fail_at
        if state is State.UNKNOWN:
            return self.last_seen
        if state is State.UP:
            if previous is State.DEGRADED:
                return self.quality_good_at
            # the later good run is the one of what failed (the other has been good longer)
            goods = [t for t in (self.path_good_at, self.service_good_at) if t is not None]
            return max(goods, default=None)
        return None

    def reason_code(self) -> str:
        """The reason of the visible state as one short word, for metric labels and
        filters (the ``reason`` text is for people and carries figures):

        ``ok``; ``path`` (no answer) or ``service`` (host answers, a required probe
        fails) for ``down``; ``uplink`` for ``unreachable``; the figures that crossed
        (``loss``, ``jitter+loss``, ``probe`` for a failing or warning probe, ...; ``quality``
        when that is not known, after a restart) for ``degraded``; ``no_result``, ``waiting``, ``stale`` or ``agent_offline`` for
        ``unknown``; ``maintenance``.
        """
        state = self.state
        if state is State.UP:
            return "ok"
        if state is State.DOWN:
            return "service" if self.service_down and not self.path_down else "path"
        if state is State.UNREACHABLE:
            return "uplink"
        if state is State.DEGRADED:
            return "+".join(self.quality_kinds) or "quality"
        if state is State.MAINTENANCE:
            return "maintenance"
        if self.gap:
            return "agent_offline"
        if self.last_ok is not None:
            return "waiting"
        return "stale" if self.latest else "no_result"

    def metrics(self) -> dict[str, float | None]:
        """The point's current figures: the quality window's, else the latest results'."""
        v = self.verdict
        if v is not None and not (
            v.rtt is None and v.jitter is None and v.loss is None and v.mos is None
        ):
            return {"rtt": v.rtt, "jitter": v.jitter, "loss": v.loss, "mos": v.mos}
        return _worst(self.latest.values())


#: probes whose rtt is one network round trip; http's is time to first byte (connect,
#: TLS and request: several round trips) and is not held to the rtt threshold
RTT_PROBES = registry.RTT_PROBES


def _worst(results: Iterable[ProbeResult]) -> dict[str, float | None]:
    """Highest rtt, jitter and loss and lowest MOS among ``results`` (None if none has it).

    The rtt is ICMP's when there is an ICMP result: the ICMP engine times replies with the
    kernel's receive timestamps, while the other probes read the clock when the event loop
    gets to the reply, so a busy monitor would see its own lag as network delay (and a
    SIP rtt also includes the endpoint's processing). Without ICMP, the highest of the
    other one-round-trip probes counts.
    """
    rtt = jitter = loss = mos = None
    icmp_rtt = None
    for r in results:
        if r.rtt is not None and r.probe in RTT_PROBES and (rtt is None or r.rtt > rtt):
            rtt = r.rtt
        if r.probe == "icmp" and r.rtt is not None:
            icmp_rtt = r.rtt
        if r.jitter is not None and (jitter is None or r.jitter > jitter):
            jitter = r.jitter
        if r.loss is not None and (loss is None or r.loss > loss):
            loss = r.loss
        if r.mos is not None and (mos is None or r.mos < mos):
            mos = r.mos
    return {
        "rtt": icmp_rtt if icmp_rtt is not None else rtt,
        "jitter": jitter,
        "loss": loss,
        "mos": mos,
    }


class HealthModel:
    """Turns cycles of probe results into states; see the module docstring for the rules."""

    def __init__(self, inv: Inventory, *, now: float = 0.0) -> None:
        self.inv = inv
        self.points: dict[str, PointHealth] = {}
        self.counts: Counter[State] = Counter()
        self.district_counts: dict[str, Counter[State]] = {}
        self._tz = zoneinfo.ZoneInfo(inv.settings.timezone)
        st = inv.settings
        self._stale_after = st.stale_after
        self._fail_after = st.fail_after
        self._recover_after = st.recover_after
        t = inv.thresholds
        self._limits = (t.rtt, t.jitter, t.loss, t.mos)
        for p in inv.points.values():
            profile = inv.profile_of(p)
            h = PointHealth(
                p,
                profile.reachability(),
                profile.requirement(),
                Window(st.quality_window, unused_probes(profile.probes())),
                since=now,
                last_seen=now,
            )
            if profile.media is not None:
                h.fresh_for["media"] = profile.media.every + inv.settings.stale_after
            h.stale_for = max(
                [st.stale_after, *(h.fresh_for[name] for name in h.reach if name in h.fresh_for)]
            )
            self.points[p.id] = h
            self.counts[h.state] += 1
            self.district_counts.setdefault(p.district, Counter())[h.state] += 1

    # --- inputs ---------------------------------------------------------------------------

    def ingest(
        self,
        point_id: str,
        results: Sequence[ProbeResult],
        now: float,
        taken: float | None = None,
    ) -> list[Event]:
        """One cycle of a point's results (any subset of its probes). Returns the events.

        ``now`` is when they arrived (the time of any event), ``taken`` when they were
        taken (default ``now``; see the clock rule in :mod:`monitor.core.ingest`). Results
        taken more than ``stale_after`` ago (an agent's buffer emptied after an outage)
        update the latest figures but not the state: they cannot make a point fresh.
        """
        h = self.points.get(point_id)
        if h is None:
            return []
        latest, reach = h.latest, h.reach
        cycle: list[ProbeResult] = []  # the results that answer "is the path up?"
        first = results[0].at if results else now
        for r in results:
            at, probe = r.at, r.probe
            previous = latest.get(probe)
            if previous is None or at >= previous.at:
                latest[probe] = r
                if r.phases:
                    h.described[probe] = r
            if at < first:
                first = at
            if probe in reach:
                cycle.append(r)
        seen = now if taken is None or taken > now else taken
        if seen < now - self._stale_after:
            return []
        # the points behind this one read its path and state (_blocked): they are judged
        # again only when those change, not at every cycle of their uplink
        uplink = (h.path_down, h.state, h.last_ok) if h.point.children else None
        if cycle:
            h.last_seen = seen
            h.gap = ""
            self._judge_path(h, cycle, results, now)
        window = h.window
        add, recovered, ignore = window.add, h.recovered_at, window.ignore
        for r in results:
            # a failed result is the path's business, and some probes' results carry
            # nothing the window uses (Window.add checks the same)
            if r.ok and r.at >= recovered and r.probe not in ignore:
                add(r)
        self._judge_quality(h, now, counted=bool(cycle), first=first)
        events: list[Event] = []
        self._update(h, now, events)
        if uplink is not None and uplink != (h.path_down, h.state, h.last_ok):
            self._update_descendants(h.point, now, events)
        return events

    def _judge_path(
        self, h: PointHealth, cycle: list[ProbeResult], results: Sequence[ProbeResult], now: float
    ) -> None:
        """One cycle's answer to both questions, through their hysteresis."""
        ok = False
        first = cycle[0].at
        for r in cycle:
            if r.ok:
                ok = True
            if r.at < first:
                first = r.at
        if ok and h.last_ok is False:
            h.recovered_at = first
            h.window.start_after(h.recovered_at)
        h.last_ok = ok
        if ok:
            if not h.goods:
                h.path_good_at = first
            h.goods += 1
            h.fails = 0
            if h.path_down and h.goods >= self._recover_after:
                h.path_down = False
            self._judge_service(h, results, now, first)
        else:
            if not h.fails:
                h.path_fail_at = first
            h.fails += 1
            h.goods = 0
            if h.fails >= self._fail_after:
                h.path_down = True
                h.own_reason = self._down_reason(cycle, h.fails)
        if h.path_down or h.service_down:
            h.own = State.DOWN
        elif h.own is State.UNKNOWN:
            h.own = State.UP if ok and not h.service_fails else State.UNKNOWN
        else:
            h.own = State.UP

    def _judge_service(
        self, h: PointHealth, results: Sequence[ProbeResult], now: float, first: float
    ) -> None:
        """The required probes of a cycle whose path is up (their latest fresh results for a
        probe on its own period, such as media); ``first`` is when the cycle was taken."""
        required = h.required
        if required == h.reach:
            # the path's answer is the service's: nothing more to judge (and nothing left
            # over from a profile that had a service of its own, before a reload or restart)
            h.service_down = False
            h.service_fails = h.service_goods = 0
            return
        failing: list[ProbeResult] = []
        for name in required:
            r = h.latest.get(name)
            if r is None or r.at < now - h.fresh_for.get(name, self._stale_after):
                continue
            if not r.ok:
                failing.append(r)
        if not failing:
            if not h.service_goods:
                h.service_good_at = first
            h.service_goods += 1
            h.service_fails = 0
            if h.service_down and h.service_goods >= self._recover_after:
                h.service_down = False
            return
        if not h.service_fails:
            h.service_fail_at = min(r.at for r in failing)
        h.service_fails += 1
        h.service_goods = 0
        if h.service_fails >= self._fail_after:
            h.service_down = True
            if not h.path_down:  # a path that is down is the reason to give
                answers = ", ".join(r.probe for r in results if r.probe in h.reach and r.ok)
                errors = "; ".join(f"{r.probe}: {r.error or 'failed'}" for r in failing)
                h.own_reason = f"host answers {answers}; {errors}"

    def mark_gap(
        self, point_ids: Iterable[str], reason: str, cause: str, now: float
    ) -> list[Event]:
        """The results of ``point_ids`` stopped for a known reason (their agent went offline):
        they are ``unknown`` now, with ``reason`` and ``cause`` (``agent:ID``), instead of
        after ``stale_after`` as "no fresh result". A fresh result ends the gap."""
        events: list[Event] = []
        for pid in point_ids:
            h = self.points.get(pid)
            if h is None:
                continue
            self._forget_path(h)
            h.last_seen = None
            h.own_reason = reason
            h.gap = cause
            self._update(h, now, events)
            if h.point.children:
                self._update_descendants(h.point, now, events)
        return events

    def _forget_path(self, h: PointHealth) -> None:
        h.own = State.UNKNOWN
        h.fails = h.goods = h.service_fails = h.service_goods = 0
        h.quality_fails = h.quality_goods = 0
        h.path_down = h.service_down = h.quality_bad = False
        h.last_ok = None
        h.path_fail_at = h.path_good_at = h.service_fail_at = h.service_good_at = None
        h.quality_fail_at = h.quality_good_at = None

    def tick(self, now: float) -> list[Event]:
        """Apply staleness and maintenance windows as of ``now``. Call about once a second."""
        events: list[Event] = []
        active = self._maintenance_points(now)
        for h in self.points.values():
            changed = False
            waiting = h.own is State.UNKNOWN and h.last_ok is not None  # for enough cycles
            if (h.own is not State.UNKNOWN or waiting) and (
                h.last_seen is None or h.last_seen < now - h.stale_for
            ):
                self._forget_path(h)
                h.own_reason = f"no fresh result for {self.inv.settings.stale_after:g}s"
                changed = True
            in_maint = h.point.id in active
            if in_maint != h.in_maintenance:
                h.in_maintenance = in_maint
                changed = True
            if changed:
                self._update(h, now, events)
                if h.point.children:
                    self._update_descendants(h.point, now, events)
        return events

    def restore(
        self,
        states: dict[str, tuple[State, float, str]],
        now: float,
        causes: Mapping[str, str] | None = None,
    ) -> None:
        """Resume from saved states (point -> (state, since, reason)) without emitting events.

        A restored point counts as seen ``now``, so it turns ``unknown`` only if no
        fresh result arrives within ``stale_after``. ``causes`` (point -> cause) keeps an
        incident's cause across the restart, so its recovery still names it.
        """
        s = self.inv.settings
        for pid, (state, since, reason) in states.items():
            h = self.points.get(pid)
            if h is None or state is State.MAINTENANCE:
                continue
            if state in (State.DOWN, State.UNREACHABLE):
                h.own = State.DOWN
                if state is State.DOWN and reason.startswith("host answers"):
                    h.service_down, h.service_fails = True, s.fail_after  # path up, SIP dead
                else:
                    h.path_down, h.fails = True, s.fail_after
            elif state in (State.UP, State.DEGRADED):
                h.own, h.goods = State.UP, s.recover_after
                h.quality_bad = state is State.DEGRADED
            else:
                h.own = State.UNKNOWN
            self._set(h, state, since, reason)
            h.own_reason = reason
            h.last_seen = now
            if causes is not None and pid in causes:
                h.cause = causes[pid]

    def adopt(self, old: HealthModel) -> None:
        """Take over the state of every point that ``old`` also has (after a config reload)."""
        for pid, h in self.points.items():
            before = old.points.get(pid)
            if before is None:
                continue
            self._set(h, before.state, before.since, before.reason)
            for name in (
                "own",
                "fails",
                "goods",
                "path_down",
                "service_fails",
                "service_goods",
                "service_down",
                "quality_fails",
                "quality_goods",
                "window",
                "verdict",
                "last_seen",
                "last_ok",
                "recovered_at",
                "quality_bad",
                "quality_reason",
                "quality_kinds",
                "own_reason",
                "gap",
                "cause",
                "in_maintenance",
                "path_fail_at",
                "path_good_at",
                "service_fail_at",
                "service_good_at",
                "quality_fail_at",
                "quality_good_at",
            ):
                setattr(h, name, getattr(before, name))
            if (h.reach, h.required) != (before.reach, before.required):
                # a new answer to "can the room take the call?": judge it afresh
                h.service_down, h.service_fails, h.service_goods = False, 0, 0
                if h.own is State.DOWN and not h.path_down:
                    h.own = State.UP
            h.window.span = self.inv.settings.quality_window
            h.window.ignore = unused_probes(self.inv.profile_of(pid).probes())
            probes = self.inv.profile_of(pid).probes()
            h.latest = {k: v for k, v in before.latest.items() if k in probes}
            h.described = {k: v for k, v in before.described.items() if k in probes}

    # --- outputs --------------------------------------------------------------------------

    def readiness(self) -> float:
        """(up + degraded) / every point not in maintenance; 1.0 when nothing is counted."""
        total = len(self.points) - self.counts[State.MAINTENANCE]
        if total <= 0:
            return 1.0
        return (self.counts[State.UP] + self.counts[State.DEGRADED]) / total

    def summary(self) -> dict[str, Any]:
        """City-wide counts per state and readiness."""
        return {
            "points": len(self.points),
            "states": {s.value: self.counts[s] for s in STATES},
            "readiness": self.readiness(),
            "readiness_target": self.inv.settings.readiness_target,
        }

    # --- rules ----------------------------------------------------------------------------

    @staticmethod
    def _down_reason(cycle: Iterable[ProbeResult], fails: int) -> str:
        errors = "; ".join(f"{r.probe}: {r.error or 'failed'}" for r in cycle)
        return f"{fails} failed cycles ({errors})"

    def _judge_quality(self, h: PointHealth, now: float, *, counted: bool, first: float) -> None:
        """The window's verdict, and the other probes' failures and warnings; a cycle of the
        interval (``counted``, taken at ``first``) moves the degraded hysteresis."""
        failing: list[str] = []
        reach, required = h.reach, h.required
        for r in h.latest.values():
            if r.ok:
                if not r.warning:
                    continue  # the usual case: nothing to say, however old
            elif not h.last_ok or r.probe in reach or r.probe in required:
                # only while the path is up; a failing required probe is the service's
                continue
            if r.at < h.recovered_at:  # taken during the outage the path has recovered from
                continue
            if r.at < now - h.fresh_for.get(r.probe, self._stale_after):
                continue
            failing.append(
                f"{r.probe}: {r.warning}" if r.ok else f"{r.probe} failing: {r.error or 'failed'}"
            )
        rtt, jitter, loss, mos = self._limits
        verdict = h.window.judge(now, rtt, jitter, loss, mos, clearing=h.quality_bad)
        h.verdict = verdict
        crossed = bool(failing or verdict.crossed)
        if crossed:
            h.quality_reason = ", ".join([*failing, *verdict.crossed])
            h.quality_kinds = (("probe",) if failing else ()) + verdict.kinds
        if not counted:
            return
        if crossed:
            if not h.quality_fails:
                h.quality_fail_at = first
            h.quality_fails += 1
            h.quality_goods = 0
            if h.quality_fails >= self._fail_after:
                h.quality_bad = True
        else:
            if not h.quality_goods:
                h.quality_good_at = first
            h.quality_goods += 1
            h.quality_fails = 0
            if h.quality_goods >= self._recover_after:
                h.quality_bad = False

    def _blocked(self, point: Point, *, down_only: bool = False) -> str | None:
        """The id of an ancestor that is down or (unless ``down_only``) failed its last cycle."""
        parent = point.parent
        while parent is not None:
            ph = self.points[parent]
            if (
                ph.path_down
                or ph.state is State.UNREACHABLE
                or (ph.last_ok is False and not down_only)
            ):
                return parent
            parent = ph.point.parent
        return None

    def _visible(self, h: PointHealth) -> tuple[State, str]:
        if h.in_maintenance:
            return State.MAINTENANCE, "maintenance window"
        own = h.own
        if own is State.UNKNOWN:
            return (
                State.UNKNOWN,
                h.own_reason if h.last_ok is None else "waiting for enough cycles",
            )
        if own is State.DOWN:
            # a point already down on its own stays down through an uplink's single missed
            # cycle; only an uplink that is really down takes the blame from it
            blocker = self._blocked(h.point, down_only=h.state is State.DOWN)
            if blocker is not None:
                down = self.points[blocker].path_down
                return (
                    State.UNREACHABLE,
                    f"uplink {blocker} is {'down' if down else 'not answering'}",
                )
            if h.state is State.UNREACHABLE and h.last_ok:
                return State.UNREACHABLE, "recovering behind its uplink"
            return State.DOWN, h.own_reason
        if h.quality_bad:
            return State.DEGRADED, h.quality_reason
        return State.UP, "all probes within thresholds"

    def _update(self, h: PointHealth, now: float, events: list[Event]) -> None:
        state, reason = self._visible(h)
        if state is h.state:
            h.reason = reason
            return
        previous = h.state
        # a recovery names the cause of the trouble it ends, so both ends group together
        cause = self._cause(h, state) if state not in (State.UP, State.UNKNOWN) else h.cause
        if state is State.UNKNOWN and h.gap:
            cause = h.gap
        self._set(h, state, now, reason)
        h.cause = cause or h.point.id
        p = h.point
        events.append(
            Event(
                p.id,
                previous,
                state,
                reason,
                now,
                h.metrics(),
                cause=h.cause,
                name=p.name,
                district=p.district,
                evidence=h.evidence(state, previous),
            )
        )

    def _cause(self, h: PointHealth, state: State) -> str:
        """The point where the trouble of ``state`` is: the uplink that blocks, or itself."""
        if state is State.UNREACHABLE:
            blocker = self._blocked(h.point)
            if blocker is not None:
                return (
                    self.points[blocker].cause
                    if self.points[blocker].state is State.UNREACHABLE
                    else blocker
                )
            return h.cause or h.point.id
        if state is State.MAINTENANCE:
            return h.point.id
        return h.point.id

    def _set(self, h: PointHealth, state: State, since: float, reason: str) -> None:
        district = self.district_counts[h.point.district]
        self.counts[h.state] -= 1
        district[h.state] -= 1
        h.state, h.since, h.reason = state, since, reason
        self.counts[state] += 1
        district[state] += 1

    def _update_descendants(self, point: Point, now: float, events: list[Event]) -> None:
        for child in point.children:
            ch = self.points[child]
            self._update(ch, now, events)
            if self.inv.points[child].children:
                self._update_descendants(self.inv.points[child], now, events)

    def _maintenance_points(self, now: float) -> set[str]:
        windows = self.inv.maintenance
        if not windows:
            return set()
        local = datetime.datetime.fromtimestamp(now, self._tz).replace(tzinfo=None)
        covered: set[str] = set()
        for w in windows:
            if w.active(local):
                for pid in w.points:
                    covered.add(pid)
                    covered.update(p.id for p in self.inv.descendants(pid))
        return covered
