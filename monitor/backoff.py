"""Waits between the attempts of something that keeps failing: exponential with jitter.

One mechanism for every retry in confmon: an agent or the server reconnecting to the
broker (full jitter, so agents that lost it together do not come back in the same second)
and an alert receiver that does not answer (``least=0.5``: never less than half the
current wait, so a receiver back after an outage is not tried in a tight loop either).
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays doubling from ``first`` up to ``cap``, each drawn uniformly from
    ``[least × current, current]`` (``least=0``: full jitter); :meth:`reset` after a
    success."""

    def __init__(
        self,
        first: float = 0.5,
        cap: float = 30.0,
        rng: Callable[[float, float], float] = random.uniform,
        *,
        least: float = 0.0,
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError("backoff needs 0 < first <= cap")
        if not 0.0 <= least <= 1.0:
            raise ValueError("backoff needs 0 <= least <= 1")
        self.first = first
        self.cap = cap
        self.least = least
        self._rng = rng
        self._current = first

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = self._rng(self.least * self._current, self._current)
        self._current = min(self.cap, self._current * 2)
        return max(delay, self.first / 10)

    def reset(self) -> None:
        self._current = self.first
