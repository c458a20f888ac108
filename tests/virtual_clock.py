"""A virtual-time event loop for tests: timers fire in order, at once, on an exact clock.

``run_virtual(main())`` runs a coroutine on a :class:`VirtualClockLoop`, whose
``time()`` is a virtual clock. Whenever the loop would block waiting for its next
timer, the clock jumps to that timer instead: ``await asyncio.sleep(5)`` costs no
wall time, and every callback sees exactly the time it was scheduled for, however
loaded the machine is. So timing assertions can be exact instead of tolerant.

What a test may rely on:

- The clock only moves when nothing is ready to run: a burst of callbacks (a
  dispatcher starting probes) all see the same time.
- Real I/O is still polled, without blocking, on every iteration; only with no
  timer pending at all does the loop block on I/O as usual. Work done in threads
  (``asyncio.to_thread``) does *not* hold the clock back: keep it out of
  virtual-time tests.
- ``lateness=x`` makes every jump overshoot by a random amount in ``[0, x)``
  (from a seeded RNG), like a host that wakes timers late; :meth:`~VirtualClockLoop.stall`
  moves the clock on as if a callback had blocked the loop that long.
- The clock starts at ``start`` (default 10,000 s). Far from zero on purpose:
  for due times within a factor of two of each other, ``now + (when - now)`` is
  exactly ``when`` in floating point, so a jump lands on the timer to the bit.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "run_virtual"]

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    """Polls real I/O without blocking; a wait for a timer becomes a jump of the clock."""

    loop: VirtualClockLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer at all: only I/O (or another thread) can wake us
            return super().select(None)
        self.loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock (see the module docstring)."""

    def __init__(self, start: float = 10_000.0, lateness: float = 0.0, seed: int = 0) -> None:
        self._now = start
        self._lateness = lateness
        self._rng = random.Random(seed)
        selector = _Selector()
        selector.loop = self
        super().__init__(selector)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` (plus the configured lateness)."""
        late = self._rng.uniform(0.0, self._lateness) if self._lateness else 0.0
        self._now += seconds + late

    def stall(self, seconds: float) -> None:
        """Call from a callback: as if it had blocked the loop for ``seconds``."""
        self._now += seconds


def run_virtual(
    main: Coroutine[Any, Any, T], *, start: float = 10_000.0, lateness: float = 0.0, seed: int = 0
) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualClockLoop`, then close it."""
    with asyncio.Runner(loop_factory=lambda: VirtualClockLoop(start, lateness, seed)) as runner:
        return runner.run(main)
