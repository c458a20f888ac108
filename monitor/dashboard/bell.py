"""The terminal bell: rings once when an incident big enough to wake the operator begins.

An incident rings when a district headquarters is down (its whole district is cut) or
when it takes more than ``rooms`` rooms down; it rings once, however long it lasts, and
again only as a new incident after it has ended. Pure logic: the caller sounds the bell.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.dashboard.model import Incident

__all__ = ["DEFAULT_ROOMS", "Bell"]

#: an incident taking more rooms down than this rings even if no headquarters is down
DEFAULT_ROOMS = 10


class Bell:
    def __init__(self, rooms: int = DEFAULT_ROOMS) -> None:
        self.rooms = rooms
        self._rung: set[str] = set()

    def loud(self, i: Incident) -> bool:
        """Whether ``i`` is worth waking the operator for."""
        if i.state not in ("down", "unreachable"):
            return False
        district_cut = i.head is not None and i.head.parent is None and i.state == "down"
        return district_cut or i.size > self.rooms

    def update(self, incidents: Iterable[Incident]) -> bool:
        """True when one of ``incidents`` is loud and has not rung yet; ended incidents are
        forgotten, so a later one of the same cause rings again."""
        loud = {i.cause for i in incidents if self.loud(i)}
        new = loud - self._rung
        self._rung = loud
        return bool(new)
