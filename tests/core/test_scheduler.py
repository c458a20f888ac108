"""The scheduler: spread starts, no drift, overruns skipped, bounded, media on its own period,
cancel-safe, and reload by difference (:meth:`Scheduler.update`).

Every test runs on the virtual clock of :mod:`tests.virtual_clock`: probes "take"
seconds of virtual time, so times are asserted exactly (to 1e-9) and no test
depends on how loaded the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from monitor.core.results import ProbeResult
from monitor.core.scheduler import Scheduler, UpdateStats, probe_point
from monitor.inventory import Inventory, Point
from monitor.inventory.synthetic import synthetic_inventory
from monitor.probes.base import TICK, ProbeContext, aligned
from tests.virtual_clock import VirtualClockLoop, run_virtual

EXACT = 1e-9


class Recorder:
    """Stands in for the network: records when each probe of each point starts (virtual time)."""

    def __init__(
        self, seconds: float | Callable[[str, str], float] = 0.0, crash: bool = False
    ) -> None:
        self.seconds = seconds
        self.crash = crash
        self.starts: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled: Counter[tuple[str, str]] = Counter()
        self.running: set[tuple[str, str]] = set()
        self.overlap = False

    def probe(self, name: str) -> Any:
        async def run(target: str, settings: Any, ctx: ProbeContext) -> ProbeResult:
            loop = asyncio.get_running_loop()
            key = (target, name)
            self.overlap |= key in self.running
            self.running.add(key)
            self.starts[key].append(loop.time())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            seconds = self.seconds(target, name) if callable(self.seconds) else self.seconds
            try:
                if self.crash:
                    raise RuntimeError("boom")
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                self.cancelled[key] += 1
                raise
            finally:
                self.in_flight -= 1
                self.running.discard(key)
            return ProbeResult(probe=name, target=target, ok=True, at=0.0, duration=seconds)

        return run

    def registry(self) -> dict[str, Any]:
        return {name: self.probe(name) for name in ("icmp", "tcp", "http", "sip", "media")}


PROFILE: dict[str, Any] = {"icmp": {}, "sip": {}}
WITH_MEDIA: dict[str, Any] = {"icmp": {}, "sip": {}, "media": {"every": "3s"}}


def inventory(points: int, profile: dict[str, Any] | None = None, **monitor: Any) -> Inventory:
    return synthetic_inventory(
        points,
        districts=min(points, 5),
        profile=profile or PROFILE,
        monitor={"stale_after": "60s", **monitor},
    )


@dataclasses.dataclass
class Run:
    sched: Scheduler
    #: (point, results, virtual time the sink got them)
    cycles: list[tuple[Point, Sequence[ProbeResult], float]]
    #: virtual time when run() was started, and the schedule's origin: ``aligned(t0)``
    t0: float
    start: float
    #: virtual time when the cancelled run() had returned
    end: float
    updates: list[UpdateStats]
    #: probes cancelled while the scheduler ran (by updates), not by the final cancel
    cancelled: Counter[tuple[str, str]]

    def delivered(self, point_id: str) -> list[float]:
        return [t for p, _, t in self.cycles if p.id == point_id]


def deliveries(run: Run) -> list[tuple[str, float]]:
    """(point id, time) of every delivered cycle; sorted, since ties at one instant have no order."""
    return sorted((p.id, t) for p, _, t in run.cycles)


During = Callable[
    [Scheduler, VirtualClockLoop, float, list[UpdateStats]], Coroutine[Any, Any, None]
]


def run_for(
    seconds: float, inv: Inventory, rec: Recorder, during: During | None = None, **clock: Any
) -> Run:
    """Run a scheduler for ``seconds`` of virtual time (with ``during`` alongside), then cancel it."""

    async def main() -> Run:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        cycles: list[tuple[Point, Sequence[ProbeResult], float]] = []
        updates: list[UpdateStats] = []
        async with ProbeContext() as ctx:
            sched = Scheduler(
                inv,
                ctx,
                lambda p, r, e: cycles.append((p, r, loop.time())),
                registry=rec.registry(),
            )
            t0 = loop.time()
            task = loop.create_task(sched.run())
            side = None if during is None else loop.create_task(during(sched, loop, t0, updates))
            await asyncio.sleep(seconds)
            cancelled = rec.cancelled.copy()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            end = loop.time()
            if side is not None:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side
        return Run(sched, cycles, t0, aligned(t0), end, updates, cancelled)

    return run_virtual(main(), **clock)


async def until(loop: asyncio.AbstractEventLoop, t: float) -> None:
    await asyncio.sleep(t - loop.time())


def slots(start: float, offset: float, period: float, since: float, before: float) -> list[float]:
    """The schedule's promise: ``start + aligned(offset) + k * period`` in ``[since, before)``."""
    base = start + aligned(offset)
    k = max(0, math.ceil((since - base) / period - EXACT))
    out = []
    while base + k * period < before:
        out.append(base + k * period)
        k += 1
    return out


def assert_times(actual: Sequence[float], expected: Sequence[float]) -> None:
    assert len(actual) == len(expected), (actual, expected)
    assert all(abs(a - e) < EXACT for a, e in zip(actual, expected, strict=True)), (
        actual,
        expected,
    )


# --- the schedule -----------------------------------------------------------------------


def test_450_points_start_on_the_grid_at_most_two_per_tick() -> None:
    """450 points at 5 s: every first start on the 20 ms grid, 1.8 per tick, never 3."""
    rec = Recorder()
    inv = inventory(450, interval="5s")
    run = run_for(5.5, inv, rec)
    firsts = []
    for i, point in enumerate(inv.points.values()):
        first = rec.starts[(point.host, "icmp")][0]
        assert abs(first - (run.start + aligned(5.0 * i / 450))) < EXACT
        firsts.append(first)
    ticks = [(t - run.start) / TICK for t in firsts]
    assert all(abs(t - round(t)) < 1e-6 for t in ticks)
    per_tick = Counter(round(t) % 250 for t in ticks)  # 250 ticks in 5 s
    assert len(per_tick) == 250  # every tick of the interval is used
    assert Counter(per_tick.values()) == {2: 200, 1: 50}  # 450 = 200 * 2 + 50 * 1


def test_no_drift_with_probes_of_varying_length() -> None:
    """Probes of 0.3-1.7 s at 5 s, 200 cycles: start k of each point is exactly start + offset + 5k.

    Fails for a scheduler that sleeps ``interval`` after each cycle: its starts
    drift by the sum of the probe times.
    """
    rng = random.Random(8)
    rec = Recorder(seconds=lambda target, name: rng.uniform(0.3, 1.7))
    inv = inventory(20, interval="5s")
    run = run_for(200 * 5.0 - 0.1, inv, rec)
    for i, point in enumerate(inv.points.values()):
        expected = slots(run.start, 5.0 * i / 20, 5.0, run.start, run.start + 1000.0)
        assert len(expected) == 200
        assert_times(rec.starts[(point.host, "icmp")], expected)
        assert_times(rec.starts[(point.host, "sip")], expected)
    assert run.sched.stats.overruns == 0
    assert run.sched.stats.cycles == len(run.cycles) >= 20 * 199


def test_late_wakeups_do_not_accumulate() -> None:
    """Timers that fire up to 3 ms late delay a start by at most 3 ms, never the starts after it."""
    rec = Recorder(seconds=0.2)
    inv = inventory(10, interval="1s")
    run = run_for(300.0, inv, rec, lateness=0.003, seed=3)
    for i, point in enumerate(inv.points.values()):
        expected = slots(run.start, i / 10, 1.0, run.start, run.start + 300.0 - 0.003)
        actual = rec.starts[(point.host, "icmp")]
        assert len(actual) >= len(expected) >= 299
        for a, e in zip(actual, expected, strict=False):
            assert 0.0 <= a - e < 0.003 + EXACT
    assert 0.0 < run.sched.stats.max_lag_seconds < 0.003 + EXACT
    assert run.sched.stats.overruns == 0


def test_overruns_are_skipped_and_counted() -> None:
    """A 12 s cycle at a 5 s interval: slots 5 and 10 skipped (counted), the next cycle at 15."""
    rec = Recorder(seconds=12.0)
    inv = inventory(1, {"icmp": {"timeout": "20s"}}, interval="5s")
    run = run_for(60.5, inv, rec)
    assert_times(rec.starts[("127.20.0.1", "icmp")], [run.start + s for s in (0, 15, 30, 45, 60)])
    assert run.sched.stats.overruns == 8  # 13 slots in [0, 60], 5 of them started
    assert run.sched.stats.cycles == 4  # the one started at 60 is still running
    assert not rec.overlap  # never two cycles of one point at once


def test_a_stalled_loop_skips_the_missed_slots() -> None:
    """The loop blocked from 1 s to 13 s: the cycle due at 5 runs late, 10 is skipped, 15 on time."""
    rec = Recorder()
    inv = inventory(1, interval="5s")

    async def stall(sched: Scheduler, loop: VirtualClockLoop, t0: float, _: Any) -> None:
        loop.call_at(aligned(t0) + 1.0, loop.stall, 12.0)

    run = run_for(21.0, inv, rec, stall)
    assert_times(rec.starts[("127.20.0.1", "icmp")], [run.start + s for s in (0, 13, 15, 20)])
    assert run.sched.stats.overruns == 1
    assert abs(run.sched.stats.max_lag_seconds - 8.0) < EXACT


def test_concurrency_is_bounded() -> None:
    """With monitor.concurrency 4, never more than 4 probes run at once (and 4 do)."""
    rec = Recorder(seconds=0.3)
    run = run_for(1.0, inventory(40, interval="500ms", concurrency=4), rec)
    assert rec.max_in_flight == 4
    assert run.sched.stats.cycles > 0


def test_media_runs_at_its_own_period() -> None:
    """icmp+sip every 0.5 s, media every 1.5 s, each on its own grid and in cycles of its own."""
    rec = Recorder()
    profile = {"icmp": {}, "sip": {}, "media": {"every": "1500ms"}}
    inv = inventory(10, profile, interval="500ms")
    run = run_for(6.05, inv, rec)
    for i, point in enumerate(inv.points.values()):
        end = run.start + 6.05
        assert_times(rec.starts[(point.host, "icmp")], slots(run.start, i / 20, 0.5, 0, end))
        assert_times(rec.starts[(point.host, "media")], slots(run.start, 0.15 * i, 1.5, 0, end))
    assert all(len(r) == 1 for _, r, _ in run.cycles if r[0].probe == "media")
    assert all(
        {x.probe for x in r} == {"icmp", "sip"} for _, r, _ in run.cycles if r[0].probe != "media"
    )


def test_cancel_stops_probes_in_flight() -> None:
    """Cancelling the scheduler cancels the probes that were running and returns at once."""
    rec = Recorder(seconds=5.0)
    run = run_for(0.45, inventory(10, interval="1s"), rec)
    assert abs(run.end - (run.t0 + 0.45)) < EXACT  # did not wait out the 5 s probes
    assert rec.cancelled.total() == 10  # 5 points started (offsets 0-0.4 s), 2 probes each
    assert rec.in_flight == 0 and not run.cycles


def test_a_crashing_probe_is_a_failed_result() -> None:
    """A probe bug becomes ok=False 'probe crashed', and probing goes on."""
    rec = Recorder(crash=True)
    run = run_for(1.2, inventory(2, interval="500ms"), rec)
    assert len(run.cycles) == 5  # offsets 0 and 0.26 s: starts 0, 0.5, 1.0 and 0.26, 0.76
    r = run.cycles[0][1][0]
    assert not r.ok and r.error == "probe crashed: RuntimeError: boom"


# --- one cycle: concurrent probes, each guarded, in the order of the profile ----------------

ICMP_SIP_FAST: dict[str, Any] = {
    "icmp": {"count": 2, "spacing": "10ms", "timeout": "100ms"},
    "sip": {"timeout": "200ms"},
}
#: probe_point's cut-off for each probe of ICMP_SIP_FAST: its deadline plus a second
CUTOFF = {"icmp": 0.01 + 0.1 + 1.0, "sip": 0.2 + 1.0}
#: how long a fake probe takes to end once cancelled
CLEANUP = 0.01


class Cycle:
    """Fake probes for one ``probe_point`` cycle; each does what ``behaviour[name]`` says.

    ``"ok"`` answers after 0.05 s (virtual), ``"crash"`` raises at once, ``"hang"``
    sleeps 1000 s (virtual: no wall time); a cancelled probe takes 10 ms to clean up
    before it ends. It records what ran at once, which
    tasks existed while a probe ran, and which probes were cancelled.
    """

    def __init__(self, **behaviour: str) -> None:
        self.behaviour = behaviour
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.tasks_seen: list[int] = []

    def registry(self) -> dict[str, Any]:
        def make(name: str) -> Any:
            async def run(target: str, settings: Any, ctx: ProbeContext) -> ProbeResult:
                self.started.append(name)
                self.tasks_seen.append(len(asyncio.all_tasks()))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    what = self.behaviour.get(name, "ok")
                    if what == "crash":
                        raise RuntimeError(f"{name} boom")
                    await asyncio.sleep(1000.0 if what == "hang" else 0.05)
                except asyncio.CancelledError:
                    self.cancelled.append(name)
                    await asyncio.sleep(CLEANUP)  # cleaning up takes a while (a socket's close)
                    raise
                finally:
                    self.in_flight -= 1
                return ProbeResult(probe=name, target=target, ok=True, at=0.0, duration=0.05)

            return run

        return {name: make(name) for name in ("icmp", "tcp", "http", "sip", "media")}


def cycle(
    fake: Cycle, probes: Sequence[str] = ("icmp", "sip"), concurrency: int = 100
) -> tuple[list[ProbeResult], float]:
    """One probe_point cycle of the fake probes on the virtual clock: its results and duration."""
    inv = inventory(1, ICMP_SIP_FAST)
    point = next(iter(inv.points.values()))

    async def main() -> tuple[list[ProbeResult], float]:
        loop = asyncio.get_running_loop()
        async with ProbeContext() as ctx:
            t0 = loop.time()
            limit = asyncio.Semaphore(concurrency)
            results = await probe_point(inv, point, probes, ctx, limit, fake.registry())
            assert asyncio.all_tasks() == {asyncio.current_task()}
            return results, loop.time() - t0

    return run_virtual(main())


@pytest.mark.parametrize("crashing", ["icmp", "sip"])  # in a task of its own, in the caller's
def test_a_crash_in_a_two_probe_cycle_fails_that_probe_only(
    crashing: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One probe of two raises: one failed result ('probe crashed', logged), one good one, in order."""
    caplog.set_level(logging.ERROR, logger="monitor.core.scheduler")
    results, _ = cycle(Cycle(**{crashing: "crash"}))
    assert [r.probe for r in results] == ["icmp", "sip"]
    by_name = {r.probe: r for r in results}
    bad, good = by_name[crashing], by_name[({"icmp", "sip"} - {crashing}).pop()]
    assert not bad.ok and bad.error == f"probe crashed: RuntimeError: {crashing} boom"
    assert good.ok and good.error is None
    assert [r.getMessage() for r in caplog.records] == [f"probe {crashing} of d00 crashed"]


@pytest.mark.parametrize("hanging", ["icmp", "sip"])
def test_a_probe_that_overruns_is_cut_off_a_second_after_its_deadline(hanging: str) -> None:
    """A probe that never returns ends as 'probe overran its deadline' at deadline + 1 s; the
    other probe's result is kept, and the cycle ends with the cut-off (virtual time, exact:
    the cut-off, plus the probe's clean-up once cancelled)."""
    fake = Cycle(**{hanging: "hang"})
    results, seconds = cycle(fake)
    assert [r.probe for r in results] == ["icmp", "sip"]
    for r in results:
        if r.probe == hanging:
            assert not r.ok and r.error == "probe overran its deadline"
        else:
            assert r.ok
    assert abs(seconds - (CUTOFF[hanging] + CLEANUP)) < EXACT
    assert fake.cancelled == [hanging]  # the cut-off cancels the probe (then reports it)


def test_both_probes_overrunning_are_cut_off_each_at_its_own_deadline() -> None:
    fake = Cycle(icmp="hang", sip="hang")
    results, seconds = cycle(fake)
    assert [r.error for r in results] == ["probe overran its deadline"] * 2
    assert abs(seconds - (max(CUTOFF.values()) + CLEANUP)) < EXACT
    assert sorted(fake.cancelled) == ["icmp", "sip"]


def test_probes_of_a_cycle_run_concurrently_and_a_single_probe_needs_no_task() -> None:
    """Two probes overlap (the cycle takes one probe's time); one probe runs in the caller's task."""
    fake = Cycle()
    results, seconds = cycle(fake)
    assert all(r.ok for r in results) and fake.max_in_flight == 2
    assert abs(seconds - 0.05) < EXACT
    assert sorted(fake.tasks_seen) == [2, 2]  # main + one task for the probe not run inline
    single = Cycle()
    results, _ = cycle(single, probes=("sip",))
    assert [r.probe for r in results] == ["sip"] and results[0].ok
    assert single.tasks_seen == [1]  # main only
    assert cycle(Cycle(), probes=())[0] == []


def test_with_concurrency_1_the_probes_of_a_cycle_take_turns() -> None:
    """monitor.concurrency 1: never two probes at once, both run, results in profile order."""
    fake = Cycle()
    results, seconds = cycle(fake, concurrency=1)
    assert [r.probe for r in results] == ["icmp", "sip"] and all(r.ok for r in results)
    assert fake.max_in_flight == 1 and sorted(fake.started) == ["icmp", "sip"]
    assert abs(seconds - 0.1) < EXACT  # one after the other


def test_with_concurrency_1_the_scheduler_never_runs_two_probes_at_once() -> None:
    """Concurrency 1 over several points and cycles: one probe at a time, every probe still runs."""
    rec = Recorder(seconds=0.1)
    run = run_for(5.0, inventory(4, interval="1s", concurrency=1), rec)
    assert rec.max_in_flight == 1
    assert len(run.cycles) >= 4 * 4
    assert all([r.probe for r in results] == ["icmp", "sip"] for _, results, _ in run.cycles)
    assert all(r.ok for _, results, _ in run.cycles for r in results)


@pytest.mark.parametrize("when", ["both running", "inline done, the task's probe running"])
def test_a_cancelled_cycle_cancels_its_probes_and_leaves_no_task(when: str) -> None:
    """Cancelling a cycle cancels every probe still running and returns only when they ended."""
    fake = Cycle(icmp="hang", sip="hang" if when == "both running" else "ok")
    inv = inventory(1, ICMP_SIP_FAST)
    point = next(iter(inv.points.values()))

    async def main() -> None:
        async with ProbeContext() as ctx:
            limit = asyncio.Semaphore(10)
            task = asyncio.get_running_loop().create_task(
                probe_point(inv, point, ("icmp", "sip"), ctx, limit, fake.registry())
            )
            await asyncio.sleep(0.1)  # both started, neither cut off yet; an ok one is done
            assert fake.in_flight == (2 if when == "both running" else 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert fake.in_flight == 0  # the cycle ended after its probes, not before
            assert asyncio.all_tasks() == {asyncio.current_task()}
            # every permit came back
            for _ in range(10):
                await asyncio.wait_for(limit.acquire(), 0.001)

    run_virtual(main())
    assert sorted(fake.cancelled) == (["icmp", "sip"] if when == "both running" else ["icmp"])


def test_cancelling_the_scheduler_leaves_no_task_behind() -> None:
    """Scheduler.run cancelled mid-cycles: every cycle's probes cancelled, no task of it left."""
    rec = Recorder(seconds=5.0)

    async def main() -> None:
        async with ProbeContext() as ctx:
            sched = Scheduler(
                inventory(10, interval="1s"), ctx, lambda p, r, e: None, rec.registry()
            )
            task = asyncio.get_running_loop().create_task(sched.run())
            await asyncio.sleep(0.45)
            assert rec.in_flight == 10  # 5 points started, 2 probes each
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert asyncio.all_tasks() == {asyncio.current_task()}

    run_virtual(main())
    assert rec.cancelled.total() == 10 and rec.in_flight == 0


def test_with_nothing_to_probe_run_waits_for_an_update() -> None:
    """A profile that runs no probe: run() idles (does not return) until an update brings some."""
    rec = Recorder()
    empty = inventory(3, interval="1s").without_probes(frozenset({"icmp", "sip"}))

    async def fill(
        sched: Scheduler, loop: VirtualClockLoop, t0: float, out: list[UpdateStats]
    ) -> None:
        await until(loop, t0 + 2.5)
        out.append(sched.update(inventory(3, interval="1s")))

    run = run_for(4.9, empty, rec, fill)
    assert run.updates == [UpdateStats(changed=3)]  # from no probe to icmp+sip
    first = rec.starts[("127.20.0.1", "icmp")]
    assert_times(first, [run.start + s for s in (3, 4)])  # the next slots of offset 0


# --- reload by difference: update() -------------------------------------------------------


def update_at(t: float, *invs: Inventory) -> During:
    """Update to each of ``invs`` in turn, the first ``t`` seconds after the run started."""

    async def during(
        sched: Scheduler, loop: VirtualClockLoop, t0: float, out: list[UpdateStats]
    ) -> None:
        await until(loop, t0 + t)
        for inv in invs:
            out.append(sched.update(inv))

    return during


def test_update_with_an_equal_inventory_changes_nothing() -> None:
    """An equal inventory (freshly loaded) mid-run: the same starts, nothing cancelled or lost."""
    base = run_for(20.0, inventory(20, WITH_MEDIA, interval="1s"), rec := Recorder(seconds=0.4))
    upd = run_for(
        20.0,
        inventory(20, WITH_MEDIA, interval="1s"),
        rec2 := Recorder(seconds=0.4),
        update_at(7.37, inventory(20, WITH_MEDIA, interval="1s")),  # some probes in flight
    )
    assert upd.updates == [UpdateStats(kept=20)]
    assert rec2.starts == rec.starts
    assert not upd.cancelled
    assert deliveries(upd) == deliveries(base)
    assert upd.sched.stats == base.sched.stats


def test_a_probe_in_flight_across_an_update_delivers_its_result() -> None:
    """A kept point's cycle in flight finishes and reaches the sink, with the new Point.

    The update renames the point and its profile (same settings): the next
    cycles run from the new inventory's profile.
    """
    inv = inventory(1, interval="5s")
    point = inv.points["d00"]
    renamed = dataclasses.replace(
        inv,
        profiles={"renamed": inv.profiles["room"]},
        points={"d00": dataclasses.replace(point, name="Renamed", profile="renamed")},
    )
    rec = Recorder(seconds=1.5)
    run = run_for(12.5, inv, rec, update_at(1.0, renamed))  # the first cycle runs from 0 to 1.5
    assert run.updates == [UpdateStats(kept=1)]
    assert not run.cancelled
    assert_times(run.delivered("d00"), [run.start + s for s in (1.5, 6.5, 11.5)])
    assert [p.name for p, _, _ in run.cycles] == ["Renamed"] * 3
    assert all(r.ok for _, results, _ in run.cycles for r in results)


def test_a_removed_points_probes_are_cancelled_and_no_result_arrives() -> None:
    """10 -> 9 points while the 10th is probing: its probes cancelled, none of its results delivered.

    The other nine are not disturbed: their starts and results are those of a run without the update.
    """
    inv10, inv9 = inventory(10, interval="5s"), inventory(9, interval="5s")
    gone = next(p for p in inv10.points.values() if p.id not in inv9.points)
    # 19.9 s, not 20: a cycle that ends at the very instant of the final cancel (18.5 + 1.5)
    # may or may not be delivered, depending on the order of the loop's ready callbacks
    base = run_for(19.9, inv10, rec := Recorder(seconds=1.5))
    # the 10th point's cycles run at offset 4.5 s, for 1.5 s: the update at 5.1 s catches one in flight
    run = run_for(19.9, inv10, rec2 := Recorder(seconds=1.5), update_at(5.1, inv9))
    assert run.updates == [UpdateStats(kept=9, removed=1)]
    assert run.cancelled == {(gone.host, "icmp"): 1, (gone.host, "sip"): 1}
    assert_times(rec2.starts[(gone.host, "icmp")], [run.start + 4.5])  # and never again
    assert run.delivered(gone.id) == []
    for key, times in rec.starts.items():
        if key[0] != gone.host:
            assert rec2.starts[key] == times
    assert deliveries(run) == [(p, t) for p, t in deliveries(base) if p != gone.id]


def test_an_added_point_starts_at_its_offset_in_the_current_cycle() -> None:
    """9 -> 10 points at 12.3 s: the new point (offset 4.5 s) starts at 14.5 s, then every 5 s."""
    inv9, inv10 = inventory(9, interval="5s"), inventory(10, interval="5s")
    new = next(p for p in inv10.points.values() if p.id not in inv9.points)
    assert list(inv10.points).index(new.id) == 9
    run_for(30.0, inv9, rec := Recorder(seconds=1.0))  # without the update
    run = run_for(30.0, inv9, rec2 := Recorder(seconds=1.0), update_at(12.3, inv10))
    assert run.updates == [UpdateStats(kept=9, added=1)]
    expected = [run.start + s for s in (14.5, 19.5, 24.5, 29.5)]
    assert_times(rec2.starts[(new.host, "icmp")], expected)
    assert_times(run.delivered(new.id), [t + 1.0 for t in expected[:3]])
    for key, times in rec.starts.items():
        assert rec2.starts[key] == times  # the others keep their phase


def test_a_changed_host_gets_a_new_job_and_its_old_cycle_is_cancelled() -> None:
    """A point's host changes mid-cycle: that cycle is cancelled, the new host probed at the offset."""
    inv = inventory(10, interval="5s")
    ids = list(inv.points)
    moved = dataclasses.replace(inv.points[ids[9]], host="127.99.0.1")
    changed = dataclasses.replace(inv, points={**inv.points, moved.id: moved})
    rec = Recorder(seconds=1.5)
    run = run_for(17.0, inv, rec, update_at(5.1, changed))
    assert run.updates == [UpdateStats(kept=9, changed=1)]
    old_host = inv.points[moved.id].host
    assert run.cancelled == {(old_host, "icmp"): 1, (old_host, "sip"): 1}
    assert_times(rec.starts[(old_host, "icmp")], [run.start + 4.5])
    assert_times(rec.starts[("127.99.0.1", "icmp")], [run.start + 9.5, run.start + 14.5])
    # the cycle started at 4.5 never lands
    assert_times(run.delivered(moved.id), [run.start + 11.0, run.start + 16.0])


def test_media_settings_change_only_the_media_jobs() -> None:
    """New media settings: media cycles in flight are cancelled and rescheduled; icmp+sip untouched."""
    other = {**WITH_MEDIA, "media": {"every": "3s", "packets": 20}}
    run_for(12.0, inventory(6, WITH_MEDIA, interval="1s"), rec := Recorder(seconds=0.8))
    run = run_for(
        12.0,
        inventory(6, WITH_MEDIA, interval="1s"),
        rec2 := Recorder(seconds=0.8),
        update_at(6.7, inventory(6, other, interval="1s")),
    )
    assert run.updates == [UpdateStats(changed=6)]
    for (host, name), times in rec.starts.items():
        if name != "media":
            assert rec2.starts[(host, name)] == times
    # media every 3 s at offsets 0.5 s * i: the ones started in (5.9, 6.7] were in flight
    hosts = [p.host for p in inventory(6, WITH_MEDIA, interval="1s").points.values()]
    assert run.cancelled == {(hosts[0], "media"): 1, (hosts[1], "media"): 1}  # started at 6.0, 6.5
    inv = inventory(6, WITH_MEDIA, interval="1s")
    for i, point in enumerate(inv.points.values()):
        after = [t for t in rec2.starts[(point.host, "media")] if t > run.start + 6.7]
        assert_times(after, slots(run.start, 0.5 * i, 3.0, run.start + 6.7, run.start + 12.0))


def test_an_interval_change_reschedules_every_point_and_stats_go_on() -> None:
    """5 s -> 2 s at 7.13 s: every point moves to its offset on the 2 s grid; counters go on."""
    inv5, inv2 = inventory(10, interval="5s"), inventory(10, interval="2s")
    rec = Recorder(seconds=0.1)
    run = run_for(15.0, inv5, rec, update_at(7.13, inv2))
    assert run.updates == [UpdateStats(kept=10, rescheduled=10)]
    assert not run.cancelled
    for i, point in enumerate(inv5.points.values()):
        t_upd, end = run.start + 7.13, run.start + 15.0
        before = slots(run.start, 0.5 * i, 5.0, run.start, t_upd)
        after = slots(run.start, 0.2 * i, 2.0, t_upd, end)
        assert_times(rec.starts[(point.host, "icmp")], before + after)
    assert run.sched.stats.cycles == len(run.cycles)  # one running count, not reset by the update


def test_a_new_concurrency_limit_applies_to_new_probes() -> None:
    """concurrency 4 -> 8 under overload: 4 at most before, 8 once the old limit's queue drained."""
    rec = Recorder(seconds=0.5)
    seen: list[int] = []

    async def raise_limit(
        sched: Scheduler, loop: VirtualClockLoop, t0: float, out: list[UpdateStats]
    ) -> None:
        await until(loop, t0 + 3.13)
        seen.append(rec.max_in_flight)
        out.append(sched.update(inventory(16, interval="1s", concurrency=8)))
        await until(loop, t0 + 8.13)  # the probes queued on the old limit have run by now
        rec.max_in_flight = 0

    run = run_for(12.0, inventory(16, interval="1s", concurrency=4), rec, raise_limit)
    assert run.updates == [UpdateStats(kept=16)]
    assert seen == [4] and rec.max_in_flight == 8


def test_a_storm_of_updates_costs_no_cycles() -> None:
    """100 reloads of the same config, one every 0.4 s, at 450 points: not one cycle lost.

    This was issue 8, item 5: restarting the scheduler on each reload left 408 of
    450 points unknown.
    """
    fresh = [inventory(450, interval="5s") for _ in range(2)]  # equal values, different objects

    async def storm(
        sched: Scheduler, loop: VirtualClockLoop, t0: float, out: list[UpdateStats]
    ) -> None:
        for k in range(100):
            await until(loop, t0 + 0.013 + 0.4 * k)
            out.append(sched.update(fresh[k % 2]))

    base = run_for(45.0, fresh[0], rec := Recorder(seconds=0.7))
    run = run_for(45.0, fresh[0], rec2 := Recorder(seconds=0.7), storm)
    assert run.updates == [UpdateStats(kept=450)] * 100
    assert run.sched.stats.cycles == base.sched.stats.cycles == len(run.cycles)
    assert run.sched.stats.cycles >= 450 * 8
    assert rec2.starts == rec.starts and not run.cancelled


@pytest.mark.parametrize("where", ["before", "after"])
def test_update_outside_run_only_swaps_the_plan(where: str) -> None:
    """Before run() (or after it returned), update() swaps the plan; run() then starts from it."""
    rec = Recorder()

    async def main() -> list[float]:
        async with ProbeContext() as ctx:
            sched = Scheduler(
                inventory(3, interval="1s"), ctx, lambda p, r, e: None, rec.registry()
            )
            loop = asyncio.get_running_loop()
            if where == "after":
                task = loop.create_task(sched.run())
                await asyncio.sleep(0.5)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert sched.update(inventory(4, interval="1s")) == UpdateStats(kept=3, added=1)
            t0 = loop.time()
            task = loop.create_task(sched.run())
            await asyncio.sleep(1.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return [t - aligned(t0) for t in rec.starts[("127.20.0.4", "icmp")]]

    assert_times(run_virtual(main()), [aligned(0.75)])  # the 4th of 4 points, on a fresh schedule
