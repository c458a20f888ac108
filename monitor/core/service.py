"""The monitor core: ingest, health model, event stream, event log and metrics, tied together.

Results come in through :attr:`Monitor.ingest` (one entry for every source: the
local scheduler's transport, the demo's, MQTT agents); state changes go out
through :attr:`Monitor.events` (the event log first, then live subscribers).
It does not probe: a transport does (:mod:`monitor.transport`), and the
composition root (:mod:`monitor.app`) wires the two. Everything here runs on
the event loop; the only blocking work (SQLite) runs on the event log's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.core.events import EventStream, LiveSubscription
from monitor.core.health import Event, HealthModel
from monitor.core.ingest import Ingest
from monitor.core.results import ProbeResult
from monitor.inventory import Inventory
from monitor.outputs.eventlog import EventLog
from monitor.outputs.metrics import PointMetricsWriter, Telemetry

__all__ = ["Monitor"]

log = logging.getLogger("confmon")


class Monitor:
    """Owns the current inventory and health; fans state changes out durably, then live.

    Use ``await monitor.start()`` and ``await monitor.stop()`` (or the composition root).
    ``scheduler_stats`` is a provider of the probing side's figures for the summary.
    """

    def __init__(
        self,
        inv: Inventory,
        *,
        state_db: str | Path = ":memory:",
        config_path: str | Path | None = None,
    ) -> None:
        self.config_path = Path(config_path) if config_path is not None else None
        self.inv = inv
        self.model = HealthModel(inv, now=time.time())
        self.writer = PointMetricsWriter(self.model)
        self.telemetry = Telemetry()
        self.telemetry.reload_ok.set(1)
        self.telemetry.reload_time.set(time.time())
        self.ingest = Ingest(inv, self._on_results, self.telemetry)
        self.state_db = str(state_db)
        self.eventlog: EventLog | None = None
        self.events: EventStream | None = None
        self.started_at = time.time()
        self.ready = False
        self.scheduler_stats: Callable[[], dict[str, Any] | None] = lambda: None
        self._ticker_task: asyncio.Task[None] | None = None
        self._overruns_seen = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the event log, resume saved states, start the event writer and the ticker."""
        self.eventlog = await EventLog.open(
            self.state_db,
            {p.id: p.district for p in self.inv.points.values()},
            retention=self.inv.settings.event_retention,
        )
        saved = await self.eventlog.last_states()
        self.model.restore(saved, time.time(), await self.eventlog.last_causes())
        if saved:
            log.info("resumed %d point states from %s", len(saved), self.state_db)
        self.events = EventStream(self.eventlog)
        self.events.start()
        self._ticker_task = asyncio.get_running_loop().create_task(
            self._ticker(), name="confmon-tick"
        )
        self.ready = True

    def not_ready(self, why: str) -> None:
        """Something this monitor depends on has stopped (the probing thread): /readyz says 503
        from now on, so a supervisor or load balancer sees it, and the log says why."""
        log.error("not ready any more: %s", why)
        self.ready = False

    def close_streams(self) -> None:
        """Tell every live subscriber (SSE clients, the dashboard) that the monitor is going away."""
        if self.events is not None:
            self.events.close_subscribers()

    async def stop(self) -> None:
        """Stop the ticker, store every queued event, close the log. Safe to call twice.

        Whatever failed in the background, the final flush and the closing still run.
        """
        self.ready = False
        self.close_streams()
        task, self._ticker_task = self._ticker_task, None
        try:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10.0)
        finally:
            try:
                if self.events is not None:
                    lost = await self.events.close()
                    if lost:
                        log.error(
                            "%d state changes could not be written to %s and are lost",
                            lost,
                            self.state_db,
                        )
            finally:
                if self.eventlog is not None:
                    await self.eventlog.close()
                    self.eventlog = None

    # --- results in (through self.ingest) -------------------------------------------------

    def _on_results(
        self, point_id: str, results: list[ProbeResult], taken: float, received: float
    ) -> None:
        self._publish(self.model.ingest(point_id, results, received, taken))

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
        if self.events is not None:
            self.events.publish(events)

    # --- background work ------------------------------------------------------------------

    async def _ticker(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            self._publish(self.model.tick(now))
            self._count_overruns()
            if self.events is not None:
                self.events.broadcast({"type": "summary", **self.summary()})
            if self.eventlog is not None and now - last_prune > 3600:
                last_prune = now
                try:
                    await self.eventlog.prune(now)
                except Exception:  # a locked or full database must not stop staleness checks
                    log.exception("pruning the event log failed; will try again in an hour")

    def _count_overruns(self) -> None:
        """Carry the probing side's running overrun count into ``confmon_scheduler_overruns``."""
        stats = self.scheduler_stats()
        overruns = int(stats.get("overruns", 0)) if stats else 0
        if overruns > self._overruns_seen:
            self.telemetry.overruns.inc(overruns - self._overruns_seen)
        self._overruns_seen = max(self._overruns_seen, overruns)

    # --- subscribers and summaries --------------------------------------------------------

    def subscribe(self, size: int = 2048) -> LiveSubscription:
        """A live subscription to state changes and summaries (see :class:`EventStream`)."""
        assert self.events is not None, "Monitor.subscribe() before start()"
        return self.events.subscribe(size)

    def unsubscribe(self, sub: LiveSubscription) -> None:
        if self.events is not None:
            self.events.unsubscribe(sub)

    def summary(self) -> dict[str, Any]:
        """The city-wide summary the API, the stream and the dashboard show."""
        return {
            "name": self.inv.settings.name,
            "generated_at": time.time(),
            "started_at": self.started_at,
            **self.model.summary(),
            "scheduler": self.scheduler_stats(),
        }

    # --- a new inventory ------------------------------------------------------------------

    def apply(self, new: Inventory) -> None:
        """Take a new inventory: points that remain keep their state and latest results."""
        model = HealthModel(new, now=time.time())
        model.adopt(self.model)
        self.inv, self.model = new, model
        self.writer = PointMetricsWriter(model)
        self.ingest.set_inventory(new)
        if self.eventlog is not None:
            self.eventlog.set_districts({p.id: p.district for p in new.points.values()})
        self.telemetry.reload_ok.set(1)
        self.telemetry.reload_time.set(time.time())
