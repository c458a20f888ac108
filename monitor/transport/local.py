"""The in-process transport: the scheduler probes on a thread of its own, batches go to ingest.

Probing has its own thread and event loop so that probe timing is not hostage to
whatever the main loop is doing: a flood of ``/metrics`` or API requests, a
dashboard repaint, an SSE fan-out. Replies are timed by the kernel where it can
(ICMP, SIP over UDP), and where the probe reads the clock itself, it is this
thread's loop that must be free, not the API's. The two threads share the GIL,
and that is where a flood of requests still reaches the probes: a thread that
makes many short system calls (a probing loop: a send per packet, a read per
reply) gives the GIL away at each one and then waits a whole switch interval to
get it back from a busy thread. With Python's default of 5 ms, a /metrics flood
of 80 requests a second made the probing loop 1 s late and its media streams
lose packets; with :data:`SWITCH_INTERVAL` (0.5 ms, set when the transport
starts) the worst lag was 0.1-0.16 s and no state changed (see
tests/commands/test_run_hostile.py).

Results cross to the main loop as :class:`~monitor.core.results.ResultBatch`
objects (agent ``local``, increasing ``seq``), the same type an MQTT agent
sends, and enter the core through the same :class:`~monitor.core.ingest.Ingest`.
Cycles that finish while a hand-over is pending join it, and a hand-over waits
for the next tick of the 20 ms grid, so a busy second costs at most 50 wake-ups
of the main loop, not one per point.

``drop`` is the demo's way to simulate a lost agent: results of the points it
names are discarded here, before ingest, exactly as if they never arrived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from monitor.core.results import ProbeResult, ResultBatch
from monitor.core.scheduler import Scheduler
from monitor.errors import IcmpNotPermitted
from monitor.inventory import Inventory, Point
from monitor.loops import loop_name, new_event_loop
from monitor.probes.base import TICK, ProbeContext, aligned

__all__ = ["LOCAL_AGENT", "LocalTransport", "check_icmp", "needs_icmp"]

log = logging.getLogger("confmon")

#: the agent name of the in-process transport's batches
LOCAL_AGENT = "local"

#: how long a thread may hold the GIL while another waits (Python's default is 5 ms)
SWITCH_INTERVAL = 0.0005

Deliver = Callable[[ResultBatch, float], object]


def needs_icmp(inv: Inventory) -> bool:
    """Whether any profile of ``inv`` runs ICMP."""
    return any(p.icmp is not None for p in inv.profiles.values())


async def check_icmp(inv: Inventory, ctx: ProbeContext) -> None:
    """Open the ICMP engine now if ``inv`` needs it: a missing permission is one clear error
    (:class:`IcmpNotPermitted` saying what to grant) instead of 450 failed probes."""
    if needs_icmp(inv):
        from monitor.probes import icmp

        await icmp.engine(ctx)


class LocalTransport:
    """Runs a :class:`Scheduler` on its own thread; hands its results to ``deliver``.

    ``deliver(batch, received_at)`` is called on the event loop that called
    :meth:`start` (normally ``Ingest.accept``).
    """

    def __init__(
        self,
        inv: Inventory,
        deliver: Deliver,
        *,
        drop: Callable[[str], bool] | None = None,
        agent: str = LOCAL_AGENT,
        on_crash: Callable[[str], None] | None = None,
    ) -> None:
        self.inv = inv
        self.agent = agent
        self._deliver = deliver
        self._drop = drop
        self._on_crash = on_crash
        self._lock = threading.Lock()
        self._buffer: list[tuple[str, Sequence[ProbeResult]]] = []
        self._handover_pending = False
        # start from the Unix time in ms so that sequences keep increasing across restarts
        self._seq = int(time.time() * 1000)
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._scheduler: Scheduler | None = None
        self._stop: asyncio.Event | None = None

    # --- lifecycle (called on the main loop) ----------------------------------------------

    async def start(self, limit: float = 30.0) -> None:
        """Start the probing thread; raises :class:`IcmpNotPermitted` if ICMP is needed and refused."""
        self._main = asyncio.get_running_loop()
        sys.setswitchinterval(SWITCH_INTERVAL)
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name="confmon-probes", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.wrap_future(started), limit)
        except BaseException:
            await self.stop()
            raise

    async def update(self, inv: Inventory, limit: float = 10.0) -> None:
        """Probe ``inv`` from now on; unchanged points keep their schedule and probes in flight."""
        self.inv = inv
        loop, scheduler = self._loop, self._scheduler
        if loop is None or scheduler is None:
            return
        future = asyncio.run_coroutine_threadsafe(_update(scheduler, inv), loop)
        await asyncio.wait_for(asyncio.wrap_future(future), limit)

    async def stop(self, limit: float = 15.0) -> None:
        """Stop probing (probes in flight are cancelled) and hand over what is buffered."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            await asyncio.to_thread(thread.join, limit)
            if thread.is_alive():
                log.error("the probing thread did not stop within %gs", limit)
        self._thread = None
        self._handover()

    def stats(self) -> dict[str, Any] | None:
        """The scheduler's figures (read across threads: plain numbers, no lock needed)."""
        scheduler = self._scheduler
        if scheduler is None:
            return None
        s = scheduler.stats
        return {
            "cycles": s.cycles,
            "probes": s.probes,
            "overruns": s.overruns,
            "in_flight": s.in_flight,
            "last_cycle_seconds": s.last_cycle_seconds,
            "max_lag_seconds": s.max_lag_seconds,
        }

    # --- the probing thread ---------------------------------------------------------------

    def _thread_main(self, started: concurrent.futures.Future[None]) -> None:
        try:
            loop = new_event_loop()  # uvloop where installed (monitor/loops.py)
        except BaseException as exc:  # CONFMON_LOOP=uvloop without uvloop: said at start
            started.set_exception(exc)
            return
        log.debug("the probing thread runs on %s", loop_name(loop))
        self._loop = loop
        try:
            loop.run_until_complete(self._probe(started))
        except BaseException as exc:  # a crash of the probing side is said, not swallowed
            if not started.done():
                started.set_exception(exc)
            else:
                log.exception("the probing thread stopped on an error")
                main, on_crash = self._main, self._on_crash
                if main is not None and on_crash is not None and not main.is_closed():
                    with contextlib.suppress(RuntimeError):
                        main.call_soon_threadsafe(on_crash, f"probing stopped: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _probe(self, started: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        async with ProbeContext() as ctx:
            try:
                await check_icmp(self.inv, ctx)
            except IcmpNotPermitted as exc:
                started.set_exception(exc)
                return
            scheduler = Scheduler(self.inv, ctx, self._on_cycle)
            self._scheduler = scheduler
            task = asyncio.get_running_loop().create_task(scheduler.run(), name="confmon-scheduler")
            started.set_result(None)
            stopping = asyncio.get_running_loop().create_task(self._stop.wait())
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_cycle(self, point: Point, results: Sequence[ProbeResult], elapsed: float) -> None:
        # on the probing thread: buffer; the hand-over waits for the next tick of the grid,
        # so the cycles that end within one tick cross together (a wake-up of the main loop
        # costs tens of microseconds; one per cycle was 90 a second for 450 points)
        with self._lock:
            self._buffer.append((point.id, results))
            if self._handover_pending:
                return
            self._handover_pending = True
        loop = asyncio.get_running_loop()
        loop.call_at(aligned(loop.time() + TICK / 2), self._wake_main)

    def _wake_main(self) -> None:
        main = self._main
        if main is not None and not main.is_closed():
            with contextlib.suppress(RuntimeError):
                main.call_soon_threadsafe(self._handover)

    # --- back on the main loop ------------------------------------------------------------

    def _handover(self) -> None:
        with self._lock:
            buffer, self._buffer = self._buffer, []
            self._handover_pending = False
        if not buffer:
            return
        drop = self._drop
        pairs = tuple(
            (pid, r) for pid, results in buffer if drop is None or not drop(pid) for r in results
        )
        if not pairs:
            return
        self._seq += 1
        now = time.time()
        self._deliver(ResultBatch(self.agent, self._seq, now, pairs), now)


async def _update(scheduler: Scheduler, inv: Inventory) -> None:
    scheduler.update(inv)
