"""State-change events and the stream that carries them to two kinds of consumers.

**Durable consumers** never lose an event. The event log is the first: an event is
written to SQLite (in one transaction with whatever every durable *stage* adds to it)
before anything else sees it. The log gives the event its ``id``, which increases
monotonically for the life of the database. The alert outbox is the second: each
receiver keeps a cursor in the log (the id of the last event it took into account),
moved in the same transaction that stores the notifications it made
(:mod:`monitor.alerts.service`), so a stored event is notified after any restart.

**Live consumers** (SSE clients, the dashboard, the demo's printer) get events only
after they are durable, so nothing shown is lost by a crash. Each has a bounded queue;
one that falls behind is not allowed to grow without bound: its queue is emptied and it
is told to *resync* (:data:`RESYNC`), i.e. to re-read from the event log what it
missed (by id) and then go on live. :meth:`EventStream.replay` is that read.

While the event log cannot be written (a full disk, a locked file), events wait in
memory in order (at most :data:`BACKLOG_LIMIT`; beyond it the oldest are dropped and
counted), are retried with backoff (:data:`RETRY_MAX` at most between two tries) in
transactions of at most :data:`CHUNK` events, halved after each failure (so a few
events fit as soon as a little space is free) and doubled back after each success.
"Durable before published" holds throughout: live consumers get those events, in
order and with their ids, once they are stored; meanwhile :meth:`EventStream.status`
(in every summary the API and the stream send) says that the log is not written and
how many wait. The failure is said once in the log when it starts and once when the
backlog is stored again, with how many events were late and how many dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

__all__ = [
    "RESYNC",
    "SEVERITY",
    "Event",
    "EventStore",
    "EventStream",
    "LiveSubscription",
    "State",
    "event_json",
    "incident_key",
]

log = logging.getLogger("confmon")


class State(StrEnum):
    """The state of a meeting point (contract)."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"
    MAINTENANCE = "maintenance"


#: each state as a number, worst highest: how tables sort and how Grafana colours a point
#: (``confmon_point_severity``); the terminal dashboard lists points in the same order
SEVERITY: dict[State, int] = {
    State.UP: 0,
    State.MAINTENANCE: 1,
    State.UNKNOWN: 2,
    State.DEGRADED: 3,
    State.UNREACHABLE: 4,
    State.DOWN: 5,
}


@dataclass(frozen=True, slots=True)
class Event:
    """A change of a point's visible state (contract: ``{id, at, point, name, district,
    from, to, reason, cause}``).

    ``cause`` is the id of the point where the trouble is: the point itself, or the
    ancestor whose path is down; for a recovery, the cause of the state it leaves.
    ``id`` is 0 until the event log has stored the event.

    ``evidence`` is when the results behind the change began: the first of the failed (or,
    for a recovery, good) cycles that the hysteresis counted, or the last fresh result before
    a gap; ``at - evidence`` is how long the change took to be told. None when it is not
    known (a state resumed after a restart, a maintenance window).
    """

    point: str
    previous: State
    state: State
    reason: str
    at: float
    metrics: dict[str, float | None] = field(default_factory=dict)
    cause: str = ""
    name: str = ""
    district: str = ""
    id: int = 0
    evidence: float | None = None


def event_json(e: Event) -> dict[str, Any]:
    """An event as the API, the stream and the event log's readers show it."""
    return {
        "id": e.id,
        "at": e.at,
        "point": e.point,
        "name": e.name or e.point,
        "district": e.district,
        "from": e.previous.value,
        "to": e.state.value,
        "reason": e.reason,
        "cause": e.cause or e.point,
        "metrics": e.metrics,
    }


def incident_key(state: str, point: str, cause: str, district: str) -> str:
    """The incident a point's state belongs to, the same on the screens and in the report.

    A gap in monitoring (``unknown``) is its agent's (``agent:ID``) when its agent went
    offline, else its district's (``gap:DISTRICT``): never an outage of the room. Any other
    trouble is its cause's: the point itself, or the uplink whose path is down, so that a
    district's outage is one incident with its rooms counted.
    """
    if state == State.UNKNOWN:
        return cause if cause.startswith("agent:") else f"gap:{district}"
    return cause or point


#: what a live subscriber finds in its queue when it fell behind: re-read from the log
RESYNC: Final[dict[str, Any]] = {"type": "resync"}


class LiveSubscription:
    """A bounded queue of messages for one live consumer.

    Messages are dicts: ``{"type": "state", ...event}``, ``{"type": "summary", ...}``,
    :data:`RESYNC` after an overflow, and ``None`` when the monitor goes away.
    """

    def __init__(self, size: int = 2048) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(size)
        self.overflows = 0

    def put(self, message: dict[str, Any] | None) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # behind: drop what is queued (it is all in the event log) and say so once
            self.overflows += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)
            if message is None:
                self.queue.put_nowait(None)


class EventStore(Protocol):
    """What the stream needs of the event log (see :class:`monitor.outputs.eventlog.EventLog`)."""

    @property
    def last_id(self) -> int:
        """The id of the newest stored event (0 when there is none)."""

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store events durably in one transaction; returns them with their ids."""

    async def since(self, after_id: int, limit: int) -> list[Event]:
        """Stored events with ``id > after_id``, oldest first, at most ``limit``."""


#: events written per transaction at most: a backlog after a full disk is retried in
#: chunks that fit again once a little space is free
CHUNK: Final = 500
#: events kept in memory while the log cannot be written; beyond it the oldest are
#: dropped, counted and said (the process must not run out of memory instead); about
#: 1 KiB each, so some 50 MB at most
BACKLOG_LIMIT: Final = 50_000
#: the longest wait between two tries to write a failing log (the first is ``retry``)
RETRY_MAX: Final = 10.0


class EventStream:
    """Events in (from the health model), durable first, then to every live subscriber.

    ``on_crash(why)`` is called once if the writer task stops by a bug (it is logged
    once, with its traceback); from then on events only queue up (within the cap), and
    :meth:`close` still tries to store them.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        on_lost: Callable[[int], None] | None = None,
        on_crash: Callable[[str], None] | None = None,
        retry: float = 0.5,
        retry_max: float = RETRY_MAX,
        backlog: int = BACKLOG_LIMIT,
    ) -> None:
        self.store = store
        self._subs: set[LiveSubscription] = set()
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._retry = retry
        self._retry_max = max(retry, retry_max)
        self._delay = retry
        self._backlog = backlog
        self._chunk = CHUNK
        self._on_lost = on_lost
        self._on_crash = on_crash
        #: events dropped because the backlog was over its cap (for the life of the stream)
        self.dropped = 0
        #: the log cannot be written now (between the first failure and the backlog stored)
        self.failing = False
        #: why the last write failed (kept after recovery, for the exit line), or None
        self.error: str | None = None
        #: why the writer task stopped, if it crashed
        self.crashed: str | None = None
        self._writing: tuple[asyncio.Future[list[Event]], list[Event]] | None = None
        self._unconfirmed = 0  # events of a write that did not answer at close
        self._closing = False
        self._stuck = asyncio.Event()  # set while failing or crashed
        self._late = 0  # events stored late in this failure
        self._dropped_here = 0  # events dropped in this failure
        self._failed_at = 0.0
        #: id of the newest event stored and fanned out (0: none yet)
        self.last_id = store.last_id

    # --- in ------------------------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """Queue events for the log; live subscribers see them once they are stored."""
        if not events:
            return
        self._pending.extend(events)
        self._trim()
        self._idle.clear()
        self._wake.set()

    def _trim(self) -> None:
        """Keep what waits (with the chunk in flight) within the cap: drop the oldest waiting."""
        flying = len(self._writing[1]) if self._writing is not None else 0
        drop = min(len(self._pending) + flying - self._backlog, len(self._pending))
        if drop <= 0:
            return
        del self._pending[:drop]
        if not self._dropped_here:  # said once a failure, counted always
            log.error(
                "the event log backlog is over %d state changes: dropping the oldest "
                "until the log can be written again",
                self._backlog,
            )
        self.dropped += drop
        self._dropped_here += drop
        if self._on_lost is not None:
            self._on_lost(drop)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a non-durable message (a summary) to every live subscriber."""
        for sub in self._subs:
            sub.put(message)

    def status(self) -> dict[str, Any]:
        """The writer's state for the summary: ``ok`` (the log is written), ``pending``
        (events waiting to be stored), ``dropped`` (over the backlog cap, since start),
        ``error`` (why it is not written, or None)."""
        trouble = self.crashed or (self.error if self.failing else None)
        return {
            "ok": trouble is None,
            "pending": self.pending,
            "dropped": self.dropped,
            "error": trouble,
        }

    @property
    def pending(self) -> int:
        """Events waiting to be stored (with those of a write in progress)."""
        return len(self._pending) + (len(self._writing[1]) if self._writing is not None else 0)

    # --- out -----------------------------------------------------------------------------

    def subscribe(self, size: int = 2048) -> LiveSubscription:
        sub = LiveSubscription(size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: LiveSubscription) -> None:
        self._subs.discard(sub)

    def close_subscribers(self) -> None:
        """Tell every live subscriber that the monitor is going away."""
        for sub in list(self._subs):
            sub.put({"type": "bye"})

    async def replay(self, after_id: int, limit: int = 1000) -> list[Event]:
        """Stored events after ``after_id``, oldest first (for a resync or a reconnect)."""
        return await self.store.since(after_id, limit)

    # --- the writer ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="confmon-events")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.crashed = f"the event writer stopped: {type(exc).__name__}: {exc}"
        log.error("%s; state changes are no longer stored or streamed", self.crashed, exc_info=exc)
        self._stuck.set()  # nothing will store the backlog: drain() must not wait for it
        if self._on_crash is not None:
            self._on_crash(self.crashed)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            await self._write_some()

    async def _write_some(self) -> None:
        if await self._write_once():
            self._delay = self._retry
        elif self._chunk == 1:
            # halving found nothing that fits: wait, longer each time
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, self._retry_max)

    async def drain(self, limit: float = 10.0) -> None:
        """Wait until every queued event is stored, or the log fails (bounded by ``limit``)."""
        waits = [
            asyncio.ensure_future(self._idle.wait()),
            asyncio.ensure_future(self._stuck.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def close(self, limit: float = 30.0) -> int:
        """Stop the writer after storing what is queued; returns how many could not be.

        Bounded by ``limit`` in all: a log that does not answer (a hung disk) counts its
        events as not stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        task, self._task = self._task, None
        if task is not None:
            if not task.done():
                await self.drain(limit)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a crash is said
                await task
        # a transaction the writer was waiting for goes on on the log's thread: its outcome
        # decides whether its events are stored (never stored twice by the last try below)
        if not await self._settle(max(0.0, deadline - loop.time())):
            return len(self._pending) + self._unconfirmed
        # whatever is left (the store failing, the writer crashed): a last try, in ever
        # smaller chunks, bounded; subscribers are gone (told "bye"), so no fan-out
        self._closing = True
        while self._pending and (left := deadline - loop.time()) > 0:
            try:
                ok = await asyncio.wait_for(self._write_once(), left)
            except TimeoutError:
                await self._settle(0.0)
                break
            if not ok and self._chunk == 1:
                break
        return len(self._pending) + self._unconfirmed

    async def _settle(self, limit: float) -> bool:
        """Wait (``limit``) for the write in flight; False if the log did not answer."""
        if self._writing is None:
            return True
        writing, chunk = self._writing
        self._writing = None
        try:
            stored = await asyncio.wait_for(asyncio.shield(writing), limit)
        except TimeoutError:
            # it may still commit: these events are not known to be stored
            self._unconfirmed += len(chunk)
            self.error = f"the event log did not answer within {limit:g}s"
            return False
        except Exception:
            self._pending[:0] = chunk
            return True
        self._stored(stored)
        return True

    async def _write_once(self) -> bool:
        """Store (and then fan out) up to one chunk; False if the store failed."""
        # taken out of the queue while in flight: the backlog cap drops only what waits
        chunk = self._pending[: self._chunk]
        del self._pending[: len(chunk)]
        writing = asyncio.ensure_future(self.store.append(chunk))
        writing.add_done_callback(_retrieve)
        self._writing = (writing, chunk)
        try:
            stored = await asyncio.shield(writing)
        except asyncio.CancelledError:
            raise  # the write goes on; close() settles it
        except Exception as exc:
            self._writing = None
            self._pending[:0] = chunk
            self._failed(exc, len(chunk))
            return False
        self._writing = None
        self._stored(stored)
        return True

    def _failed(self, exc: Exception, tried: int) -> None:
        self.error = str(exc) or type(exc).__name__
        if not self.failing:  # said once, not every retry
            self.failing = True
            self._stuck.set()
            self._failed_at = time.monotonic()
            log.error(
                "cannot store state changes in the event log (%s): keeping them in memory "
                "(at most %d) and retrying",
                self.error,
                self._backlog,
            )
        self._chunk = max(1, tried // 2)  # a smaller transaction may fit

    def _stored(self, stored: list[Event]) -> None:
        self._chunk = min(CHUNK, self._chunk * 2)
        if self.failing:
            self._late += len(stored)
            if not self._pending:
                log.warning(
                    "the event log is written again after %.0fs: %d state changes were "
                    "stored late, %d dropped",
                    time.monotonic() - self._failed_at,
                    self._late,
                    self._dropped_here,
                )
                self.failing = False
                self._stuck.clear()
                self._late = self._dropped_here = 0
        if stored:
            self.last_id = stored[-1].id
        if self._closing:
            return
        for sub in self._subs:
            for e in stored:
                sub.put({"type": "state", **event_json(e)})


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a write's exception as seen (its caller may have stopped waiting for it)."""
    if not task.cancelled():
        task.exception()
