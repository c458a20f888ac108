"""State-change events and the stream that carries them to two kinds of consumers.

**Durable consumers** never lose an event. The event log is the first: an event is
written to SQLite, in one transaction with whatever every durable *stage* adds to that
transaction (the alert outbox registers one: enqueueing an event's notifications is
part of the same commit), before anything else sees it. The log gives the event its
``id``, which increases monotonically for the life of the database.

**Live consumers** (SSE clients, the dashboard, the demo's printer) get events only
after they are durable, so nothing shown is lost by a crash. Each has a bounded queue;
one that falls behind is not allowed to grow without bound: its queue is emptied and it
is told to *resync* (:data:`RESYNC`), i.e. to re-read from the event log what it
missed (by id) and then go on live. :meth:`EventStream.replay` is that read.

While the event log cannot be written (a full disk, a locked file), events wait in
memory in order, are retried with backoff in bounded chunks, and reach live consumers
when they are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

__all__ = [
    "RESYNC",
    "Event",
    "EventStore",
    "EventStream",
    "LiveSubscription",
    "State",
    "event_json",
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


@dataclass(frozen=True, slots=True)
class Event:
    """A change of a point's visible state (contract: ``{id, at, point, name, district,
    from, to, reason, cause}``).

    ``cause`` is the id of the point where the trouble is: the point itself, or the
    ancestor whose path is down; for a recovery, the cause of the state it leaves.
    ``id`` is 0 until the event log has stored the event.
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
CHUNK: Final = 1000
#: events kept in memory while the log cannot be written; beyond it the oldest are
#: dropped, counted and said (the process must not run out of memory instead)
BACKLOG_LIMIT: Final = 200_000


class EventStream:
    """Events in (from the health model), durable first, then to every live subscriber."""

    def __init__(
        self,
        store: EventStore,
        *,
        on_lost: Callable[[int], None] | None = None,
        retry: float = 5.0,
    ) -> None:
        self.store = store
        self._subs: set[LiveSubscription] = set()
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._retry = retry
        self._on_lost = on_lost
        self.lost = 0
        self.failing = False
        #: id of the newest event stored and fanned out (0: none yet)
        self.last_id = store.last_id

    # --- in ------------------------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """Queue events for the log; live subscribers see them once they are stored."""
        if not events:
            return
        self._pending.extend(events)
        if len(self._pending) > BACKLOG_LIMIT:
            drop = len(self._pending) - BACKLOG_LIMIT
            del self._pending[:drop]
            self.lost += drop
            if self._on_lost is not None:
                self._on_lost(drop)
            log.error(
                "event log backlog over %d: dropped the %d oldest events", BACKLOG_LIMIT, drop
            )
        self._idle.clear()
        self._wake.set()

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a non-durable message (a summary) to every live subscriber."""
        for sub in self._subs:
            sub.put(message)

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

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            await self._write_some()

    async def _write_some(self) -> None:
        if not await self._write_once():
            await asyncio.sleep(self._retry)

    async def drain(self, limit: float = 10.0) -> None:
        """Wait until every queued event is stored (bounded by ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), limit)

    async def close(self, limit: float = 30.0) -> int:
        """Stop the writer after storing what is queued; returns how many could not be."""
        task, self._task = self._task, None
        if task is not None:
            # let a write in progress finish: cancelling it could leave its chunk unsent
            await self.drain(limit)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # whatever is left (the store failing): one last try each chunk, bounded
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while self._pending and loop.time() < deadline:
            # not bounded per write: a write cut off while its transaction commits would
            # count its events lost although they are stored (the store's own busy timeout
            # bounds each try)
            if not await self._write_once():
                break
        return len(self._pending)

    async def _write_once(self) -> bool:
        """Store (and then fan out) up to one chunk; False if the store failed."""
        chunk = self._pending[:CHUNK]
        try:
            stored = await self.store.append(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.failing:  # said once, not every retry
                log.error(
                    "cannot write %d events to the event log (%s); keeping them, retrying every %gs",
                    len(self._pending),
                    str(exc) or type(exc).__name__,
                    self._retry,
                )
            self.failing = True
            return False
        if self.failing:
            log.warning("the event log is written again")
            self.failing = False
        del self._pending[: len(chunk)]
        if stored:
            self.last_id = stored[-1].id
        for sub in self._subs:
            for e in stored:
                sub.put({"type": "state", **event_json(e)})
        return True
