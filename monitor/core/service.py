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
from typing import TYPE_CHECKING, Any

from monitor.core.acks import Ack, Acks
from monitor.core.events import EventStream, LiveSubscription
from monitor.core.health import Event, HealthModel
from monitor.core.ingest import Ingest
from monitor.core.results import ProbeResult
from monitor.errors import ConfmonError
from monitor.inventory import Inventory
from monitor.outputs.eventlog import EventLog, LogUnavailable, RunInfo
from monitor.outputs.metrics import PointMetricsWriter, Telemetry
from monitor.text import printable

if TYPE_CHECKING:
    from monitor.alerts.service import Alerts

__all__ = ["Monitor"]

log = logging.getLogger("confmon")


class Monitor:
    """Owns the current inventory and health; fans state changes out durably, then live.

    Use ``await monitor.start()`` and ``await monitor.stop()`` (or the composition root).
    ``scheduler_stats`` is a provider of the probing side's figures for the summary;
    a server sets ``broker_stats`` and ``agent_listing`` the same way.
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
        #: a server's: the broker connection's state, and the agents (``/api/v1/agents``)
        self.broker_stats: Callable[[], dict[str, Any]] | None = None
        self.agent_listing: Callable[[], list[dict[str, Any]]] = list
        #: the alert service, when the inventory has receivers (started by the app)
        self.alerts: Alerts | None = None
        #: the incidents the operators have acknowledged (reminders stop for them)
        self.acks = Acks(lambda: self.model)
        self._ticker_task: asyncio.Task[None] | None = None
        self._overruns_seen = 0
        self._stopped = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the event log, resume saved states, start the event writer and the ticker."""
        settings = self.inv.settings
        self.eventlog = await EventLog.open(
            self.state_db,
            {p.id: p.district for p in self.inv.points.values()},
            retention=settings.event_retention,
            run=RunInfo(settings.name, settings.timezone, settings.interval),
        )
        saved = await self.eventlog.last_states()
        self.model.restore(saved, time.time(), await self.eventlog.last_causes())
        self.acks.restore(Ack(*row) for row in await self.eventlog.acks())
        if saved:
            log.info("resumed %d point states from %s", len(saved), self.state_db)
        self.events = EventStream(self.eventlog, on_crash=self._writer_crashed)
        self.events.start()
        self._ticker_task = asyncio.get_running_loop().create_task(
            self._ticker(), name="confmon-tick"
        )
        self._ticker_task.add_done_callback(self._ticker_stopped)
        self.ready = True

    def not_ready(self, why: str) -> None:
        """Something this monitor depends on has stopped (the probing thread): /readyz says 503
        from now on, so a supervisor or load balancer sees it, and the log says why."""
        log.error("not ready any more: %s", why)
        self.ready = False

    def _ticker_stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error(
            "the ticker stopped (a bug: %s: %s): no staleness checks or summaries any more; "
            "not ready",
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        self.ready = False

    def _writer_crashed(self, why: str) -> None:
        # the stream has said it (with the traceback); /readyz says 503 from now on
        self.ready = False

    def close_streams(self) -> None:
        """Tell every live subscriber (SSE clients, the dashboard) that the monitor is going away."""
        if self.events is not None:
            self.events.close_subscribers()

    async def stop(self) -> None:
        """Stop the ticker, store every queued event, close the log. Safe to call twice.

        Whatever failed in the background, the final flush and the closing still run.
        Then, if some state changes of this run are not in the event log at its path
        (not stored: disk full, backlog over its cap, a crashed writer; or the file
        deleted and not re-created), raises :class:`ConfmonError` with one line saying
        how many and why, e.g. ``12 state changes could not be stored in /var/lib/confmon/
        hanoi.sqlite3 (disk full)``: the command line prints it and exits 1.
        """
        self.ready = False
        self.close_streams()
        task, self._ticker_task = self._ticker_task, None
        problems: list[str] = []
        first, self._stopped = not self._stopped, True
        try:
            if task is not None:
                task.cancel()
                # a crash of it was said by its done-callback
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=10.0)
        finally:
            try:
                if self.events is not None and first:
                    events = self.events
                    unstored = await events.close() + events.dropped
                    if unstored:
                        why = events.crashed or events.error or "the event log could not be written"
                        problems.append(
                            f"{unstored} state changes could not be stored in "
                            f"{printable(self.state_db, 200)} ({why})"
                        )
            finally:
                if self.eventlog is not None:
                    eventlog, self.eventlog = self.eventlog, None
                    await eventlog.close()
                    if eventlog.unsaved:
                        problems.append(eventlog.unsaved)
        if problems and first:
            raise ConfmonError("; ".join(problems))

    # --- results in (through self.ingest) -------------------------------------------------

    def _on_results(
        self, point_id: str, results: list[ProbeResult], taken: float, received: float
    ) -> None:
        self._publish(self.model.ingest(point_id, results, received, taken))

    def publish(self, events: list[Event]) -> None:
        """Count, log and stream state changes the health model returned outside ingest
        (a transport marking a monitoring gap: :meth:`HealthModel.mark_gap`)."""
        self._publish(events)

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
                except LogUnavailable as exc:  # a locked or full disk must not stop the ticks
                    log.warning("pruning the event log failed (%s); will try again in an hour", exc)
                except Exception:  # a bug: said, and the ticks go on
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

    async def acknowledge(self, cause: str, by: str, now: float) -> Ack:
        """Acknowledge the incident of ``cause`` (:class:`NotInTrouble` if there is none)
        and keep the acknowledgements in the event log, so that a restart keeps them."""
        ack = self.acks.add(cause, by, now)
        if self.eventlog is not None:
            try:
                await self.eventlog.keep_acks([(a.cause, a.by, a.at) for a in self.acks.active()])
            except LogUnavailable as exc:
                log.warning(
                    "the acknowledgement of %s holds, but only until confmon stops: the event "
                    "log could not keep it (%s)",
                    printable(cause, 80),
                    exc,
                )
        return ack

    def summary(self) -> dict[str, Any]:
        """The city-wide summary the API, the stream and the dashboard show."""
        return {
            "name": self.inv.settings.name,
            "generated_at": time.time(),
            "started_at": self.started_at,
            **self.model.summary(),
            "scheduler": self.scheduler_stats(),
            "event_log": self._event_log_status(),
            "acks": [a.json() for a in self.acks.active()],
            **(self._server_summary() if self.broker_stats is not None else {}),
        }

    def _server_summary(self) -> dict[str, Any]:
        """A server's broker connection and agents (the dashboard shows both)."""
        assert self.broker_stats is not None
        return {
            "broker": self.broker_stats(),
            "agents": [{"id": a["agent"], "online": a["online"]} for a in self.agent_listing()],
        }

    def _event_log_status(self) -> dict[str, Any] | None:
        """Whether state changes are being stored (see :meth:`EventStream.status`); a log
        file deleted or replaced and not re-created is not ok either, nor one that cannot
        be read (the history and the events API answer 503 then)."""
        if self.events is None:
            return None
        status = self.events.status()
        trouble = self.eventlog.trouble if self.eventlog is not None else None
        unreadable = self.eventlog.read_trouble if self.eventlog is not None else None
        if trouble is not None and status["ok"]:
            status["ok"] = False
            status["error"] = f"the event log file was {trouble} while running"
        elif unreadable is not None and status["ok"]:
            status["ok"] = False
            status["error"] = f"the event log cannot be read: {unreadable}"
        return status

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
