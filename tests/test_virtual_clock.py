"""The virtual-clock loop the timing tests stand on: exact, instant, and still doing real I/O."""

from __future__ import annotations

import asyncio
import socket
import time

from tests.virtual_clock import VirtualClockLoop, run_virtual


def test_sleeps_cost_no_wall_time_and_land_exactly() -> None:
    """An hour of sleeps takes no wall time, and each wakes at exactly its due time."""

    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        woke: list[tuple[float, float]] = []

        async def nap(d: float) -> None:
            await asyncio.sleep(d)
            woke.append((d, loop.time() - t0))

        await asyncio.gather(*(nap(d) for d in (3600.0, 5.0, 1.7, 0.3)))
        return woke

    wall = time.monotonic()
    woke = run_virtual(main())
    assert time.monotonic() - wall < 5.0  # generous: the point is "not an hour"
    assert [d for d, _ in woke] == [0.3, 1.7, 5.0, 3600.0]
    assert all(abs(t - d) < 1e-9 for d, t in woke)


def test_the_clock_stands_still_while_callbacks_are_ready() -> None:
    """Work that never sleeps sees one instant, however long it takes in wall time."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(1000):
            await asyncio.sleep(0)
        return loop.time() - t0

    assert run_virtual(main()) == 0.0


def test_lateness_and_stall() -> None:
    """``lateness`` delays each wake-up by less than its bound; ``stall`` jumps the clock."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        t0 = loop.time()
        await asyncio.sleep(1.0)
        late = loop.time() - t0 - 1.0
        loop.stall(10.0)
        return late, loop.time() - t0

    late, total = run_virtual(main(), lateness=0.005, seed=1)
    assert 0.0 < late < 0.005
    assert abs(total - (11.0 + late)) < 1e-9


def test_real_io_still_works() -> None:
    """Sockets and threads still complete (keep threads out of timed tests, though)."""

    async def main() -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            await loop.sock_sendall(a, b"ping")
            got = await loop.sock_recv(b, 4)
        return got, await asyncio.to_thread(lambda: 42)

    assert run_virtual(main()) == (b"ping", 42)
