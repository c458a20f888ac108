"""The scheduler: spread starts, no drift, overruns skipped, bounded, media on its own period, cancel-safe."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from monitor.core.results import ProbeResult
from monitor.core.scheduler import Scheduler
from monitor.inventory import Point
from monitor.inventory.synthetic import synthetic_inventory
from monitor.probes.base import TICK, ProbeContext


class Recorder:
    """Stands in for the network: records when each probe of each point starts and ends."""

    def __init__(self, seconds: float = 0.0, crash: bool = False) -> None:
        self.seconds = seconds
        self.crash = crash
        self.starts: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
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
            try:
                if self.crash:
                    raise RuntimeError("boom")
                await asyncio.sleep(self.seconds)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.in_flight -= 1
                self.running.discard(key)
            return ProbeResult(probe=name, target=target, ok=True, at=0.0, duration=self.seconds)

        return run

    def registry(self) -> dict[str, Any]:
        return {name: self.probe(name) for name in ("icmp", "tcp", "http", "sip", "media")}


PROFILE = {"icmp": {}, "sip": {}}


async def run_for(
    seconds: float,
    points: int,
    rec: Recorder,
    profile: dict[str, Any] | None = None,
    **monitor: Any,
) -> tuple[Scheduler, list[tuple[Point, Sequence[ProbeResult]]]]:
    inv = synthetic_inventory(
        points,
        districts=min(points, 5),
        profile=profile or PROFILE,
        monitor={"stale_after": "60s", **monitor},
    )
    cycles: list[tuple[Point, Sequence[ProbeResult]]] = []
    async with ProbeContext() as ctx:
        sched = Scheduler(inv, ctx, lambda p, r, e: cycles.append((p, r)), registry=rec.registry())
        task = asyncio.get_running_loop().create_task(sched.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return sched, cycles


async def test_starts_are_spread_evenly_over_the_interval() -> None:
    """100 points at a 1 s interval start two per 20 ms tick over the whole second, never all at once."""
    rec = Recorder()
    await run_for(1.05, 100, rec, interval="1s")
    firsts = sorted(times[0] for (target, name), times in rec.starts.items() if name == "icmp")
    assert len(firsts) == 100
    ticks = Counter(round((t - firsts[0]) / TICK) for t in firsts)
    assert max(ticks.values()) <= 2  # 100 points / 50 ticks
    assert len(ticks) >= 45
    assert firsts[-1] - firsts[0] > 0.9
    # starts sit on the grid (within timer lateness)
    assert all(abs((t - firsts[0]) / TICK - round((t - firsts[0]) / TICK)) < 0.25 for t in firsts)


async def test_no_drift_over_cycles() -> None:
    """Each point starts on an absolute grid: the k-th start is k intervals after the first."""
    rec = Recorder()
    await run_for(2.7, 20, rec, interval="500ms")
    for (_, name), times in rec.starts.items():
        if name != "icmp":
            continue
        assert len(times) >= 5
        for k, t in enumerate(times):
            assert abs(t - (times[0] + k * 0.5)) < 0.05


async def test_overruns_are_skipped_and_counted() -> None:
    """A cycle longer than the interval skips the next slot instead of piling up."""
    rec = Recorder(seconds=0.7)
    sched, _ = await run_for(2.2, 3, rec, interval="500ms")
    assert sched.stats.overruns >= 3
    assert not rec.overlap  # never two cycles of one point at once


async def test_concurrency_is_bounded() -> None:
    """With monitor.concurrency 4, never more than 4 probes run at once."""
    rec = Recorder(seconds=0.3)
    await run_for(1.0, 40, rec, interval="500ms", concurrency=4)
    assert rec.max_in_flight == 4


async def test_media_runs_at_its_own_period() -> None:
    """icmp+sip every 0.5 s, media every 1.5 s: media runs about a third as often."""
    rec = Recorder()
    profile = {"icmp": {}, "sip": {}, "media": {"every": "1500ms"}}
    _, cycles = await run_for(3.05, 10, rec, profile, interval="500ms")
    media = sum(len(t) for (_, n), t in rec.starts.items() if n == "media")
    icmp = sum(len(t) for (_, n), t in rec.starts.items() if n == "icmp")
    assert icmp >= 55 and 15 <= media <= 25
    # media results arrive in cycles of their own
    assert all(len(r) == 1 for _, r in cycles if r[0].probe == "media")
    assert all({x.probe for x in r} == {"icmp", "sip"} for _, r in cycles if r[0].probe != "media")


async def test_cancel_stops_probes_in_flight() -> None:
    """Cancelling the scheduler cancels the probes that were running and returns promptly."""
    rec = Recorder(seconds=5.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run_for(0.5, 10, rec, interval="1s")
    assert loop.time() - start < 2.0
    assert rec.cancelled >= 4 and rec.in_flight == 0


async def test_a_crashing_probe_is_a_failed_result() -> None:
    """A probe bug becomes ok=False 'probe crashed', and probing goes on."""
    rec = Recorder(crash=True)
    _, cycles = await run_for(1.2, 2, rec, interval="500ms")
    assert len(cycles) >= 4
    r = cycles[0][1][0]
    assert not r.ok and r.error == "probe crashed: RuntimeError: boom"
