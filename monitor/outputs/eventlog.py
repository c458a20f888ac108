"""The event log: every state change, kept durably in SQLite (the stream's durable store).

SQLite is the embedded engine made for this; its calls block, so they run on
threads of their own and the event loop only awaits futures:

- **One writer thread** holds the one writing connection. Writes are batched by
  the stream (:class:`monitor.core.events.EventStream`); with ``synchronous=NORMAL``
  a committed transaction survives the process being killed (not a power cut),
  which is what "durable before published" needs.
- **Reader threads** (:data:`READERS`) open their own connection for each read. In
  WAL mode readers and the writer never wait for each other, so an API flood of
  event queries cannot hold up a state change being stored. At most
  :data:`READ_QUEUE` reads wait for a reader; one more is refused at once with
  :class:`LogBusy` (the API answers 503 and ``Retry-After``), and a read that runs
  longer than :data:`READ_TIME` is interrupted (also :class:`LogBusy`).

The threads are daemon threads: a hung disk can cost a bounded wait at close,
never a process that cannot exit.

One monitor writes a log: the writer holds an exclusive ``flock`` on
``<log>.lock`` (which names its pid) for its whole life, and a second monitor
on the same file is refused at open. Readers in other processes (``confmon
report``, ``sqlite3``) take no such lock and read while the monitor runs.

At open the file is checked (``PRAGMA quick_check``) and must be a confmon log or
empty: a corrupt file or another program's database is refused with one line
(:class:`LogRefused`) and never changed. A log that breaks while running makes
reads raise :class:`LogUnavailable` (said once in the log).

The writer notices when the file is deleted under it (the path no longer names
the inode it writes; checked before each write and every
:data:`WATCH_INTERVAL`): it copies the open (deleted) database to a new file at
the path, so history, ids and last states carry on. A path taken by another
file is left alone; what this run stored is copied beside it at close
(``<log>.saved-<pid>``), and :attr:`EventLog.unsaved` says so for the exit line.

Ids are given here, in the writing transaction: one more than the highest id the
database has ever given (``sqlite_sequence``), so they increase for the life of
the file even when retention has deleted every older event. Durable *stages*
(:meth:`EventLog.add_stage`) run inside the same transaction, stored with the events
or not at all. :meth:`EventLog.write` runs another transaction on the writer's thread,
after the events before it: the alert outbox stores its notifications and moves its
cursor in the log that way (:mod:`monitor.alerts.service`).

The log also remembers each point's last state, so a restarted monitor resumes
from it without announcing the states again.

It also keeps when a monitor wrote it (the ``runs`` table: one row per open, with its
start, a heartbeat every :data:`HEARTBEAT` seconds and its stop), because a state read
from the log lasts until the next change *whether or not a monitor was running*: the
session report (:mod:`monitor.report`) counts the time between runs as not monitored
instead of as whatever state was last written. Logs of an older confmon get the table
when a monitor opens them; the time before their first run is only known by its events.
:func:`open_read_only` is how such a reader opens a log: checked as :meth:`EventLog.open`
checks it, without a lock, and never changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import json
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from monitor.core.health import Event, State
from monitor.errors import ConfmonError
from monitor.text import printable

__all__ = [
    "HEARTBEAT",
    "READERS",
    "READ_QUEUE",
    "READ_TIME",
    "WATCH_INTERVAL",
    "EventLog",
    "LogBusy",
    "LogRefused",
    "LogUnavailable",
    "RunInfo",
    "Stage",
    "open_read_only",
]

log = logging.getLogger("confmon")

T = TypeVar("T")
P = ParamSpec("P")

#: a durable stage: called on the log's thread, inside the transaction that stores ``events``
Stage = Callable[[sqlite3.Connection, Sequence[Event]], None]

#: threads that run reads, each with its own connection (WAL: they never block the writer)
READERS = 4
#: reads that may wait for a reader thread; one more is refused at once (:class:`LogBusy`)
READ_QUEUE = 64
#: seconds one read may run before it is interrupted; and a read's longest wait in the queue
READ_TIME = 10.0
READ_WAIT = 30.0
#: seconds between two checks that the file at the path is still the one written
WATCH_INTERVAL = 2.0
#: seconds :meth:`EventLog.close` waits for the writer thread before leaving it
CLOSE_TIME = 10.0
#: seconds between two heartbeats of a run (``runs.alive``): a monitor that dies without
#: closing the log is known to have run until its last heartbeat
HEARTBEAT = 10.0
#: ``PRAGMA application_id`` of a confmon event log ("cmon"), so another program's
#: database is told apart from ours
APPLICATION_ID = 0x636D6F6E

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
    name TEXT NOT NULL DEFAULT '',
    evidence REAL
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
CREATE TABLE IF NOT EXISTS acks (
    cause TEXT PRIMARY KEY,
    by TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    alive REAL NOT NULL,
    stopped REAL,
    pid INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    timezone TEXT NOT NULL DEFAULT '',
    interval REAL
);
"""

#: columns added since the first release, for logs written by an older confmon
_MIGRATIONS = (
    ("events", "cause", "ALTER TABLE events ADD COLUMN cause TEXT NOT NULL DEFAULT ''"),
    ("events", "name", "ALTER TABLE events ADD COLUMN name TEXT NOT NULL DEFAULT ''"),
    ("last_state", "cause", "ALTER TABLE last_state ADD COLUMN cause TEXT NOT NULL DEFAULT ''"),
    ("events", "evidence", "ALTER TABLE events ADD COLUMN evidence REAL"),
)

#: what every confmon log's events table has had since the first release
_FIRST_COLUMNS = frozenset({"id", "at", "point", "district", "previous", "state", "reason"})

_COLUMNS = "id, at, point, district, previous, state, reason, metrics, cause, name, evidence"

_MAGIC = b"SQLite format 3\x00"

_MOVE_ASIDE = "move it aside or pass another --state-db"


@dataclass(frozen=True)
class RunInfo:
    """What a monitor writes about itself in its row of the ``runs`` table, so that a report
    read without the inventory still has the conference's name and time zone."""

    name: str = ""
    timezone: str = ""
    interval: float | None = None


class LogBusy(ConfmonError):
    """Too many reads of the log are waiting: the API answers 503 with ``Retry-After``."""


class LogUnavailable(ConfmonError):
    """The log cannot be read or written now (corrupt, deleted, disk full): the API answers 503.

    Raised by writes with the bare reason as its text (``disk full``), by reads with a
    whole sentence."""


class LogRefused(ConfmonError):
    """The file cannot be used as this monitor's event log at all (corrupt, another
    program's database, another monitor writing it): refused at open, exit 2."""

    exit_code = 2


def why(exc: BaseException) -> str:
    """A short reason for an SQLite or OS error, for one-line messages (``disk full``)."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or ""
        if name == "SQLITE_FULL":
            return "disk full"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return "locked by another process"
        if name.startswith("SQLITE_READONLY"):
            return "read-only (file system or permissions)"
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return f"the file is corrupt: {printable(str(exc), 200)}"
        if name.startswith("SQLITE_IOERR"):
            return "disk I/O error"
        if name.startswith("SQLITE_CANTOPEN"):
            return "cannot open the file"
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename:
            return f"{exc.strerror}: {printable(str(exc.filename), 200)}"
        return exc.strerror
    return printable(str(exc), 200) or type(exc).__name__


def _refuse_foreign_file(file: str, shown: str, hint: str) -> bool:
    """Refuse (:class:`LogRefused`) a path that is not a regular file or not an SQLite
    database, looking at it only (a FIFO would hang an open); False if nothing is there."""
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise LogRefused(f"{shown} is not a regular file; pass a file to --state-db")
    if st.st_size:
        with open(file, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                raise LogRefused(
                    f"{shown} is not a confmon event log (not an SQLite database); {hint}"
                )
    return True


def _refuse_corrupt(db: sqlite3.Connection, shown: str, hint: str) -> None:
    found = _rows(db, "PRAGMA quick_check(1)")[0][0]
    if found != "ok":
        detail = printable(str(found).replace("*** in database main ***\n", ""), 200)
        raise LogRefused(f"{shown} is corrupt ({detail}); {hint}")


def _refuse_foreign_schema(db: sqlite3.Connection, shown: str, hint: str) -> tuple[int, set[str]]:
    """Refuse another program's database; returns the application id and the tables (an
    empty database has neither)."""
    app = int(_rows(db, "PRAGMA application_id")[0][0])
    tables = {
        str(r[0])
        for r in _rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(r[0]).startswith("sqlite_")
    }
    if app not in (0, APPLICATION_ID):
        raise LogRefused(
            f"{shown} is not a confmon event log (another program's database: "
            f"application id {app:#x}); {hint}"
        )
    if tables and "events" not in tables:
        names = ", ".join(printable(t, 40) for t in sorted(tables)[:5])
        more = f" and {len(tables) - 5} more" if len(tables) > 5 else ""
        raise LogRefused(
            f"{shown} is not a confmon event log (another program's database, "
            f"with the tables {names}{more}); {hint}"
        )
    if "events" in tables:
        columns = {r[1] for r in _rows(db, "PRAGMA table_info(events)")}
        if missing := sorted(_FIRST_COLUMNS - columns):
            raise LogRefused(
                f"{shown} is not a confmon event log (its events table has no "
                f"{', '.join(missing)}); {hint}"
            )
    return app, tables


#: what a reader of someone else's log is told to do about a file it cannot read
_PASS_THE_LOG = "pass the event log a monitor writes (its --state-db)"


def open_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to the confmon event log at ``path``, for readers in other
    processes (``confmon report``): no lock is taken and nothing is changed, so a running
    monitor goes on writing it. The file is checked as :meth:`EventLog.open` checks it;
    :class:`LogRefused` (exit 2) says in one line why it cannot be read: missing, not a
    file, corrupt, another program's database, or no events table at all."""
    file = os.path.abspath(path)
    shown = printable(str(path), 200)
    try:
        if not _refuse_foreign_file(file, shown, _PASS_THE_LOG):
            raise LogRefused(f"{shown}: no such file; {_PASS_THE_LOG}")
        db = sqlite3.connect(f"file:{urllib.parse.quote(file)}?mode=ro", uri=True, timeout=5.0)
    except OSError as exc:
        raise LogRefused(f"cannot read {shown}: {why(exc)}") from None
    except sqlite3.Error as exc:
        raise LogRefused(f"cannot read {shown}: {why(exc)}") from None
    try:
        _rows(db, "PRAGMA query_only=ON")
        _refuse_corrupt(db, shown, _PASS_THE_LOG)
        _, tables = _refuse_foreign_schema(db, shown, _PASS_THE_LOG)
        if "events" not in tables:
            raise LogRefused(f"{shown} is not a confmon event log (it is empty); {_PASS_THE_LOG}")
    except sqlite3.DatabaseError as exc:
        db.close()
        if isinstance(exc, sqlite3.OperationalError):
            raise LogRefused(f"cannot read {shown}: {why(exc)}") from None
        raise LogRefused(
            f"{shown} is corrupt ({printable(str(exc), 200)}); {_PASS_THE_LOG}"
        ) from None
    except BaseException:
        db.close()
        raise
    return db


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(path)


def _remove_db(path: str) -> None:
    """A database file of ours that is given up, with its journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        _remove(path + suffix)


def _rows(db: sqlite3.Connection, sql: str, args: Sequence[object] = ()) -> list[Any]:
    """Run one statement to its end and close its cursor: a statement left open (a failed
    ``VACUUM INTO`` whose cursor is still referenced) would make the next commit fail with
    "SQL statements in progress"."""
    cur = db.cursor()
    try:
        return cur.execute(sql, args).fetchall()
    finally:
        cur.close()


class _Threads(concurrent.futures.Executor):
    """A fixed set of daemon threads taking jobs in order (``ThreadPoolExecutor``'s
    threads are joined at interpreter exit, so one hung in a read of a dead disk would
    keep the process from exiting)."""

    def __init__(self, n: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._down = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        if self._down:
            raise RuntimeError("the event log's threads are stopped")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._run(*job)
            del job  # keep no result alive until the next job (a cursor would stay open)

    @staticmethod
    def _run(future: concurrent.futures.Future[Any], fn: Callable[[], Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return  # given up on while it waited
        try:
            result = fn()
        except BaseException as exc:  # handed to the waiting coroutine
            future.set_exception(exc)
        else:
            future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._down:
            self._down = True
            for _ in self._threads:
                self._jobs.put(None)
        if wait:
            for t in self._threads:
                t.join()


class EventLog:
    """An SQLite event log with a writer thread and reader threads (see the module docstring).

    Open with :meth:`open`, close with :meth:`close`.
    """

    def __init__(
        self,
        path: str | Path,
        districts: dict[str, str],
        retention: float,
        run: RunInfo | None = None,
    ) -> None:
        self.path = str(path)
        self.retention = retention
        self._districts = districts
        self._memory = self.path == ":memory:"
        self._file = self.path if self._memory else os.path.abspath(self.path)
        self._shown = printable(self.path, 200)
        #: the writer's thread (its name is kept for callers that queue work behind writes)
        self._pool = _Threads(1, "confmon-eventlog")
        self._readers = None if self._memory else _Threads(READERS, "confmon-eventlog-read")
        self._db: sqlite3.Connection | None = None
        self._stages: list[Stage] = []
        self._next_id = 1
        self._lock_fd: int | None = None
        #: the log file itself, flock'ed: another name for it (a hard link) is the same lock
        self._inode_fd: int | None = None
        #: (st_dev, st_ino) of the file the writer writes; readers check they open the same
        self._ident: tuple[int, int] | None = None
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        # reads: admission on the event loop, the gate on the threads
        self._waiting = 0
        self._cond = threading.Condition()
        self._active = 0
        self._reader_conns: set[sqlite3.Connection] = set()
        self._paused: str | None = None
        self._read_trouble: str | None = None
        #: why the file at the path is not the one written ("deleted" / "replaced"), or None
        self.trouble: str | None = None
        self._trouble_why = ""
        self._trouble_from = 0
        #: how often the log was re-created at its path after being deleted
        self.recreated = 0
        #: after :meth:`close`: one line saying what of this run is not in the file at the
        #: path (deleted and not re-created, replaced, not closed in time), else None
        self.unsaved: str | None = None
        # this run's row in ``runs``: given at the first write of it, kept across re-creation
        self._run = run or RunInfo()
        self._run_id: int | None = None
        self._run_started = time.time()
        self._beat_at = 0.0
        self._run_trouble: str | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        districts: dict[str, str],
        retention: float = 30 * 86400.0,
        run: RunInfo | None = None,
    ) -> EventLog:
        """Open (creating if needed) the log at ``path``; ``districts`` maps point -> district;
        ``run`` is what this monitor records about itself in the ``runs`` table.

        Raises :class:`LogRefused` (exit 2) for a file that is not a usable confmon log or
        is written by another monitor, :class:`ConfmonError` when it cannot be opened now.
        """
        log_ = cls(path, districts, retention, run)
        shown = log_._shown
        try:
            await log_._call(log_._connect)
        except asyncio.CancelledError:
            log_._pool.submit(log_._shut)  # after the open that is still running
            log_._stop_threads()
            raise
        except BaseException as exc:
            if isinstance(exc, TimeoutError):  # the open may still finish: then close it
                log_._pool.submit(log_._shut)
            log_._stop_threads()
            if isinstance(exc, ConfmonError):
                raise
            if isinstance(exc, TimeoutError):
                raise ConfmonError(
                    f"cannot open event log {shown}: no answer within 30s (a hung disk?)"
                ) from None
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError
            ):
                raise LogRefused(
                    f"{shown} is corrupt ({printable(str(exc), 200)}); {_MOVE_ASIDE}"
                ) from None
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise ConfmonError(
                    f"cannot open event log {shown}: {why(exc)} (see --state-db)"
                ) from None
            raise
        if not log_._memory:
            log_._watcher = asyncio.get_running_loop().create_task(
                log_._watch(), name="confmon-eventlog-watch"
            )
        return log_

    def _stop_threads(self) -> None:
        self._pool.shutdown(wait=False)
        if self._readers is not None:
            self._readers.shutdown(wait=False)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the writer's thread, waiting at most 30 s."""
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._pool, fn, *args), timeout=30.0)

    async def _commit(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`_call`, for a write, but without a timeout and not cancellable half-way:
        a transaction given up on while its thread goes on to commit it would be stored, yet
        look failed, and be stored again (twice, under new ids) by the retry."""
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except RuntimeError:  # the threads are stopped
            raise LogUnavailable("the event log is closed") from None
        return await asyncio.shield(future)

    # --- opening and checking the file --------------------------------------------------------

    def _connect(self) -> None:
        if self._memory:
            db = sqlite3.connect(":memory:")
            self._prepare(db, check=False)
            self._db = db
            return
        # looked at before anything is created or locked beside it (a FIFO would hang the
        # open, /dev/zero grow a lock file in /dev)
        _refuse_foreign_file(self._file, self._shown, _MOVE_ASIDE)
        Path(self._file).parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            db = sqlite3.connect(self._file, timeout=10.0)
            try:
                self._prepare(db, check=True)
                st = os.stat(self._file)
            except BaseException:
                db.close()
                raise
        except BaseException:
            self._unlock()
            raise
        self._db = db
        self._ident = (st.st_dev, st.st_ino)
        self._record_run()

    def _record_run(self, stopped: float | None = None) -> None:
        """On the writer's thread: this run's row in ``runs``, with a heartbeat now (and its
        stop). Never fails the caller: a run that cannot be recorded (a full disk) is said
        once, and counts as not monitored in a report until a later heartbeat is stored."""
        db = self._db
        if db is None or self._memory:
            return
        now = time.time() if stopped is None else stopped
        info = self._run
        row = (self._run_started, now, stopped, os.getpid(), info.name, info.timezone)
        try:
            with db:
                cur = db.cursor()
                try:
                    if self._run_id is None:
                        cur.execute(
                            "INSERT INTO runs (started, alive, stopped, pid, name, timezone,"
                            " interval) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (*row, info.interval),
                        )
                        self._run_id = cur.lastrowid
                    else:  # an upsert: a re-created file may not have the row any more
                        cur.execute(
                            "INSERT INTO runs (id, started, alive, stopped, pid, name, timezone,"
                            " interval) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO"
                            " UPDATE SET alive = excluded.alive, stopped = excluded.stopped",
                            (self._run_id, *row, info.interval),
                        )
                finally:
                    cur.close()
        except sqlite3.Error as exc:
            reason = why(exc)
            if reason != self._run_trouble:  # said once, not every heartbeat
                log.warning(
                    "cannot record this monitor's run in the event log %s (%s): a session "
                    "report counts the time until it can as not monitored",
                    self._shown,
                    reason,
                )
            self._run_trouble = reason
            return
        self._run_trouble = None
        self._beat_at = now

    def _prepare(self, db: sqlite3.Connection, *, check: bool) -> None:
        """Check that ``db`` is a sound confmon log or empty, then bring its schema up to date."""
        if check:
            _refuse_corrupt(db, self._shown, _MOVE_ASIDE)
        app, _ = _refuse_foreign_schema(db, self._shown, _MOVE_ASIDE)
        _rows(db, "PRAGMA journal_mode=WAL")
        _rows(db, "PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        for table, column, sql in _MIGRATIONS:
            if column not in {row[1] for row in _rows(db, f"PRAGMA table_info({table})")}:
                _rows(db, sql)
        if app == 0:
            _rows(db, f"PRAGMA application_id={APPLICATION_ID}")
        seq = _rows(db, "SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        given = seq[0] if seq else None
        highest = _rows(db, "SELECT COALESCE(MAX(id), 0) FROM events")[0][0]
        # the id this log object knows wins: a re-created file goes on from it
        self._next_id = max(self._next_id, (given[0] if given else 0) + 1, highest + 1)

    def _lock(self) -> None:
        """Take ``<log>.lock`` for writing, or refuse: another monitor writes this log.

        The lock file is named after the log's real path (a symbolic link to a log in use
        is refused), and the log file itself is locked too (a hard link is the same file)."""
        self._lock_name()
        try:
            self._lock_inode()
        except BaseException:
            self._unlock()
            raise

    def _lock_inode(self) -> None:
        fd = os.open(self._file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # independent of SQLite's locks
        except BlockingIOError:
            os.close(fd)
            raise LogRefused(
                f"{self._shown} is in use by another confmon (under another name of the same "
                "file: a hard link); stop it or pass another --state-db"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if self._inode_fd is not None:
            os.close(self._inode_fd)
        self._inode_fd = fd

    def _unlock(self) -> None:
        for fd in (self._lock_fd, self._inode_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._inode_fd = None

    def _lock_name(self) -> None:
        path = os.path.realpath(self._file) + ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            pid = f"pid {printable(holder, 20)}, " if holder.isdigit() else ""
            raise LogRefused(
                f"{self._shown} is in use by another confmon ({pid}which holds "
                f"{printable(path, 200)}); stop it or pass another --state-db"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _relock(self) -> None:
        """The lock file went with a deleted log: take a new one at its path."""
        if self._lock_fd is None:
            return
        path = os.path.realpath(self._file) + ".lock"
        mine = os.fstat(self._lock_fd)
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                return
        old = self._lock_fd
        try:
            self._lock_name()
            self._lock_inode()  # the re-created file is a new one
        except LogRefused as exc:
            log.error("%s: another monitor may now write this log", exc)
        finally:
            if old != self._lock_fd:
                os.close(old)

    async def _watch(self) -> None:
        """Check the file at the path every WATCH_INTERVAL, also when no event is written,
        and store the run's heartbeat every :data:`HEARTBEAT`."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                await self._commit(self._check_file)
                if time.time() - self._beat_at >= HEARTBEAT:
                    await self._commit(self._record_run)
            except LogUnavailable:
                return  # closed
            except Exception:  # a bug: said once, not every 2 s
                log.exception("checking the event log file failed; not checked any more")
                return

    def _check_file(self) -> None:
        """On the writer's thread: is the file at the path still the one written? If it was
        deleted, re-create it from the open copy."""
        if self._memory or self._db is None:
            return
        try:
            st = os.stat(self._file)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError:
            return  # cannot tell now (permissions, a hung mount): next time
        if st is not None and (st.st_dev, st.st_ino) == self._ident:
            return
        if self.trouble is None:
            self._trouble_from = self._next_id
        if st is not None:
            if self.trouble != "replaced":
                self.trouble = "replaced"
                log.error(
                    "the event log %s was replaced by another file while running: that file is "
                    "left alone; events go on into the one confmon opened, which is copied to "
                    "%s.saved-%d when it stops",
                    self._shown,
                    self._shown,
                    os.getpid(),
                )
            return
        self._recreate()

    def _recreate(self) -> None:
        tmp = f"{self._file}.recovering-{os.getpid()}"
        try:
            Path(self._file).parent.mkdir(parents=True, exist_ok=True)
            _remove_db(tmp)
            how = self._copy_to(tmp)
            self._swap_to(tmp)
        except (sqlite3.Error, OSError, ConfmonError) as exc:
            reason = why(exc)
            if self._db is not None:
                _remove_db(tmp)
            elif os.path.exists(tmp):  # the old file is closed: this copy is all there is
                reason += f"; the copy is in {printable(tmp, 200)}"
            if self.trouble != "deleted" or reason != self._trouble_why:
                log.error(
                    "the event log %s was deleted while running and cannot be re-created (%s): "
                    "events go on into the deleted file, lost at exit unless it can be "
                    "re-created (tried again every %gs)",
                    self._shown,
                    reason,
                    WATCH_INTERVAL,
                )
            self.trouble, self._trouble_why = "deleted", reason
            return
        self.recreated += 1
        was, self.trouble = self.trouble, None
        if was == "replaced":
            what = "replaced by another file while running, which is gone now"
        elif was == "deleted":
            what = f"deleted while running (first it could not be re-created: {self._trouble_why})"
        else:
            what = "deleted while running"
        log.error(
            "the event log %s was %s; re-created it %s, ids go on from %d",
            self._shown,
            what,
            how,
            self._next_id,
        )
        try:
            self._relock()
        except OSError as exc:
            log.error(
                "cannot lock %s.lock again (%s): a second monitor would not be refused",
                self._shown,
                why(exc),
            )

    def _copy_to(self, tmp: str) -> str:
        """Write the open database to ``tmp``: all of it, else (no room) what carries on."""
        try:
            _rows(self.db, "VACUUM INTO ?", (tmp,))
            count = _rows(self.db, "SELECT COUNT(*) FROM events")[0][0]
            return f"with its history ({count} events)"
        except sqlite3.Error as exc:
            _remove_db(tmp)
            full = why(exc)
        last = _rows(self.db, "SELECT point, state, since, reason, cause FROM last_state")
        new = sqlite3.connect(tmp)
        try:
            self._prepare(new, check=False)
            with new:
                new.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)",
                    (self._next_id - 1,),
                )
                new.executemany("INSERT INTO last_state VALUES (?, ?, ?, ?, ?)", last)
        finally:
            new.close()
        return f"without the older history (copying it failed: {full}) but with the last states"

    def _swap_to(self, tmp: str) -> None:
        """Put ``tmp`` at the path and write it from now on (readers stopped meanwhile)."""
        if os.path.lexists(self._file):
            raise FileExistsError(17, "another file appeared at the path meanwhile")
        own = self._paused is None  # not when closing: close has stopped reads already
        if own and not self._pause("the event log is being re-created", READ_TIME + 5.0):
            self._resume()
            raise sqlite3.OperationalError("reads of the old file did not stop in time")
        try:
            old, self._db = self._db, None
            assert old is not None
            old.close()
            # the deleted file's -wal and -shm are still at the path's names (SQLite keeps
            # them for a file unlinked while open): the new file must not take them as its own
            for suffix in ("-wal", "-shm", "-journal"):
                _remove(self._file + suffix)
            os.rename(tmp, self._file)
            db = sqlite3.connect(self._file, timeout=10.0)
            try:
                self._prepare(db, check=False)
                st = os.stat(self._file)
            except BaseException:
                db.close()
                raise
            self._db = db
            self._ident = (st.st_dev, st.st_ino)
        finally:
            if own:
                self._resume()

    def _writable(self) -> sqlite3.Connection:
        """The writing connection; after a failed re-creation, the file at the path reopened."""
        if self._db is not None:
            return self._db
        if self._closed:
            raise LogUnavailable("the event log is closed")
        try:
            db = sqlite3.connect(f"file:{urllib.parse.quote(self._file)}?mode=rw", uri=True)
        except sqlite3.Error as exc:
            raise LogUnavailable(why(exc)) from None
        try:
            self._prepare(db, check=False)
            st = os.stat(self._file)
        except (sqlite3.Error, OSError, ConfmonError) as exc:
            db.close()
            raise LogUnavailable(why(exc)) from None
        self._db, self._ident = db, (st.st_dev, st.st_ino)
        if self.trouble == "deleted":  # what is at the path now is the copy made of it
            self.trouble = None
            log.warning("the event log %s is written again", self._shown)
        return db

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
        """The writing connection (use it on the writer's thread only)."""
        assert self._db is not None, "EventLog used before open() or after close()"
        return self._db

    # --- writing ------------------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store events durably (one transaction, with every stage); returns them with ids.

        Raises :class:`LogUnavailable` (its text the reason: ``disk full``) if they could not
        be stored; then nothing of them was.
        """
        if not events:
            return []
        try:
            return await self._commit(self._append, list(events))
        except sqlite3.Error as exc:
            raise LogUnavailable(why(exc)) from None

    def _append(self, events: list[Event]) -> list[Event]:
        self._check_file()
        db = self._writable()
        first = self._next_id
        stored = [replace(e, id=first + i) for i, e in enumerate(events)]
        with db:
            db.executemany(
                f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        e.evidence,
                    )
                    for e in stored
                ],
            )
            db.executemany(
                "INSERT INTO last_state (point, state, since, reason, cause) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(point) DO UPDATE SET state=excluded.state, since=excluded.since,"
                " reason=excluded.reason, cause=excluded.cause",
                [(e.point, e.state.value, e.at, e.reason, e.cause or e.point) for e in stored],
            )
            for stage in self._stages:
                stage(db, stored)
        # only after the commit: a failed transaction gives the same ids again next time
        self._next_id = first + len(stored)
        return stored

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction on the writer's thread, after the
        events before it (the alert outbox: its notifications and its cursor in the event
        log are one commit). Raises :class:`LogUnavailable` if it could not be committed;
        then nothing of it was."""

        def run() -> T:
            self._check_file()
            db = self._writable()
            with db:
                return fn(db)

        try:
            return await self._commit(run)
        except sqlite3.Error as exc:
            raise LogUnavailable(why(exc)) from None

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on a reader (see :meth:`_read`: bounded, never behind a
        write)."""
        return await self._read(fn)

    async def prune(self, now: float) -> int:
        """Delete events older than the retention; returns how many."""
        try:
            return await self._commit(self._prune, now - self.retention)
        except sqlite3.Error as exc:
            raise LogUnavailable(why(exc)) from None

    def _prune(self, before: float) -> int:
        db = self._writable()
        with db:
            return db.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount

    # --- reading ------------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on a reader thread: never behind a write, bounded in how many
        wait and how long one runs (:class:`LogBusy`); :class:`LogUnavailable` if the file
        cannot be read."""
        if self._closed:
            raise LogUnavailable(f"the event log {self._shown} is closed")
        if self._waiting >= READERS + READ_QUEUE:
            raise LogBusy(
                f"{self._waiting} reads of the event log are in progress or waiting; "
                "try again in a moment"
            )
        try:
            if self._readers is None:  # ":memory:" is one connection: the writer's
                future = self._pool.submit(self._reading_memory, fn)
            else:
                future = self._readers.submit(self._reading, fn)
        except RuntimeError:  # the threads are stopped
            raise LogUnavailable(f"the event log {self._shown} is closed") from None
        self._waiting += 1
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), READ_WAIT)
        except TimeoutError:
            raise LogBusy(
                f"a read of the event log waited over {READ_WAIT:g}s; try again in a moment"
            ) from None
        finally:
            self._waiting -= 1

    def _reading_memory(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self.db)

    def _reading(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._cond:
            if self._paused is not None:
                raise LogUnavailable(f"{self._paused}; try again in a moment")
            self._active += 1
        conn: sqlite3.Connection | None = None
        try:
            conn = self._open_reader()
            deadline = time.monotonic() + READ_TIME
            conn.set_progress_handler(lambda: time.monotonic() > deadline, 50_000)
            with self._cond:
                self._reader_conns.add(conn)
            result = fn(conn)
        except sqlite3.Error as exc:
            raise self._read_failed(exc) from None
        except OSError as exc:  # the path is gone (deleted, not yet re-created)
            raise self._read_failed(exc) from None
        except (ValueError, TypeError) as exc:  # a row that is not what confmon writes
            raise self._read_failed(exc, f"a malformed row ({printable(str(exc), 120)})") from None
        finally:
            with self._cond:
                if conn is not None:
                    self._reader_conns.discard(conn)
                self._active -= 1
                self._cond.notify_all()
            if conn is not None:
                conn.close()
        if self._read_trouble is not None:
            self._read_trouble = None
            log.warning("the event log %s can be read again", self._shown)
        return result

    @property
    def read_trouble(self) -> str | None:
        """Why the last read failed (until a read succeeds again), e.g. a corrupt file."""
        return self._read_trouble

    def _open_reader(self) -> sqlite3.Connection:
        # mode=rw: a reader never creates a file at the path (the writer re-creates it)
        uri = f"file:{urllib.parse.quote(self._file)}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only=ON")
            st = os.stat(self._file)
        except BaseException:
            conn.close()
            raise
        if (st.st_dev, st.st_ino) != self._ident:
            conn.close()
            raise LogUnavailable(
                f"the event log {self._shown} is not the file confmon writes any more "
                "(deleted or replaced); try again in a moment"
            )
        return conn

    def _read_failed(self, exc: Exception, reason: str = "") -> ConfmonError:
        if getattr(exc, "sqlite_errorname", None) == "SQLITE_INTERRUPT":
            if self._paused is not None:
                return LogUnavailable(f"{self._paused}; try again in a moment")
            return LogBusy(f"the query ran over {READ_TIME:g}s and was stopped")
        reason = reason or why(exc)
        if reason == "locked by another process":
            return LogBusy(f"the event log {self._shown} is locked; try again in a moment")
        if self._read_trouble != reason:  # said once, not once a request
            self._read_trouble = reason
            log.error("the event log %s cannot be read: %s", self._shown, reason)
        return LogUnavailable(f"the event log {self._shown} cannot be read: {reason}")

    async def since(self, after_id: int, limit: int = 1000) -> list[Event]:
        """Stored events with ``id > after_id``, oldest first, at most ``limit``."""

        def read(db: sqlite3.Connection) -> list[Event]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
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
                    evidence=evidence,
                )
                for i, at, p, d, prev, st, reason, metrics, cause, name, evidence in rows
            ]

        return await self._read(read)

    async def last_causes(self) -> dict[str, str]:
        """Each point's last recorded cause (point -> the point where its trouble was)."""
        rows = await self._read(
            lambda db: db.execute("SELECT point, cause FROM last_state").fetchall()
        )
        return {p: cause for p, cause in rows if cause}

    async def acks(self) -> list[tuple[str, str, float]]:
        """The acknowledgements kept: (cause, by, at)."""
        rows = await self._read(lambda db: db.execute("SELECT cause, by, at FROM acks").fetchall())
        return [(str(c), str(b), float(a)) for c, b, a in rows]

    async def keep_acks(self, acks: Sequence[tuple[str, str, float]]) -> None:
        """Replace the acknowledgements kept with ``acks`` (cause, by, at), in one commit."""

        def replace(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM acks")
            db.executemany("INSERT INTO acks (cause, by, at) VALUES (?, ?, ?)", acks)

        await self.write(replace)

    async def last_states(self) -> dict[str, tuple[State, float, str]]:
        """Each point's last recorded state: point -> (state, since, reason)."""
        rows = await self._read(
            lambda db: db.execute("SELECT point, state, since, reason FROM last_state").fetchall()
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

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
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
                for i, at, p, d, prev, s, reason, metrics, cause, name, _ in db.execute(
                    sql, args
                ).fetchall()
            ]

        return await self._read(read)

    # --- the gate between readers and the writer's file changes -------------------------------

    def _pause(self, why_: str, timeout: float) -> bool:
        """Stop reads (new ones refused, running ones interrupted); False if they did not end
        within ``timeout``. Undo with :meth:`_resume`."""
        with self._cond:
            self._paused = why_
            for conn in self._reader_conns:
                conn.interrupt()
            return self._cond.wait_for(lambda: self._active == 0, timeout)

    def _resume(self) -> None:
        with self._cond:
            self._paused = None

    # --- closing ------------------------------------------------------------------------------

    async def close(self, limit: float = CLOSE_TIME) -> None:
        """Close the database and its threads, waiting at most ``limit`` for the writer's
        thread (a hung disk): then it is left behind, said in the log and in :attr:`unsaved`.
        Safe to call twice."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if self._closed:
            return
        self._closed = True
        try:
            future = asyncio.wrap_future(self._pool.submit(self._shut))
            await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            log.error(
                "the event log %s did not close within %gs (a hung disk?); leaving it",
                self._shown,
                limit,
            )
            self.unsaved = self.unsaved or (
                f"the event log {self._shown} did not close within {limit:g}s (a hung disk?)"
            )
        except Exception as exc:  # closing must go on; the reason is said once
            log.error("closing the event log %s failed: %s", self._shown, why(exc))
        finally:
            self._stop_threads()

    def _shut(self) -> None:
        """On the writer's thread: stop reads, repair or save what the path lost, close."""
        if self._readers is not None:
            self._pause("the event log is closing", READ_TIME + 5.0)
        try:
            if self._db is not None and not self._memory:
                try:
                    self._record_run(stopped=time.time())
                    self._check_file()  # a deletion noticed only now is still repaired
                    if self.trouble is not None:
                        self._save_aside()
                except Exception as exc:  # the connection is still closed below
                    log.error("checking the event log %s at close failed: %s", self._shown, exc)
        finally:
            db, self._db = self._db, None
            if db is not None:
                db.close()
            self._unlock()

    def _save_aside(self) -> None:
        """The path lost this run's file (replaced, or deleted and not re-created): copy what
        was stored beside it, so nothing is lost, and say so in :attr:`unsaved` (the
        monitor's stop raises it as the exit line)."""
        target = f"{self._file}.saved-{os.getpid()}"
        what = "replaced by another file" if self.trouble == "replaced" else "deleted"
        since = self._next_id - self._trouble_from
        try:
            _remove_db(target)
            _rows(self.db, "VACUUM INTO ?", (target,))
        except (sqlite3.Error, OSError) as exc:
            _remove_db(target)
            self.unsaved = (
                f"the event log {self._shown} was {what} while running and could not be "
                f"re-created ({self._trouble_why or why(exc)}); the {since} state changes "
                "stored since then are lost"
            )
        else:
            self.unsaved = (
                f"the event log {self._shown} was {what} while running; the file confmon "
                f"wrote, with the {since} state changes stored since, is saved as "
                f"{printable(target, 200)}"
            )
