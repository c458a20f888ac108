"""The probe scheduler: every point's profile each ``interval``, starts spread evenly.

What a caller may rely on:

- **Spread, not bursts.** Point *i* of *n* starts its cycle at offset ``i/n * interval``
  (and its media stream at ``i/n * every``), rounded up to the 20 ms grid
  (:data:`~monitor.probes.base.TICK`): 450 points at 5 s start at most two per tick
  (1.8 on average) instead of all at once, and points due within one tick share the
  event loop's wake-up.
- **No drift.** Due times are an absolute schedule on the monotonic clock
  (``start + offset + k * period``); a late wake-up never shifts later cycles.
- **Overruns are skipped, not queued.** If a point's previous cycle is still
  running when the next is due, that slot is skipped and counted in
  :attr:`SchedulerStats.overruns`, so a slow network never snowballs.
- **Bounded.** At most ``monitor.concurrency`` probes run at once, and each probe
  is cut off one second after its own deadline as a safety net.
- **Cancel-safe.** Cancelling :meth:`Scheduler.run` cancels and awaits every
  probe in flight (bounded by a timeout) before it returns. With nothing to probe,
  :meth:`Scheduler.run` waits (for :meth:`Scheduler.update`) until cancelled.
- **Reload applies the difference.** :meth:`Scheduler.update` (called from the
  event loop's thread, while :meth:`Scheduler.run` runs or not) swaps in a new
  inventory without a restart:

  - a point whose probing is unchanged (same host, equal settings for the probes
    of each of its jobs; its name, parent or profile *name* may differ) keeps its
    jobs: the same phase on the schedule, and its probes in flight go on and
    deliver their results (with the new :class:`~monitor.inventory.Point`);
  - a removed point's jobs leave the schedule and its cycles in flight are
    cancelled: no result for it reaches the sink after :meth:`~Scheduler.update`;
  - an added point, and a changed one (host or settings; its cycle in flight is
    cancelled), gets a new job at its evenly spread offset in the current cycle
    (the next slot of ``start + offset + k * period`` not in the past), so a
    reload never bursts; the media job is compared on its own, like the rest;
  - if ``monitor.interval`` changed, every kept interval job moves to its offset
    on the new period (probes in flight go on); if ``monitor.concurrency``
    changed, new probes queue on a new limit (the ones in flight finish under the
    old one, so for a moment both limits apply);
  - :attr:`Scheduler.stats` keeps counting across updates.

One dispatcher task with a heap of due times serves all points, instead of a
sleeping task per point: with 10,000 points that is one timer, not 10,000.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.core.results import ProbeResult
from monitor.inventory import Inventory, Point, Profile
from monitor.probes.base import ProbeContext, ProbeFn, aligned, now
from monitor.probes.registry import PROBES, SEPARATE, deadline_of

__all__ = ["CycleSink", "Scheduler", "SchedulerStats", "UpdateStats", "probe_point"]

log = logging.getLogger(__name__)

#: called once per finished cycle of a point, with that cycle's results (media runs its own cycles)
CycleSink = Callable[[Point, Sequence[ProbeResult], float], None]

#: probes with a period of their own (media: its ``every``), not run every ``interval``
_SEPARATE = SEPARATE


@dataclass
class SchedulerStats:
    """Counters a monitor exposes about its scheduler."""

    cycles: int = 0
    overruns: int = 0
    probes: int = 0
    in_flight: int = 0
    last_cycle_seconds: float = 0.0
    max_lag_seconds: float = 0.0  # how late the dispatcher woke for a due job, worst seen


@dataclass(frozen=True)
class UpdateStats:
    """What one :meth:`Scheduler.update` did, counted in points.

    A point is ``changed`` when any of its jobs is new or gone (host, settings, or
    which probes run); ``rescheduled`` counts the ``kept`` points that moved to a
    new phase because ``monitor.interval`` changed.
    """

    kept: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    rescheduled: int = 0


#: a job's identity across updates: the point and the probes of the cycle
_Key = tuple[str, tuple[str, ...]]


@dataclass(eq=False)
class _Job:
    point: Point
    probes: tuple[str, ...]
    period: float
    #: into its period, before alignment to the grid (``period * i / n``)
    offset: float
    #: the settings of ``probes``, in order: with the host, what decides "unchanged" on update
    settings: tuple[Any, ...]
    #: what a cycle runs: ``probes`` with their functions, settings and cut-offs
    plan: tuple[_Probe, ...] = ()
    running: bool = False
    #: the cycle in flight (cancelled when the job is retired)
    task: asyncio.Task[None] | None = None
    #: removed or replaced by an update: a cycle still unwinding must not deliver
    retired: bool = False

    @property
    def key(self) -> _Key:
        return (self.point.id, self.probes)

    def same_probing(self, other: _Job) -> bool:
        # pydantic models compare by value, so equal settings from a new file are "the same"
        return self.point.host == other.point.host and self.settings == other.settings


#: a heap entry: due time, a tie-breaking sequence number, the job (a tuple compares in C)
_Due = tuple[float, int, _Job]


@dataclass(frozen=True, slots=True)
class _Probe:
    """One probe of a cycle, resolved once per job instead of once per cycle."""

    name: str
    fn: ProbeFn
    settings: Any
    #: the safety net: the probe's own deadline plus a second
    cutoff: float


def _plan_probes(
    profile: Profile, probes: Iterable[str], registry: Mapping[str, ProbeFn]
) -> tuple[_Probe, ...]:
    """The probes ``probes`` of ``profile``, in order, ready to run."""
    plan = []
    for name in probes:
        settings = getattr(profile, name)
        plan.append(_Probe(name, registry[name], settings, deadline_of(name, settings) + 1.0))
    return tuple(plan)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _safe_probe(
    probe: _Probe, point: Point, ctx: ProbeContext, limit: asyncio.Semaphore
) -> ProbeResult:
    """Run one probe under ``limit``, cut off at its deadline plus a second.

    A bug in it becomes a failed result (and a log line), not a dead monitor;
    cancellation goes through.
    """
    await limit.acquire()
    try:
        start = now()
        try:
            async with asyncio.timeout(probe.cutoff):
                return await probe.fn(point.host, probe.settings, ctx)
        except TimeoutError:
            error = "probe overran its deadline"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe bug must not stop the other 449 points
            log.exception("probe %s of %s crashed", probe.name, point.id)
            error = f"probe crashed: {type(exc).__name__}: {exc}"
        return ProbeResult(
            probe=probe.name,
            target=point.host,
            ok=False,
            at=start,
            duration=now() - start,
            error=error,
        )
    finally:
        limit.release()


async def _run_cycle(
    plan: Sequence[_Probe], point: Point, ctx: ProbeContext, limit: asyncio.Semaphore
) -> list[ProbeResult]:
    """Run ``plan`` concurrently; its results in its order.

    The last probe runs in the calling task and every other one in a task of its
    own (a one-probe cycle creates no task). If the caller is cancelled, so is
    every probe of the cycle, and this returns (raises) only once they all ended.
    """
    if len(plan) <= 1:
        return [await _safe_probe(plan[0], point, ctx, limit)] if plan else []
    loop = asyncio.get_running_loop()
    others = [loop.create_task(_safe_probe(p, point, ctx, limit)) for p in plan[:-1]]
    try:
        last = await _safe_probe(plan[-1], point, ctx, limit)
        # _safe_probe raises only CancelledError (or what no code should catch)
        results = [await task for task in others]
    except BaseException:
        for task in others:
            task.cancel()
        await asyncio.wait(others)
        raise
    results.append(last)
    return results


async def probe_point(
    inv: Inventory,
    point: Point,
    probes: Iterable[str],
    ctx: ProbeContext,
    limit: asyncio.Semaphore,
    registry: Mapping[str, ProbeFn] = PROBES,
) -> list[ProbeResult]:
    """Run the named probes of a point's profile concurrently (each under ``limit``)."""
    return await _run_cycle(
        _plan_probes(inv.profile_of(point), probes, registry), point, ctx, limit
    )


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
        self._limit_size = inv.settings.concurrency
        #: cycles of retired jobs still unwinding (the others are their job's ``task``)
        self._retiring: set[asyncio.Task[None]] = set()
        self._heap: list[_Due] = []
        self._seq = 0
        self._jobs = self._plan(inv, registry)
        #: the schedule's origin while :meth:`run` runs (``None`` otherwise)
        self._start: float | None = None
        #: resolved to wake the dispatcher early (an update put something earlier on the heap)
        self._wake: asyncio.Future[None] | None = None

    @staticmethod
    def _plan(inv: Inventory, registry: Mapping[str, ProbeFn]) -> dict[_Key, _Job]:
        """The jobs an inventory needs, each with its offset into its period."""
        points = list(inv.points.values())
        n = len(points)
        interval = inv.settings.interval
        jobs: dict[_Key, _Job] = {}

        def add(point: Point, probes: tuple[str, ...], period: float, offset: float) -> None:
            plan = _plan_probes(inv.profile_of(point), probes, registry)
            job = _Job(point, probes, period, offset, tuple(p.settings for p in plan), plan)
            jobs[job.key] = job

        for i, point in enumerate(points):
            profile = inv.profile_of(point)
            names = profile.probes()
            cycle = tuple(p for p in names if p not in _SEPARATE)
            if cycle:
                add(point, cycle, interval, interval * i / n)
            if profile.media is not None:
                every = profile.media.every
                add(point, ("media",), every, every * i / n)
        return jobs

    def _push(self, at: float, job: _Job) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, job))

    def _first_slot(self, job: _Job, start: float, now: float) -> float:
        """The job's first slot ``start + offset + k * period`` that is not in the past."""
        # starts on the TICK grid: points due within the same 20 ms share a wake-up
        base = start + aligned(job.offset)
        k = max(0, math.ceil((now - base) / job.period))
        return base + k * job.period

    def update(self, inv: Inventory) -> UpdateStats:
        """Probe ``inv`` from now on, keeping what did not change (see the module docstring).

        Synchronous and atomic with respect to the dispatcher: call it from the event
        loop's thread. Before or after :meth:`run` it only swaps the plan.
        """
        before, after = set(self.inv.points), set(inv.points)
        old, new = self._jobs, self._plan(inv, self.registry)
        added: list[_Job] = []
        moved: list[_Job] = []  # kept, with a new period: the interval changed
        for key, job in new.items():
            was = old.get(key)
            if was is None or not was.same_probing(job):
                added.append(job)
                continue
            # the kept job carries the new Point: its profile name may have changed
            was.point = job.point
            if was.period != job.period:
                was.period, was.offset = job.period, job.offset
                moved.append(was)
            new[key] = was
        retired = [job for key, job in old.items() if new.get(key) is not job]
        for job in retired:
            job.retired = True
            if job.task is not None and not job.task.done():
                job.task.cancel()
                self._retiring.add(job.task)
                job.task.add_done_callback(self._retiring.discard)

        self.inv, self._jobs = inv, new
        if inv.settings.concurrency != self._limit_size:
            self._limit = asyncio.Semaphore(inv.settings.concurrency)
            self._limit_size = inv.settings.concurrency

        if self._start is not None:
            gone = set(retired) | set(moved)
            if gone:
                self._heap = [d for d in self._heap if d[2] not in gone]
                heapq.heapify(self._heap)
            now = asyncio.get_running_loop().time()
            for job in added + moved:
                self._push(self._first_slot(job, self._start, now), job)
            if (added or moved) and self._wake is not None and not self._wake.done():
                self._wake.set_result(None)  # the new head may be due before the current sleep ends

        common = before & after
        changed = {j.point.id for j in added + retired} & common
        rescheduled = {j.point.id for j in moved} - changed
        return UpdateStats(
            kept=len(common) - len(changed),
            added=len(after - before),
            removed=len(before - after),
            changed=len(changed),
            rescheduled=len(rescheduled),
        )

    async def _sleep(self, until: float | None) -> None:
        """Sleep until ``until`` on the loop's clock (forever if ``None``) or an update."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = None if until is None else loop.call_at(until, _resolve, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _run_job(self, job: _Job, loop: asyncio.AbstractEventLoop) -> None:
        started = loop.time()
        stats = self.stats
        stats.in_flight += 1
        try:
            results = await _run_cycle(job.plan, job.point, self.ctx, self._limit)
            if job.retired:
                # cancelled by an update, but a probe swallowed the cancellation:
                # a removed point's results must still not reach the sink
                return
            elapsed = loop.time() - started
            stats.cycles += 1
            stats.probes += len(results)
            stats.last_cycle_seconds = elapsed
            try:
                self.sink(job.point, results, elapsed)
            except Exception:  # a consumer's bug must not stop the probing
                log.exception("handling the results of %s failed", job.point.id)
        finally:
            job.running = False
            job.task = None
            stats.in_flight -= 1

    async def run(self) -> None:
        """Probe until cancelled (:meth:`update` may change what is probed meanwhile)."""
        loop = asyncio.get_running_loop()
        self._start = start = aligned(loop.time())
        self._heap = []
        for job in self._jobs.values():
            self._push(self._first_slot(job, start, start), job)
        stats = self.stats
        try:
            while True:
                heap = self._heap  # update() may have rebuilt it
                if not heap:
                    await self._sleep(None)  # nothing to probe until an update brings points
                    continue
                if heap[0][0] > loop.time():
                    await self._sleep(heap[0][0])
                    continue
                current = loop.time()
                while heap and heap[0][0] <= current:
                    at, _, job = heapq.heappop(heap)
                    if current - at > stats.max_lag_seconds:
                        stats.max_lag_seconds = current - at
                    if job.running:
                        stats.overruns += 1
                    else:
                        job.running = True
                        job.task = loop.create_task(self._run_job(job, loop))
                    # next slot on the absolute grid; skip (and count) slots already missed
                    nxt = at + job.period
                    if nxt <= current:
                        missed = int((current - at) // job.period)
                        stats.overruns += missed
                        nxt = at + (missed + 1) * job.period
                    self._push(nxt, job)
        finally:
            self._start = None
            await self._cancel_all()

    async def _cancel_all(self) -> None:
        """Cancel every cycle in flight (current jobs' and retired ones') and wait for them."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        tasks += self._retiring
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
