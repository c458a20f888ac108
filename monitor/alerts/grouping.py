"""Which state changes become which notifications: grouping by cause, dedup, reminders,
resolved messages, the monitoring-gap message and the storm guard.

Pure logic on a given clock (no I/O, no event loop): :class:`Groups` holds one
receiver's view, :meth:`Groups.add` takes the events as the event log stored them and
:meth:`Groups.flush` says what to send. The alert service
(:mod:`monitor.alerts.service`) persists :meth:`Groups.dump` in the same transaction
as the notifications it enqueues, so a restart goes on from exactly there.

**What a group is.** Every point a receiver is told about belongs to one group,
``district:<id>`` by default (``group_by: cause`` groups by the point where the
trouble is, ``point`` not at all, ``city`` everything into one). A district
headquarters whose uplink drops takes its communes to ``unreachable`` in the same
evaluation; their events carry the headquarters as ``cause`` and land in the same
group within ``group_wait``: ONE message, naming the cause and counting the rooms.

**What a group says.** A group's *firing set* is its points in a notifying state
(the receiver's ``states``). When ``group_wait`` after its first change the firing set
differs from the one last sent, a message goes out: ``firing`` with the whole set
(and the points that recovered since the last one), or ``resolved`` once the set is
empty. A change that ends where the last message stood (down and back within the
wait) sends nothing. While the set stays the same and non-empty, a reminder goes out
every ``repeat_interval``.

**Gaps in monitoring.** ``unknown`` is not an outage: a point whose data stopped keeps
whatever alert it had (frozen: no "resolved" because an agent was lost). A receiver
that asks for ``unknown`` gets a group of its own per cause of the gap, ``gap:agent:ID``
for a lost agent (one message for its 200 points) and ``gap:all`` otherwise (the broker
cut: one message for the city). ``maintenance`` silences a point: it leaves its group
without a resolved message, unless the receiver asked for ``maintenance``.

**Storm guard.** When more than ``storm.changes`` changes came in within
``storm.window`` and more than one group is due, one city-wide summary replaces the
groups' messages (each group counts as told, so what follows is relative to it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from monitor.alerts.config import AlertsSettings, Receiver
from monitor.core.events import Event, State

__all__ = ["Alert", "Groups", "Notification", "PointFacts"]

#: states in which a room's last figures are not about now
_SILENT = frozenset({State.DOWN, State.UNREACHABLE, State.UNKNOWN})


def _now_figures(metrics: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (v if k == "loss" else None) for k, v in metrics.items()}


Kind = Literal["firing", "resolved", "repeat", "storm", "gap", "gap-resolved", "test"]


@dataclass(frozen=True, slots=True)
class PointFacts:
    """What the inventory says of a point (for filters and for the text)."""

    name: str
    district: str
    district_name: str
    level: str


@dataclass(slots=True)
class Alert:
    """A point as one receiver last heard of it."""

    point: str
    name: str
    district: str
    district_name: str
    level: str
    state: str
    previous: str
    since: float
    reason: str
    cause: str
    cause_name: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: the state before a run of ``unknown`` (what a frozen alert keeps showing)
    last_known: str = State.UP.value
    #: a frozen alert's facts as they were told (since, reason, cause of the outage),
    #: while the point is ``unknown``
    known: dict[str, Any] | None = None
    #: when the state it left began (a resolved alert's start, for Alertmanager)
    prior_since: float | None = None

    def shown(self, state: str) -> dict[str, Any]:
        """The alert as a message lists it, in ``state`` (a frozen one: its last known)."""
        if state != self.state and self.known is not None:
            return {**self.known, "state": state}
        return {
            "point": self.point,
            "name": self.name,
            "district": self.district,
            "district_name": self.district_name,
            "level": self.level,
            "state": state,
            "previous": self.previous,
            "since": self.since,
            "reason": self.reason,
            "cause": self.cause,
            "cause_name": self.cause_name,
            "metrics": self.metrics,
            "prior_since": self.prior_since,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one receiver, before it is put in a format."""

    receiver: str
    kind: Kind
    status: Literal["firing", "resolved"]
    group: dict[str, Any]
    #: the firing alerts, then those resolved since the last message (state not notifying)
    alerts: list[dict[str, Any]]
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(**data)


class Groups:
    """One receiver's alerts and groups (see the module docstring)."""

    def __init__(
        self,
        receiver: Receiver,
        settings: AlertsSettings,
        facts: Callable[[str], PointFacts | None],
        settle: float = 0.0,
        doubtful: Callable[[str, float], bool] | None = None,
        behind: Callable[[str], int] | None = None,
        acked: Callable[[str], bool] | None = None,
    ) -> None:
        self.receiver = receiver
        #: ``acked(cause)``: an operator acknowledged that incident; its reminders stop
        #: (:mod:`monitor.core.acks`), except to an Alertmanager API, which needs them
        self.acked = acked
        #: the longest a group is held for an uplink whose own state is not known yet
        self.settle = settle
        #: ``doubtful(point, since)``: an uplink of ``point`` failed its last cycle or has
        #: not been heard from since the point's trouble began (see :meth:`_unsettled`)
        self.doubtful = doubtful
        #: ``behind(point)``: how many rooms are reached through ``point`` (a cut uplink's
        #: rooms affected, counted before each of them has been judged)
        self.behind = behind
        self.settings = settings
        self._facts = facts
        self._notify = frozenset(receiver.states)
        self.current: dict[str, Alert] = {}
        #: group -> {point: state} as the last message said
        self.notified: dict[str, dict[str, str]] = {}
        self.last_sent: dict[str, float] = {}
        #: group -> when the trouble its firing messages tell of began
        self.started: dict[str, float] = {}
        #: point -> the since of the state it was last told in (a resolved or replaced
        #: alert's start: what the receiver heard, not a state it never heard of)
        self.told_since: dict[str, float] = {}
        #: group -> when its first change since the last message came in
        self.dirty: dict[str, float] = {}
        #: the highest event id taken into account
        self.last_event = 0
        self._changes: deque[tuple[float, int]] = deque()
        #: the storm guard: since when it speaks for every group, when it last did, and
        #: whether something changed since
        self.storm_since: float | None = None
        self.storm_told = 0.0
        self.storm_dirty = False
        #: reminders this often instead of ``repeat_interval`` (an Alertmanager API must
        #: hear of a firing alert every minute or it resolves it)
        self.repeat_every: float | None = None

    def set_facts(self, facts: Callable[[str], PointFacts | None]) -> None:
        """Names and districts from a reloaded inventory."""
        self._facts = facts

    def set_receiver(
        self,
        receiver: Receiver,
        settings: AlertsSettings,
        facts: Callable[[str], PointFacts | None],
    ) -> None:
        """A reloaded receiver and section: what was told stays told."""
        self.receiver, self.settings, self._facts = receiver, settings, facts
        self._notify = frozenset(receiver.states)

    @property
    def _repeat(self) -> float:
        return self.repeat_every if self.repeat_every is not None else self.settings.repeat_interval

    # --- input ----------------------------------------------------------------------------

    def wants(self, point: str) -> PointFacts | None:
        """The point's facts if this receiver hears of it (its districts and levels)."""
        facts = self._facts(point)
        if facts is None:
            return None
        r = self.receiver
        if r.districts and facts.district not in r.districts:
            return None
        if r.levels and facts.level not in r.levels:
            return None
        return facts

    def add(self, events: Iterable[Event], now: float) -> int:
        """Take stored events into account (those at or below :attr:`last_event` are
        skipped: a replay after a restart). Returns how many changed something."""
        taken = incidents = 0
        for e in events:
            if e.id and e.id <= self.last_event:
                continue
            self.last_event = max(self.last_event, e.id)
            facts = self.wants(e.point)
            if facts is None:
                continue
            before = self.current.get(e.point)
            old = self._memberships(before) if before is not None else {}
            last_known = before.last_known if before is not None else State.UP.value
            if e.state is not State.UNKNOWN:
                last_known = e.state.value  # maintenance too: what came before it is over
            known = None
            if e.state is State.UNKNOWN and before is not None:
                # frozen: it goes on saying what was known (since when, why, the cause)
                known = before.known or (
                    before.shown(before.state) if before.state != State.UNKNOWN.value else None
                )
            cause = e.cause or e.point
            cause_facts = self._facts(cause)
            alert = Alert(
                point=e.point,
                name=e.name or facts.name,
                district=facts.district,
                district_name=facts.district_name,
                level=facts.level,
                state=e.state.value,
                previous=e.previous.value,
                since=e.at,
                reason=e.reason,
                cause=cause,
                cause_name=cause_facts.name if cause_facts is not None else cause,
                # a room that does not answer: its last RTT, jitter and MOS are old news
                metrics=_now_figures(e.metrics) if e.state in _SILENT else dict(e.metrics),
                last_known=last_known,
                known=known,
                prior_since=before.since if before is not None else None,
            )
            self.current[e.point] = alert
            new = self._memberships(alert)
            if e.state is State.MAINTENANCE and State.MAINTENANCE.value not in self._notify:
                # silenced: it leaves its groups without a resolved message
                for g in old:
                    self.notified.get(g, {}).pop(e.point, None)
            if old != new:
                touched = old.keys() | new.keys()
                for g in touched:
                    self.dirty.setdefault(g, now)
                taken += 1
                # a gap is one message whatever its size: it does not make a storm
                incidents += any(not g.startswith("gap:") for g in touched)
        if incidents:
            self._changes.append((now, incidents))
            self._trim(now)
        return taken

    def _group_of(self, a: Alert) -> str:
        by = self.settings.group_by
        if by == "district":
            return f"district:{a.district}"
        if by == "cause":
            return f"cause:{a.cause}"
        if by == "point":
            return f"point:{a.point}"
        return "city"

    def _memberships(self, a: Alert) -> dict[str, str]:
        """group -> the state that group shows for ``a``."""
        notify = self._notify
        out: dict[str, str] = {}
        if a.state == State.UNKNOWN.value:
            if a.last_known in notify:
                out[self._group_of(a)] = a.last_known  # frozen: we do not know better
            if State.UNKNOWN.value in notify:
                gap = a.cause if a.cause.startswith("agent:") else "all"
                out[f"gap:{gap}"] = a.state
        elif a.state in notify:
            out[self._group_of(a)] = a.state
        return out

    def firing(self, group: str) -> dict[str, str]:
        """The group's points and the states it shows now."""
        out: dict[str, str] = {}
        for a in self.current.values():
            state = self._memberships(a).get(group)
            if state is not None:
                out[a.point] = state
        return out

    # --- output ---------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When :meth:`flush` has something to do next (a group's wait, a reminder)."""
        times = [t + self.settings.group_wait for t in self.dirty.values()]
        if self.storm_since is not None:
            if self.storm_dirty:
                times.append(self.storm_told + max(self.settings.group_interval, 1.0))
            if self._changes:
                times.append(self._changes[-1][0] + self.settings.storm.window)
        repeat = self._repeat
        if repeat > 0:
            times += [self.last_sent[g] + repeat for g, f in self.notified.items() if f]
        return min(times) if times else None

    def flush(self, now: float) -> list[Notification]:
        """The messages due at ``now``; the groups then count them as sent."""
        wait = self.settings.group_wait
        due = sorted(g for g, t in self.dirty.items() if t + wait <= now)
        storming = self._storming(now)
        changed: list[tuple[str, dict[str, str], dict[str, str]]] = []
        for g in due:
            now_firing, before = self.firing(g), self.notified.get(g, {})
            held = self.storm_since is None and self._unsettled(now_firing)
            if held and now - self.dirty[g] < self.settle:
                continue
            if self._followers_only(now_firing, before):
                # rooms behind an uplink already told as down, judged a cycle later: the
                # message counted them already ("30 rooms affected"); no second message
                self.notified[g] = now_firing
                del self.dirty[g]
                continue
            if (
                self.storm_since is None
                and not held
                and now_firing
                and before
                and now < self.last_sent.get(g, now) + self.settings.group_interval
            ):
                continue  # an update of a group already told waits group_interval
            del self.dirty[g]
            if g.startswith("gap:") and now_firing and before:
                # a gap that grows or shrinks (an agent's points coming back one by one) is
                # the same gap: one message when it opens, one when it is over
                self.notified[g] = {**before, **now_firing}
            elif now_firing != before:
                changed.append((g, now_firing, before))
            elif not now_firing:
                self._told(g, {}, now)  # emptied silently (maintenance): its outage is over
        out: list[Notification] = []
        incidents = [c for c in changed if not c[0].startswith("gap:")]
        if self.storm_since is not None or (storming and incidents):
            out += self._storm_step(now, storming, bool(incidents))
            changed = [c for c in changed if c[0].startswith("gap:")]
        for g, now_firing, before in changed:
            n = self._message(g, now_firing, before, now)
            if n is not None:
                out.append(n)
            self._told(g, now_firing, now)
        repeat = self._repeat
        if repeat > 0:
            for g, told in sorted(self.notified.items()):
                if self.storm_since is not None and not g.startswith("gap:"):
                    continue  # the storm's summaries speak for it
                if told and g not in self.dirty and self.last_sent.get(g, now) + repeat <= now:
                    self.last_sent[g] = now
                    if self.repeat_every is None and self._acknowledged(told):
                        continue  # the operators know: no reminder (the next is due later)
                    # a gap's reminder is a gap message again, not an incident's
                    kind: Kind = "gap" if g.startswith("gap:") else "repeat"
                    out.append(self._make(g, kind, "firing", self._still(told), {}, now))
        self._forget_healthy()
        return out

    def _acknowledged(self, told: dict[str, str]) -> bool:
        """Whether every incident of a group's firing points has been acknowledged."""
        if self.acked is None:
            return False
        causes = {self.current[p].cause for p in told if p in self.current}
        return bool(causes) and all(self.acked(c) for c in causes)

    def _storm_step(self, now: float, storming: bool, changed: bool) -> list[Notification]:
        """The storm guard speaks for every group: one city-wide summary when the storm
        begins, one update at most every ``group_interval`` while it goes on changing, and a
        last one once ``storm.window`` has passed without a change; then groups speak for
        themselves again, from what the summaries told."""
        first = self.storm_since is None
        if first:
            self.storm_since = now
        self.storm_dirty = self.storm_dirty or changed
        quiet = not storming and not self._changes
        interval = max(self.settings.group_interval, self.settings.group_wait)
        due = first or (self.storm_dirty and (quiet or now >= self.storm_told + interval))
        out: list[Notification] = []
        if due:
            view = self._view()
            if view:
                storm = self._storm(view, now)
                if storm.status == "firing" or self.receiver.send_resolved:
                    out.append(storm)
                for g, now_firing, _ in view:
                    self._told(g, now_firing, now)
            self.storm_told = now
            self.storm_dirty = False
        if quiet and not self.storm_dirty:
            self.storm_since = None
            for g in [g for g in self.dirty if not g.startswith("gap:")]:
                del self.dirty[g]  # told by the summaries
        return out

    def _view(self) -> list[tuple[str, dict[str, str], dict[str, str]]]:
        """The city as a storm summary shows it: every group in trouble now or when last
        told (group, firing now, as last told)."""
        groups = set(self.notified)
        for a in self.current.values():
            groups.update(self._memberships(a))
        out = []
        for g in sorted(g for g in groups if not g.startswith("gap:")):
            now_firing, before = self.firing(g), self.notified.get(g, {})
            if now_firing or before:
                out.append((g, now_firing, before))
        return out

    def _still(self, told: dict[str, str]) -> dict[str, str]:
        """The points of a message's set that are still in trouble (a gap's set is kept
        whole until it closes: its reminder names only the rooms still without data)."""
        kept = {
            p: s
            for p, s in told.items()
            if (a := self.current.get(p)) is not None and a.state != State.UP.value
        }
        return kept or told

    def _forget_healthy(self) -> None:
        """Points up and in no message's set: nothing to remember of them."""
        if self.dirty:
            return  # a pending group may still need their facts for its resolved message
        told = {p for f in self.notified.values() for p in f}
        for p in [p for p, a in self.current.items() if a.state == "up" and p not in told]:
            del self.current[p]
        for p in [p for p in self.told_since if p not in told]:
            del self.told_since[p]

    def _followers_only(self, firing: dict[str, str], before: dict[str, str]) -> bool:
        """What changed is only rooms added behind a cause already told as down (machine
        receivers, the Alertmanager formats, hear of every alert)."""
        if not before or self.receiver.format.startswith("alertmanager"):
            return False
        if any(firing.get(p) != s for p, s in before.items()) or len(firing) == len(before):
            return False
        for p in firing.keys() - before.keys():
            cause = self.current[p].cause
            if cause == p or before.get(cause) != State.DOWN.value:
                return False
        return True

    def _start_of(self, firing: dict[str, str], now: float) -> float:
        """When the trouble of a group's firing set began (its earliest since)."""
        since = [self.current[p].shown(s)["since"] for p, s in firing.items() if p in self.current]
        return min((t for t in since if t is not None), default=now)

    def _unsettled(self, firing: dict[str, str]) -> bool:
        """Whether the cause of the group's trouble may not be known yet. When a district's
        uplink is cut, all its rooms stop answering at once, but each is judged on its own
        cycle: a commune probed just after the cut reaches ``fail_after`` up to an interval
        before its headquarters. Until the headquarters is judged, the communes are
        ``down`` on their own, or ``unreachable`` behind an uplink that is only "not
        answering"; a message then would name the wrong cause, and the next one repeat the
        outage. So a group is held while a room of it is unreachable behind an uplink not
        yet down, or down while an uplink of it failed its last cycle or has not been heard
        from since the room began to fail (:attr:`doubtful`). In a cycle or two the uplink
        is down or answers again. Held at most :attr:`settle` seconds."""
        for point, state in firing.items():
            a = self.current[point]
            if state == State.UNREACHABLE.value and a.cause != point:
                cause = self.current.get(a.cause)
                if cause is None or cause.state not in self._notify:
                    return True
            elif (
                state == State.DOWN.value
                and a.cause == point
                and self.doubtful is not None
                and self.doubtful(point, a.since)
            ):
                return True
        return False

    def _told(self, group: str, firing: dict[str, str], now: float) -> None:
        before = self.notified.get(group, {})
        for p, state in firing.items():
            if before.get(p) != state or p not in self.told_since:
                since = self.current[p].shown(state)["since"] if p in self.current else None
                self.told_since[p] = since if since is not None else now
        if firing:
            if group not in self.started:
                self.started[group] = self._start_of(firing, now)
            self.notified[group] = firing
            self.last_sent[group] = now
        else:
            self.notified.pop(group, None)
            self.last_sent.pop(group, None)
            self.started.pop(group, None)

    def _trim(self, now: float) -> None:
        window = self.settings.storm.window
        while self._changes and self._changes[0][0] <= now - window:
            self._changes.popleft()

    def _storming(self, now: float) -> bool:
        self._trim(now)
        return sum(n for _, n in self._changes) > self.settings.storm.changes

    def _message(
        self, group: str, firing: dict[str, str], before: dict[str, str], now: float
    ) -> Notification | None:
        gap = group.startswith("gap:")
        if firing:
            return self._make(group, "gap" if gap else "firing", "firing", firing, before, now)
        if not self.receiver.send_resolved:
            return None
        return self._make(group, "gap-resolved" if gap else "resolved", "resolved", {}, before, now)

    def _make(
        self,
        group: str,
        kind: Kind,
        status: Literal["firing", "resolved"],
        firing: dict[str, str],
        before: dict[str, str],
        now: float,
    ) -> Notification:
        if firing and group not in self.started:
            self.started[group] = self._start_of(firing, now)
        alerts = [self._firing(p, s, before) for p, s in firing.items()]
        if status == "resolved" or self.receiver.send_resolved:
            alerts += [self._resolved(p, s) for p, s in before.items() if p not in firing]
        return Notification(
            receiver=self.receiver.name,
            kind=kind,
            status=status,
            group=self._describe(group, firing, alerts),
            alerts=alerts,
            created_at=now,
        )

    def _shown(self, point: str, state: str) -> dict[str, Any]:
        return {**self.current[point].shown(state), "was": None}

    def _firing(self, point: str, state: str, before: dict[str, str]) -> dict[str, Any]:
        """A firing alert; ``replaces``: the state last told, when it was another (an
        Alertmanager knows an alert by its name, which says the state: the old one must
        be resolved there), and ``replaced_since`` when that one began."""
        shown = self._shown(point, state)
        told = before.get(point)
        if told is not None and told != state:
            shown["replaces"] = told
            shown["replaced_since"] = self.told_since.get(point)
        return shown

    def _resolved(self, point: str, was: str) -> dict[str, Any]:
        """A point no longer firing in the group; ``was`` the state last told."""
        a = self.current.get(point)
        if a is not None:
            shown = {**a.shown(a.state), "was": was}
            if point in self.told_since:
                shown["prior_since"] = self.told_since[point]
            return shown
        facts = self._facts(point)
        return {
            "was": was,
            "point": point,
            "name": facts.name if facts else point,
            "district": facts.district if facts else "",
            "district_name": facts.district_name if facts else "",
            "level": facts.level if facts else "",
            "state": State.UP.value,
            "previous": "",
            "since": None,
            "reason": "",
            "cause": point,
            "cause_name": facts.name if facts else point,
            "metrics": {},
        }

    def _describe(
        self, group: str, firing: dict[str, str], alerts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The group's label and what the message is about: its causes, rooms, counts."""
        by, _, value = group.partition(":")
        info: dict[str, Any] = {"key": group, "by": by if value else group}
        if group in self.started:
            info["started"] = self.started[group]
        if by == "district" and value:
            facts = self._facts(value)
            info["district"] = value
            info["district_name"] = facts.name if facts else value
        causes: dict[str, dict[str, Any]] = {}
        counts: dict[str, int] = {}
        for a in alerts:
            if a["point"] not in firing:
                continue
            counts[a["state"]] = counts.get(a["state"], 0) + 1
            c = causes.setdefault(
                a["cause"],
                {"point": a["cause"], "name": a["cause_name"], "rooms": 0},
            )
            c["rooms"] += 1
            if a["point"] == a["cause"] or a["cause"].startswith("agent:") or "state" not in c:
                c.update(state=a["state"], reason=a["reason"], since=a["since"])
        if self.behind is not None:
            for c in causes.values():
                if c.get("state") == State.DOWN.value and firing.get(c["point"]):
                    # a cut uplink takes every room behind it, judged yet or not
                    c["rooms"] = max(c["rooms"], 1 + self.behind(c["point"]))
        info["causes"] = sorted(causes.values(), key=lambda c: (-c["rooms"], c["point"]))
        info["rooms"] = max(len(firing), sum(c["rooms"] for c in causes.values()))
        info["counts"] = counts
        info["since"] = min((a["since"] for a in alerts if a["point"] in firing), default=None)
        return info

    def _storm(
        self, changed: list[tuple[str, dict[str, str], dict[str, str]]], now: float
    ) -> Notification:
        alerts: list[dict[str, Any]] = []
        firing_all: dict[str, str] = {}
        for _, firing, before in changed:
            alerts += [self._firing(p, s, before) for p, s in firing.items()]
            if self.receiver.send_resolved:
                alerts += [self._resolved(p, s) for p, s in before.items() if p not in firing]
            firing_all.update(firing)
        group = self._describe("storm", firing_all, alerts)
        group["groups"] = len(changed)
        group["districts"] = len({a["district"] for a in alerts if a["point"] in firing_all})
        group["changes"] = sum(n for _, n in self._changes)
        group["window"] = self.settings.storm.window
        status: Literal["firing", "resolved"] = "firing" if firing_all else "resolved"
        return Notification(self.receiver.name, "storm", status, group, alerts, now)

    # --- persistence ----------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """What a restart needs (the service stores it with the notifications)."""
        return {
            "last_event": self.last_event,
            "current": [asdict(a) for a in self.current.values()],
            "notified": self.notified,
            "last_sent": self.last_sent,
            "started": self.started,
            "told_since": self.told_since,
            "dirty": self.dirty,
            "storm_since": self.storm_since,
            "storm_told": self.storm_told,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.last_event = int(data.get("last_event", 0))
        self.current = {a["point"]: Alert(**a) for a in data.get("current", [])}
        self.notified = {g: dict(f) for g, f in data.get("notified", {}).items()}
        self.last_sent = {g: float(t) for g, t in data.get("last_sent", {}).items()}
        self.started = {g: float(t) for g, t in data.get("started", {}).items()}
        self.told_since = {p: float(t) for p, t in data.get("told_since", {}).items()}
        self.dirty = {g: float(t) for g, t in data.get("dirty", {}).items()}
        since = data.get("storm_since")
        self.storm_since = float(since) if since is not None else None
        self.storm_told = float(data.get("storm_told", 0.0))
