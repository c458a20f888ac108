"""How a simulated point's replies travel: impairments along the uplink tree, applied per reply.

What a caller may rely on:

- **Topology.** A point is reached through its parent's uplink, so a reply from a
  commune goes through its own impairment and every ancestor's: delays add, each
  hop draws its own jitter, losses compound (``1 - Π(1 - loss)``), ``down``
  anywhere above makes the point silent. :meth:`Path.through` builds that once per
  change, so the per-reply cost does not grow with the depth of the tree.
- **Per reply, on the event loop's timers.** A delayed reply is one
  ``loop.call_at`` handle, never a sleeping task; a healthy path sends at once.
  :meth:`Shaper.close` cancels every reply still in flight.
- **Datagrams** (SIP over UDP, media echoes) are lost independently with the
  path's loss ratio, and may overtake each other when jitter exceeds their
  spacing, as on a real network.
- **Streams** (SIP over TCP, HTTP) cannot lose a reply outright: TCP retransmits.
  A "lost" stream reply comes one retransmission timeout later (200 ms, the Linux
  minimum, doubling per consecutive loss, re-drawn for up to six retransmissions);
  only when every draw loses (or the path is down) is it never sent, and since TCP
  delivers in order nothing after it on that connection is either. Replies on one
  connection leave in order, never earlier than the one before (one timer per
  connection serves its queue).
- **Reproducible.** Every random draw comes from the one :class:`random.Random`
  given to the :class:`Shaper`; the same seed and the same packet order give the
  same losses and delays.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.lab.impairment import Impairment

__all__ = ["Path", "Shaper", "StreamClock"]

#: Linux's minimum TCP retransmission timeout, and how many retransmissions are simulated
_RTO_MIN = 0.2
_RETRANSMISSIONS = 6


@dataclass(frozen=True, slots=True)
class Path:
    """The composed impairment between the monitor and one point."""

    down: bool
    loss: float
    delay: float
    #: (spread in seconds, True for a normal distribution) per hop that has jitter
    jitter: tuple[tuple[float, bool], ...]

    @classmethod
    def through(cls, hops: Sequence[Impairment]) -> Path | None:
        """The path through ``hops`` (the point's own impairment and its ancestors'); ``None`` if clean."""
        shaping = [hop for hop in hops if hop.shapes_link]
        if not shaping:
            return None
        kept = 1.0
        for hop in shaping:
            kept *= 1.0 - hop.loss
        return cls(
            down=any(hop.down for hop in shaping),
            loss=1.0 - kept,
            delay=sum(hop.delay for hop in shaping),
            jitter=tuple(
                (hop.jitter, hop.distribution == "normal") for hop in shaping if hop.jitter
            ),
        )


class StreamClock:
    """Per-connection state that keeps a stream's replies in order."""

    __slots__ = ("blocked", "free_at", "queue")

    def __init__(self) -> None:
        self.free_at = 0.0  # loop time the previous reply leaves at
        self.blocked = False  # a reply was never sent: TCP would deliver nothing after it
        # replies waiting, in order, with the loop time each may leave; one timer serves the
        # head, because the loop's timer heap does not keep equal deadlines in order
        self.queue: deque[tuple[float, Callable[..., Any], tuple[Any, ...]]] = deque()


class Shaper:
    """Applies paths to replies: drops, delays and orders them on the event loop's timers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sent = 0
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()

    @property
    def in_flight(self) -> int:
        """Timers pending: delayed datagrams, and streams with replies waiting."""
        return len(self._pending)

    def _sample(self, path: Path) -> float:
        delay = path.delay
        for spread, normal in path.jitter:
            delay += self.rng.gauss(0.0, spread) if normal else self.rng.uniform(-spread, spread)
        return delay if delay > 0.0 else 0.0

    def datagram(self, path: Path | None, send: Callable[..., Any], *args: Any) -> bool:
        """Send one datagram reply through ``path``; False if it was dropped."""
        if path is not None:
            if path.down or (path.loss and self.rng.random() < path.loss):
                self.dropped += 1
                return False
            delay = self._sample(path)
            if delay > 0.0:
                self._schedule(self._now() + delay, send, args)
                self.sent += 1
                return True
        self.sent += 1
        send(*args)
        return True

    def stream(
        self, path: Path | None, clock: StreamClock, send: Callable[..., Any], *args: Any
    ) -> bool:
        """Send one reply on a stream through ``path``, after the stream's previous one."""
        if clock.blocked:
            self.dropped += 1
            return False
        now = self._now()
        at = now
        if path is not None:
            if path.down:
                clock.blocked = True
                self.dropped += 1
                return False
            at += self._sample(path)
            if path.loss:
                rto = _RTO_MIN
                for _ in range(_RETRANSMISSIONS + 1):
                    if self.rng.random() >= path.loss:
                        break
                    at += rto
                    rto *= 2
                else:
                    clock.blocked = True
                    self.dropped += 1
                    return False
        at = max(at, clock.free_at)
        clock.free_at = at
        self.sent += 1
        if at <= now and not clock.queue:
            send(*args)
            return True
        clock.queue.append((at, send, args))
        if len(clock.queue) == 1:
            self._schedule(at, self._drain, (clock,))
        return True

    def _drain(self, clock: StreamClock) -> None:
        """Send the stream's head reply (its timer fired) and every later one already due."""
        queue = clock.queue
        _, send, args = queue.popleft()
        send(*args)
        now = self._now()
        while queue and queue[0][0] <= now:
            _, send, args = queue.popleft()
            send(*args)
        if queue:
            self._schedule(queue[0][0], self._drain, (clock,))

    def close(self) -> None:
        """Cancel every reply still in flight."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop``'s timers (the lab binds its shaper to the loop it starts on)."""
        self._loop = loop

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def _schedule(self, at: float, send: Callable[..., Any], args: tuple[Any, ...]) -> None:
        assert self._loop is not None
        key = next(self._keys)
        self._pending[key] = self._loop.call_at(at, self._fire, key, send, args)

    def _fire(self, key: int, send: Callable[..., Any], args: tuple[Any, ...]) -> None:
        del self._pending[key]
        send(*args)
