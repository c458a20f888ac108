"""What every probe shares: the probe context, the clock helpers and the probe signature.

A probe is ``async def probe(target, settings, ctx) -> ProbeResult``. A network
failure is a result with ``ok=False`` and a ``error`` reason, never an
exception; exceptions are for bugs and bad arguments. Every probe honours one
deadline for the whole probe (derived from its settings, see
:attr:`monitor.probes.spec.ProbeSpec.deadline`), applied to every socket operation.
This module knows no protocol: what a probe shares with the others of its kind
(the ICMP engine, the HTTP connection pool) it keeps in the context through
:meth:`ProbeContext.shared`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

from monitor.core.results import Phase, ProbeResult, result_json

__all__ = [
    "TICK",
    "Closable",
    "Phase",
    "ProbeContext",
    "ProbeFn",
    "ProbeResult",
    "aligned",
    "now",
    "result_json",
]

# the result types belong to the core (agents send them over the wire); re-exported here
# because every probe module builds them


#: the grid that paced sends and scheduled starts are aligned to on the monotonic clock
TICK = 0.020


def aligned(t: float, step: float = TICK) -> float:
    """The first multiple of ``step`` at or after ``t`` (monotonic seconds).

    Paced senders that share a grid wake the event loop together: fifteen media
    streams at 20 ms pacing cost 50 wake-ups a second instead of 750, and on a VM
    each wake-up from idle costs tens of microseconds before any work is done.
    """
    return math.ceil(t / step - 1e-9) * step


def now() -> float:
    """Wall-clock time (Unix seconds) for result timestamps; durations use monotonic clocks."""
    return time.time()


class Closable(Protocol):
    """A resource a :class:`ProbeContext` can hold: it has ``async close()``."""

    async def close(self) -> None: ...


R = TypeVar("R", bound=Closable)


class ProbeContext:
    """Resources shared by all probes of a process, opened on first use and closed together.

    Use as ``async with ProbeContext() as ctx``. Sharing matters: one ICMP engine
    (one socket per address family for all targets, :func:`monitor.probes.icmp.engine`)
    and one HTTP connection pool (:func:`monitor.probes.http.session`).
    """

    def __init__(self) -> None:
        self._resources: dict[str, Closable] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._stack = contextlib.AsyncExitStack()

    async def shared(self, key: str, opener: Callable[[], Awaitable[R]]) -> R:
        """The resource under ``key``, opened with ``opener()`` on the first call.

        Every later call with the same ``key`` returns the same object (callers that
        arrive while it is being opened wait for it), until :meth:`close` closes it.
        An opener that raises leaves nothing behind: the next call tries again. One
        ``key`` must always come with the same kind of resource; by convention it is
        the name of the probe that owns it.
        """
        resource = self._resources.get(key)
        if resource is None:
            lock = self._opening.setdefault(key, asyncio.Lock())
            async with lock:
                resource = self._resources.get(key)
                if resource is None:
                    resource = await opener()
                    self._stack.push_async_callback(resource.close)
                    self._resources[key] = resource
        return cast(R, resource)

    async def close(self) -> None:
        """Close every resource opened so far, the last opened first; the context stays usable."""
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        self._resources.clear()
        self._opening.clear()
        await stack.aclose()

    async def __aenter__(self) -> ProbeContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


ProbeFn = Callable[[str, Any, ProbeContext], Awaitable[ProbeResult]]
