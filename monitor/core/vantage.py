"""Two vantage points for one room: a point is down only when every healthy vantage agrees.

With ``replicas: 2`` the server has two agents probe each point from different
networks. Their results are not averaged: for each point one vantage is
*active* and only its results reach the health model, so that hysteresis
(``fail_after``, ``recover_after``) and the quality window count one result per
cycle as in single-vantage mode. The other vantage's latest result per probe is
kept, and decides in two cases:

- the active vantage **fails**, or loses more packets than the loss threshold (a
  media run cut half-way by its own uplink), while the other saw the point answer
  cleanly within ``fresh`` seconds: the result is not forwarded, and the other becomes
  active (the trouble is on the first vantage's side of the network, not at the room);
- the other vantage **succeeds** while the active one's latest result failed:
  it becomes active and its result is forwarded (the room is reachable).

So a failure (or heavy loss, hence ``degraded``) reaches the health model only when
no healthy vantage has seen the point answer cleanly recently.

**A vantage whose own uplink is bad** contradicts the other on most of the
points they share. Each agent keeps, per shared point, whether its latest
failure was contradicted by the other vantage; when that is true of at least
:data:`IMPAIRED_SHARE` of its shared points (and at least :data:`IMPAIRED_MIN`
points), the agent is *impaired*: its failures are ignored from then on and it is
reported as such (``"vantage": "impaired"`` in ``/api/v1/agents``, one log line),
instead of its 200 points going red. It is healthy again when fewer than
:data:`RECOVERED_SHARE` of its shared points contradict the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from monitor.core.results import ProbeResult

__all__ = ["IMPAIRED_MIN", "IMPAIRED_SHARE", "RECOVERED_SHARE", "Vantages"]

log = logging.getLogger("confmon")

IMPAIRED_SHARE = 0.5
IMPAIRED_MIN = 3
RECOVERED_SHARE = 0.2


class Vantages:
    """Chooses, per replicated point, whose results count (see the module docstring).

    ``fresh`` is how old another vantage's success may be and still overrule a failure
    (the server uses two probe intervals; ``fresh_for`` gives probes on a longer period of
    their own, such as media every 30 s, their period on top). ``on_change(agent, impaired)`` is called when
    an agent becomes impaired or recovers.
    """

    def __init__(
        self,
        fresh: float,
        on_change: Callable[[str, bool], None] | None = None,
        fresh_for: dict[str, float] | None = None,
    ) -> None:
        self.fresh = fresh
        #: a result losing more than this share of its packets is not a "good" answer: the
        #: room is degraded only when every healthy vantage sees the loss (thresholds.loss)
        self.loss_limit = 1.0
        #: per probe, for probes on a longer period of their own (media every 30 s)
        self.fresh_for = fresh_for or {}
        self._on_change = on_change
        #: (point, probe) -> agent -> (ok, at) of that agent's latest result
        self._latest: dict[tuple[str, str], dict[str, tuple[bool, float]]] = {}
        self._active: dict[str, str] = {}
        #: agent -> point -> whether its latest result there was contradicted by another
        self._contradicted: dict[str, dict[str, bool]] = {}
        self._impaired: set[str] = set()

    @property
    def impaired(self) -> frozenset[str]:
        """The agents whose own side of the network is judged bad."""
        return frozenset(self._impaired)

    def active(self, point: str) -> str | None:
        return self._active.get(point)

    def forget(self, agent: str) -> None:
        """``agent`` is gone (offline, unassigned): it is no vantage any more."""
        self._contradicted.pop(agent, None)
        if agent in self._impaired:
            self._impaired.discard(agent)
            if self._on_change is not None:
                self._on_change(agent, False)
        for point in [p for p, a in self._active.items() if a == agent]:
            del self._active[point]
        for seen in self._latest.values():
            seen.pop(agent, None)

    def retain(self, points: Iterable[str]) -> None:
        """Only ``points`` are replicated now: forget the others."""
        keep = set(points)
        self._latest = {k: v for k, v in self._latest.items() if k[0] in keep}
        self._active = {p: a for p, a in self._active.items() if p in keep}
        for marks in self._contradicted.values():
            for p in [p for p in marks if p not in keep]:
                del marks[p]

    def admit(self, agent: str, point: str, r: ProbeResult, peers: tuple[str, ...]) -> bool:
        """Whether ``agent``'s result ``r`` for ``point`` goes to the health model.

        ``peers`` are every agent assigned ``point`` (``agent`` among them).
        """
        seen = self._latest.setdefault((point, r.probe), {})
        good = r.ok and (r.loss is None or r.loss <= self.loss_limit)
        seen[agent] = (good, r.at)
        others = [
            (other, seen[other])
            for other in peers
            if other != agent and other in seen and other not in self._impaired
        ]
        fresh = self.fresh_for.get(r.probe, self.fresh)
        fresh_ok = any(ok and r.at - at <= fresh for _, (ok, at) in others)
        self._mark(agent, point, contradicted=not good and fresh_ok)
        if good:
            for other, (ok, at) in others:
                if not ok and abs(r.at - at) <= fresh:
                    self._mark(other, point, contradicted=True)
        if not good and agent in self._impaired:
            return False  # its own uplink is bad: its failures say nothing about the room
        active = self._active.get(point)
        if active is None or active not in peers or active in self._impaired:
            self._active[point] = active = agent
        if agent == active:
            if good or not fresh_ok:
                return True  # a success, or a failure every healthy vantage agrees with
            self._active[point] = next(other for other, (ok, _) in others if ok)
            return False
        if good:
            latest = seen.get(active)
            if latest is not None and not latest[0]:
                self._active[point] = agent  # the active vantage fails; this one sees the room
                return True
        return False

    def _mark(self, agent: str, point: str, *, contradicted: bool) -> None:
        marks = self._contradicted.setdefault(agent, {})
        if marks.get(point) == contradicted:
            return
        marks[point] = contradicted
        bad = sum(marks.values())
        share = bad / len(marks)
        if agent not in self._impaired and bad >= IMPAIRED_MIN and share >= IMPAIRED_SHARE:
            self._impaired.add(agent)
            log.warning(
                "agent %s: its probes fail on %d of %d points that another agent sees answer; "
                "treating it as an impaired vantage (its own uplink), not as rooms down",
                agent,
                bad,
                len(marks),
            )
            if self._on_change is not None:
                self._on_change(agent, True)
        elif agent in self._impaired and share < RECOVERED_SHARE:
            self._impaired.discard(agent)
            log.warning("agent %s agrees with the other vantages again", agent)
            if self._on_change is not None:
                self._on_change(agent, False)
