"""The monitor core: health model + event log + metrics + subscribers, fed with results.

``confmon run`` feeds it from its own scheduler; ``confmon server`` will feed it
from agents over MQTT. Everything here runs on the event loop; the only
blocking work (SQLite, reading a config on reload) runs on threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.core.health import Event, HealthModel
from monitor.core.results import ProbeResult
from monitor.core.scheduler import Scheduler
from monitor.errors import ConfigError, ConfmonError
from monitor.inventory import Inventory, Point, load_inventory
from monitor.outputs.eventlog import EventLog
from monitor.outputs.metrics import PointMetricsWriter, Telemetry
from monitor.probes.base import ProbeContext

__all__ = ["Monitor", "Subscription"]

log = logging.getLogger("confmon")


class Subscription:
    """A bounded queue of messages for one listener (an SSE client, the dashboard)."""

    def __init__(self, size: int = 2048) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(size)
        self.dropped = False

    def put(self, message: dict[str, Any]) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # a listener that cannot keep up is cut off; it reconnects and re-reads state
            self.dropped = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


@dataclass
class _Options:
    probe: bool
    disabled_probes: frozenset[str]


class Monitor:
    """Owns the current inventory and health, and fans state changes out."""

    def __init__(
        self,
        inv: Inventory,
        *,
        state_db: str | Path = ":memory:",
        probe: bool = True,
        disabled_probes: frozenset[str] = frozenset(),
        config_path: str | Path | None = None,
    ) -> None:
        self.config_path = Path(config_path) if config_path is not None else None
        self._opts = _Options(probe, disabled_probes)
        self.inv = inv.without_probes(disabled_probes)
        self.model = HealthModel(self.inv, now=time.time())
        self.writer = PointMetricsWriter(self.model)
        self.telemetry = Telemetry()
        self.telemetry.reload_ok.set(1)
        self.telemetry.reload_time.set(time.time())
        self.state_db = str(state_db)
        self.eventlog: EventLog | None = None
        self.scheduler: Scheduler | None = None
        self.ctx = ProbeContext()
        self.started_at = time.time()
        self.ready = False
        self._subs: set[Subscription] = set()
        self._pending: list[Event] = []
        self._flush = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._scheduler_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._overruns_seen = 0
        self._writing: asyncio.Future[None] | None = None
        self._writing_batch: list[Event] = []
        #: points whose incoming results are dropped, as if their agent were lost
        #: (the demo's scenarios use it; results never reach the health model)
        self.muted: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the event log, resume saved states, start probing and housekeeping."""
        self.eventlog = await EventLog.open(
            self.state_db,
            {p.id: p.district for p in self.inv.points.values()},
            retention=self.inv.settings.event_retention,
        )
        saved = await self.eventlog.last_states()
        self.model.restore(saved, time.time())
        if saved:
            log.info("resumed %d point states from %s", len(saved), self.state_db)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ticker(), name="confmon-tick"),
            loop.create_task(self._event_writer(), name="confmon-eventlog"),
        ]
        self._start_scheduler()
        self.ready = True

    def _start_scheduler(self) -> None:
        if not self._opts.probe:
            return
        self.scheduler = Scheduler(self.inv, self.ctx, self._on_cycle)
        self._overruns_seen = 0  # a new scheduler counts from zero
        self._scheduler_task = asyncio.get_running_loop().create_task(
            self.scheduler.run(), name="confmon-scheduler"
        )

    async def _stop_scheduler(self) -> None:
        task, self._scheduler_task = self._scheduler_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10.0)

    def close_streams(self) -> None:
        """Tell every subscriber (SSE clients, the dashboard) that the monitor is going away."""
        for sub in list(self._subs):
            sub.put({"type": "bye"})

    async def stop(self) -> None:
        """Stop probing, flush the event log, close everything. Safe to call twice.

        Whatever failed in the background, the final flush and the closing still run:
        state changes are written before the process ends.
        """
        self.ready = False
        self.close_streams()
        try:
            await self._stop_scheduler()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10.0)
            self._tasks = []
            if self._writing is not None:
                # a batch handed to the event log's thread is finished, not abandoned
                await asyncio.wait([self._writing], timeout=30.0)
                if not self._writing.done() or self._writing.exception() is not None:
                    self._pending[:0] = self._writing_batch
                self._writing = None
        finally:
            try:
                if self.eventlog is not None:
                    await self.eventlog.write(self._take_pending())
            except Exception:
                log.exception("could not write the last events to %s", self.state_db)
            finally:
                if self.eventlog is not None:
                    await self.eventlog.close()
                    self.eventlog = None
                await self.ctx.close()

    # --- results in -----------------------------------------------------------------------

    def _on_cycle(self, point: Point, results: Sequence[ProbeResult], elapsed: float) -> None:
        self.telemetry.cycle_duration.observe(elapsed)
        for r in results:
            self.telemetry.probes.labels(r.probe, "success" if r.ok else "failure").inc()
        self.ingest(point.id, results)

    def ingest(
        self, point_id: str, results: Sequence[ProbeResult], now: float | None = None
    ) -> None:
        """Feed one cycle of results for a point (from the scheduler or an agent)."""
        if point_id in self.muted:
            return
        self._publish(self.model.ingest(point_id, results, time.time() if now is None else now))

    def _publish(self, events: list[Event]) -> None:
        if not events:
            return
        for e in events:
            self.telemetry.events.labels(e.state.value).inc()
            log.info(
                "%s: %s -> %s (%s)",
                e.point,
                e.previous.value,
                e.state.value,
                e.reason,
                extra={"point": e.point, "from": e.previous.value, "to": e.state.value},
            )
        self._pending.extend(events)
        self._flush.set()
        for sub in self._subs:
            for e in events:
                sub.put({"type": "state", **self.event_json(e)})

    def event_json(self, e: Event) -> dict[str, Any]:
        """An event as the API and the stream show it."""
        p = self.inv.points.get(e.point)
        return {
            "point": e.point,
            "name": p.name if p else e.point,
            "district": p.district if p else "",
            "from": e.previous.value,
            "to": e.state.value,
            "reason": e.reason,
            "at": e.at,
            "metrics": e.metrics,
        }

    # --- background work ------------------------------------------------------------------

    async def _ticker(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            self._publish(self.model.tick(now))
            if self.scheduler is not None:
                new = self.scheduler.stats.overruns - self._overruns_seen
                if new > 0:
                    self.telemetry.overruns.inc(new)
                    self._overruns_seen += new
            summary = {"type": "summary", **self.summary()}
            for sub in self._subs:
                sub.put(summary)
            if self.eventlog is not None and now - last_prune > 3600:
                last_prune = now
                try:
                    await self.eventlog.prune(now)
                except Exception:  # a locked or full database must not stop staleness checks
                    log.exception("pruning the event log failed; will try again in an hour")

    def _take_pending(self) -> list[Event]:
        pending, self._pending = self._pending, []
        return pending

    async def _event_writer(self) -> None:
        while True:
            await self._flush.wait()
            self._flush.clear()
            await asyncio.sleep(0.2)  # gather a cycle's worth of events into one transaction
            batch = self._take_pending()
            if batch and self.eventlog is not None:
                self._writing_batch = batch
                self._writing = asyncio.ensure_future(self.eventlog.write(batch))
                try:
                    # shielded: cancelling this task (shutdown) must not drop a queued write
                    await asyncio.shield(self._writing)
                    self._writing = None
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._writing = None
                    # keep them for the next try: an event must not be lost to a full disk
                    log.exception("cannot write %d events to the event log; will retry", len(batch))
                    self._pending[:0] = batch
                    await asyncio.sleep(5.0)
                    self._flush.set()

    # --- subscribers and summaries --------------------------------------------------------

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def summary(self) -> dict[str, Any]:
        """The city-wide summary the API, the stream and the dashboard show."""
        stats = self.scheduler.stats if self.scheduler is not None else None
        return {
            "name": self.inv.settings.name,
            "generated_at": time.time(),
            "started_at": self.started_at,
            **self.model.summary(),
            "scheduler": None
            if stats is None
            else {
                "cycles": stats.cycles,
                "probes": stats.probes,
                "overruns": stats.overruns,
                "in_flight": stats.in_flight,
                "last_cycle_seconds": stats.last_cycle_seconds,
            },
        }

    # --- reload ---------------------------------------------------------------------------

    async def reload(self) -> str:
        """Re-read the config file; keep the old one if the new one is invalid.

        Points that remain keep their state and latest results. Raises
        :class:`ConfmonError` (with the config's one-line error) on failure.
        """
        if self.config_path is None:
            raise ConfmonError("this monitor was not started from a config file")
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load_inventory, self.config_path)
            except ConfigError as exc:
                self.telemetry.reload_ok.set(0)
                log.error("reload failed, keeping the running config: %s", exc)
                raise
            new = new.without_probes(self._opts.disabled_probes)
            await self._stop_scheduler()
            model = HealthModel(new, now=time.time())
            model.adopt(self.model)
            self.inv, self.model = new, model
            self.writer = PointMetricsWriter(model)
            if self.eventlog is not None:
                self.eventlog.set_districts({p.id: p.district for p in new.points.values()})
            self._start_scheduler()
            self.telemetry.reload_ok.set(1)
            self.telemetry.reload_time.set(time.time())
            message = f"reloaded {self.config_path}: {len(new.points)} points"
            log.info(message)
            return message
