"""The event log: every state change, kept durably in SQLite (the stream's durable store).

SQLite is the embedded engine made for this; its calls block, so they run on
one dedicated worker thread (a sqlite connection belongs to the thread that
made it) and the event loop only awaits futures. Writes are batched: the events
that arrive while one transaction commits go into the next. WAL mode keeps
readers (the API) and the writer from blocking each other; with
``synchronous=NORMAL`` a committed transaction survives the process being
killed (not a power cut), which is what "durable before published" needs.

Ids are given here, in the writing transaction: one more than the highest id the
database has ever given (``sqlite_sequence``), so they increase for the life of
the file even when retention has deleted every older event. Durable *stages*
(:meth:`EventLog.add_stage`) run inside the same transaction: the alert outbox
enqueues an event's notifications there, so the event and its notifications are
stored together or not at all.

The log also remembers each point's last state, so a restarted monitor resumes
from it without announcing the states again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from monitor.core.health import Event, State
from monitor.errors import ConfmonError

__all__ = ["EventLog", "LogBusy", "LogUnavailable", "Stage"]

T = TypeVar("T")

#: a durable stage: called on the log's thread, inside the transaction that stores ``events``
Stage = Callable[[sqlite3.Connection, Sequence[Event]], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    point TEXT NOT NULL,
    district TEXT NOT NULL,
    previous TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    metrics TEXT NOT NULL,
    cause TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE INDEX IF NOT EXISTS events_point ON events (point, id);
CREATE TABLE IF NOT EXISTS last_state (
    point TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    reason TEXT NOT NULL,
    cause TEXT NOT NULL DEFAULT ''
);
"""

#: columns added since the first release, for logs written by an older confmon
_MIGRATIONS = (
    ("events", "cause", "ALTER TABLE events ADD COLUMN cause TEXT NOT NULL DEFAULT ''"),
    ("events", "name", "ALTER TABLE events ADD COLUMN name TEXT NOT NULL DEFAULT ''"),
    ("last_state", "cause", "ALTER TABLE last_state ADD COLUMN cause TEXT NOT NULL DEFAULT ''"),
)

_COLUMNS = "id, at, point, district, previous, state, reason, metrics, cause, name"


class LogBusy(ConfmonError):
    """Too many reads of the log are waiting: the API answers 503 with ``Retry-After``."""


class LogUnavailable(ConfmonError):
    """The log cannot be read or written now (corrupt, deleted, disk full): the API answers 503."""


class EventLog:
    """An SQLite event log on its own thread. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: str | Path, districts: dict[str, str], retention: float) -> None:
        self.path = str(path)
        self.retention = retention
        self._districts = districts
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="confmon-eventlog")
        self._db: sqlite3.Connection | None = None
        self._stages: list[Stage] = []
        self._next_id = 1

    @classmethod
    async def open(
        cls, path: str | Path, districts: dict[str, str], retention: float = 30 * 86400.0
    ) -> EventLog:
        """Open (creating if needed) the log at ``path``; ``districts`` maps point -> district."""
        log = cls(path, districts, retention)
        try:
            await log._call(log._connect)
        except (sqlite3.Error, OSError) as exc:
            log._pool.shutdown(wait=False)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfmonError(f"cannot open event log {path}: {why} (see --state-db)") from None
        return log

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._pool, fn, *args), timeout=30.0)

    async def _commit(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`_call`, for a write, but without a timeout and not cancellable half-way:
        a transaction given up on while its thread goes on to commit it would be stored, yet
        look failed, and be stored again (twice, under new ids) by the retry."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        return await asyncio.shield(future)

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        for table, column, sql in _MIGRATIONS:
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(sql)
        given = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        highest = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        self._next_id = max(given[0] if given else 0, highest) + 1
        self._db = db

    @property
    def last_id(self) -> int:
        """The id of the newest stored event (0 when there is none)."""
        return self._next_id - 1

    def add_stage(self, stage: Stage) -> None:
        """Run ``stage`` inside every transaction that stores events (see the module docstring)."""
        self._stages.append(stage)

    def set_districts(self, districts: dict[str, str]) -> None:
        """Replace the point -> district map (after a config reload)."""
        self._districts = districts

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "EventLog used before open()"
        return self._db

    # --- writing ------------------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store events durably (one transaction, with every stage); returns them with ids."""
        if not events:
            return []
        return await self._commit(self._append, list(events))

    def _append(self, events: list[Event]) -> list[Event]:
        first = self._next_id
        stored = [replace(e, id=first + i) for i, e in enumerate(events)]
        with self.db:
            self.db.executemany(
                f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.id,
                        e.at,
                        e.point,
                        e.district or self._districts.get(e.point, ""),
                        e.previous.value,
                        e.state.value,
                        e.reason,
                        json.dumps(e.metrics),
                        e.cause or e.point,
                        e.name,
                    )
                    for e in stored
                ],
            )
            self.db.executemany(
                "INSERT INTO last_state (point, state, since, reason, cause) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(point) DO UPDATE SET state=excluded.state, since=excluded.since,"
                " reason=excluded.reason, cause=excluded.cause",
                [(e.point, e.state.value, e.at, e.reason, e.cause or e.point) for e in stored],
            )
            for stage in self._stages:
                stage(self.db, stored)
        # only after the commit: a failed transaction gives the same ids again next time
        self._next_id = first + len(stored)
        return stored

    async def since(self, after_id: int, limit: int = 1000) -> list[Event]:
        """Stored events with ``id > after_id``, oldest first, at most ``limit``."""
        rows = await self._call(
            lambda: self.db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        )
        return [
            Event(
                point=p,
                previous=State(prev),
                state=State(st),
                reason=reason,
                at=at,
                metrics=json.loads(metrics),
                cause=cause,
                name=name,
                district=d,
                id=i,
            )
            for i, at, p, d, prev, st, reason, metrics, cause, name in rows
        ]

    async def prune(self, now: float) -> int:
        """Delete events older than the retention; returns how many."""
        return await self._call(self._prune, now - self.retention)

    def _prune(self, before: float) -> int:
        with self.db:
            return self.db.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount

    # --- reading ------------------------------------------------------------------------------

    async def last_causes(self) -> dict[str, str]:
        """Each point's last recorded cause (point -> the point where its trouble was)."""
        rows = await self._call(
            lambda: self.db.execute("SELECT point, cause FROM last_state").fetchall()
        )
        return {p: cause for p, cause in rows if cause}

    async def last_states(self) -> dict[str, tuple[State, float, str]]:
        """Each point's last recorded state: point -> (state, since, reason)."""
        rows = await self._call(
            lambda: self.db.execute("SELECT point, state, since, reason FROM last_state").fetchall()
        )
        return {p: (State(s), since, reason) for p, s, since, reason in rows}

    async def query(
        self,
        *,
        point: str | None = None,
        district: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events newest first, filtered; page with ``before_id`` (the last id of a page)."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (("point", point), ("district", district), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at < ?")
            args.append(until)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = await self._call(lambda: self.db.execute(sql, args).fetchall())
        return [
            {
                "id": i,
                "at": at,
                "point": p,
                "district": d,
                "from": prev,
                "to": s,
                "reason": reason,
                "cause": cause or p,
                "name": name or p,
                "metrics": json.loads(metrics),
            }
            for i, at, p, d, prev, s, reason, metrics, cause, name in rows
        ]

    async def close(self) -> None:
        """Close the database and its thread."""
        if self._db is not None:
            try:
                await self._call(self._db.close)
            finally:
                self._db = None
        self._pool.shutdown(wait=True)
