"""Acknowledgements: the operator says "we know, we are on it" about an incident.

An acknowledgement names an incident by its cause (the point where the trouble is, or
``agent:ID`` for an agent gone offline) and holds while that incident lasts: once the
cause is up again (or in maintenance), or no point waits on the agent any more, it lapses
by itself, so the next incident of the same cause is news again. While it holds, alert
reminders for it stop (:mod:`monitor.alerts.grouping`) and the screens show who
acknowledged it and when. They are kept in the event log's database (table ``acks``),
so a restart in the middle of an incident does not bring its reminders back; one whose
incident ended while confmon was stopped lapses at the first look after the restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from monitor.core.events import State
from monitor.core.health import HealthModel

__all__ = ["Ack", "Acks", "NotInTrouble"]

#: longest ``by`` kept, in characters
BY_LIMIT = 60


class NotInTrouble(ValueError):
    """The cause named has no incident to acknowledge (or is not known)."""


@dataclass(frozen=True, slots=True)
class Ack:
    cause: str
    by: str
    at: float

    def json(self) -> dict[str, object]:
        return {"cause": self.cause, "by": self.by, "at": self.at}


class Acks:
    """The acknowledgements of the incidents going on; ``model`` gives the current health
    model (it is replaced on a reload)."""

    def __init__(self, model: Callable[[], HealthModel]) -> None:
        self._model = model
        self._acks: dict[str, Ack] = {}

    def _in_trouble(self, cause: str) -> bool:
        model = self._model()
        if cause.startswith("agent:"):
            return any(h.state is State.UNKNOWN and h.cause == cause for h in model.points.values())
        h = model.points.get(cause)
        return h is not None and h.state not in (State.UP, State.MAINTENANCE)

    def add(self, cause: str, by: str, now: float) -> Ack:
        """Acknowledge the incident of ``cause``; :class:`NotInTrouble` if there is none."""
        if not self._in_trouble(cause):
            raise NotInTrouble(cause)
        ack = Ack(cause, by[:BY_LIMIT], now)
        self._acks[cause] = ack
        return ack

    def restore(self, saved: Iterable[Ack]) -> None:
        """Take the acknowledgements kept before a restart (those that lapsed meanwhile go
        at the next :meth:`active`)."""
        for ack in saved:
            self._acks[ack.cause] = ack

    def active(self) -> list[Ack]:
        """The acknowledgements that still hold, oldest first (lapsed ones are dropped)."""
        for cause in [c for c in self._acks if not self._in_trouble(c)]:
            del self._acks[cause]
        return sorted(self._acks.values(), key=lambda a: a.at)

    def acked(self, cause: str) -> bool:
        if cause not in self._acks:
            return False
        if not self._in_trouble(cause):
            del self._acks[cause]
            return False
        return True
