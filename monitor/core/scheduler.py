"""The probe scheduler: every point's profile each ``interval``, starts spread evenly.

What a caller may rely on:

- **Spread, not bursts.** Point *i* of *n* starts its cycle at offset ``i/n * interval``
  (and its media stream at ``i/n * every``), rounded up to the 20 ms grid
  (:data:`~monitor.probes.base.TICK`): 450 points at 5 s start two per tick instead of
  all at once, and points due within one tick share the event loop's wake-up.
- **No drift.** Due times are an absolute schedule on the monotonic clock
  (``start + offset + k * period``); a late wake-up never shifts later cycles.
- **Overruns are skipped, not queued.** If a point's previous cycle is still
  running when the next is due, that slot is skipped and counted in
  :attr:`SchedulerStats.overruns`, so a slow network never snowballs.
- **Bounded.** At most ``monitor.concurrency`` probes run at once, and each probe
  is cut off one second after its own deadline as a safety net.
- **Cancel-safe.** Cancelling :meth:`Scheduler.run` cancels and awaits every
  probe in flight (bounded by a timeout) before it returns.

One dispatcher task with a heap of due times serves all points, instead of a
sleeping task per point: with 10,000 points that is one timer, not 10,000.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.core.results import ProbeResult
from monitor.inventory import Inventory, Point
from monitor.probes.base import ProbeContext, ProbeFn, aligned, now
from monitor.probes.registry import PROBES, deadline_of

__all__ = ["CycleSink", "Scheduler", "SchedulerStats", "probe_point"]

log = logging.getLogger(__name__)

#: called once per finished cycle of a point, with that cycle's results (media runs its own cycles)
CycleSink = Callable[[Point, Sequence[ProbeResult], float], None]

#: probes that run every ``interval``; ``media`` runs at its own ``every``
_SEPARATE = ("media",)


@dataclass
class SchedulerStats:
    """Counters a monitor exposes about its scheduler."""

    cycles: int = 0
    overruns: int = 0
    probes: int = 0
    in_flight: int = 0
    last_cycle_seconds: float = 0.0
    max_lag_seconds: float = 0.0  # how late the dispatcher woke for a due job, worst seen


@dataclass(eq=False)
class _Job:
    point: Point
    probes: tuple[str, ...]
    period: float
    running: bool = False


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    job: _Job = field(compare=False)


async def _safe_probe(
    fn: ProbeFn, name: str, point: Point, settings: Any, ctx: ProbeContext
) -> ProbeResult:
    """Run one probe; a bug in it becomes a failed result (and a log line), not a dead monitor."""
    start = now()
    try:
        async with asyncio.timeout(deadline_of(name, settings) + 1.0):
            return await fn(point.host, settings, ctx)
    except TimeoutError:
        error = "probe overran its deadline"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a probe bug must not stop the other 449 points
        log.exception("probe %s of %s crashed", name, point.id)
        error = f"probe crashed: {type(exc).__name__}: {exc}"
    return ProbeResult(
        probe=name, target=point.host, ok=False, at=start, duration=now() - start, error=error
    )


async def probe_point(
    inv: Inventory,
    point: Point,
    probes: Iterable[str],
    ctx: ProbeContext,
    limit: asyncio.Semaphore,
    registry: Mapping[str, ProbeFn] = PROBES,
) -> list[ProbeResult]:
    """Run the named probes of a point's profile concurrently (each under ``limit``)."""
    profile = inv.profile_of(point)

    async def one(name: str) -> ProbeResult:
        async with limit:
            return await _safe_probe(registry[name], name, point, getattr(profile, name), ctx)

    return list(await asyncio.gather(*(one(name) for name in probes)))


class Scheduler:
    """Runs an inventory's probes forever (see the module docstring for the guarantees)."""

    def __init__(
        self,
        inv: Inventory,
        ctx: ProbeContext,
        sink: CycleSink,
        registry: Mapping[str, ProbeFn] = PROBES,
    ) -> None:
        self.inv = inv
        self.registry = registry
        self.ctx = ctx
        self.sink = sink
        self.stats = SchedulerStats()
        self._limit = asyncio.Semaphore(inv.settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._heap: list[_Due] = []
        self._seq = 0

    def _jobs(self) -> list[tuple[_Job, float]]:
        """Each job with its first offset into its period."""
        points = list(self.inv.points.values())
        n = len(points)
        interval = self.inv.settings.interval
        jobs: list[tuple[_Job, float]] = []
        for i, point in enumerate(points):
            profile = self.inv.profile_of(point)
            names = profile.probes()
            cycle = tuple(p for p in names if p not in _SEPARATE)
            if cycle:
                jobs.append((_Job(point, cycle, interval), interval * i / n))
            if profile.media is not None:
                every = profile.media.every
                jobs.append((_Job(point, ("media",), every), every * i / n))
        return jobs

    def _push(self, at: float, job: _Job) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Due(at, self._seq, job))

    async def _run_job(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats.in_flight += 1
        try:
            results = await probe_point(
                self.inv, job.point, job.probes, self.ctx, self._limit, self.registry
            )
            elapsed = loop.time() - started
            self.stats.cycles += 1
            self.stats.probes += len(results)
            self.stats.last_cycle_seconds = elapsed
            try:
                self.sink(job.point, results, elapsed)
            except Exception:  # a consumer's bug must not stop the probing
                log.exception("handling the results of %s failed", job.point.id)
        finally:
            job.running = False
            self.stats.in_flight -= 1

    async def run(self) -> None:
        """Probe until cancelled."""
        loop = asyncio.get_running_loop()
        start = aligned(loop.time())
        for job, offset in self._jobs():
            # starts on the TICK grid: points due within the same 20 ms share a wake-up
            self._push(start + aligned(offset), job)
        try:
            while self._heap:
                wait = self._heap[0].at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                current = loop.time()
                while self._heap and self._heap[0].at <= current:
                    due = heapq.heappop(self._heap)
                    job = due.job
                    self.stats.max_lag_seconds = max(self.stats.max_lag_seconds, current - due.at)
                    if job.running:
                        self.stats.overruns += 1
                    else:
                        job.running = True
                        task = loop.create_task(self._run_job(job))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    # next slot on the absolute grid; skip (and count) slots already missed
                    nxt = due.at + job.period
                    if nxt <= current:
                        missed = int((current - due.at) // job.period)
                        self.stats.overruns += missed
                        nxt = due.at + (missed + 1) * job.period
                    self._push(nxt, job)
        finally:
            await self._cancel_all()

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
