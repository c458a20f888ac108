"""The event log under abuse: read floods, a second writer, corrupt and foreign files, the
file deleted or replaced under a running monitor, writes that fail, a writer that crashes
and a disk that hangs. Real SQLite files throughout; a full disk is SQLite's own
``max_page_count`` limit (the same SQLITE_FULL a full disk gives) here, and a real full
tmpfs in :mod:`tests.outputs.test_eventlog_disk_full`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from monitor.core.events import EventStream
from monitor.core.health import Event, State
from monitor.core.results import ProbeResult
from monitor.core.service import Monitor
from monitor.errors import ConfmonError
from monitor.inventory import parse_inventory
from monitor.outputs import eventlog as eventlog_module
from monitor.outputs.eventlog import (
    READ_QUEUE,
    READERS,
    EventLog,
    LogBusy,
    LogRefused,
    LogUnavailable,
)
from tests.helpers import ROOT
from tests.outputs.fixtures import feed

MOVE_ASIDE = "move it aside or pass another --state-db"


def ev(point: str, at: float, to: State = State.DOWN) -> Event:
    return Event(point, State.UP, to, "test", at, {"rtt": 0.01}, cause=point, name=point)


def refused() -> list[ProbeResult]:
    return [
        ProbeResult(
            probe="tcp", target="x", ok=False, at=time.time(), duration=0.0, error="refused"
        )
    ]


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def fill(db: Path, n: int) -> None:
    """``n`` events in the log at ``db`` (closed), written in one statement."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO events (id, at, point, district, previous, state, reason, metrics) "
            "SELECT i, 1e9 + i, 'p' || (i % 450), 'd', 'up', 'down', '2 failed cycles', "
            "'{\"rtt\": 0.01}' FROM n",
            (n,),
        )


def ballast(db: sqlite3.Connection, events: Sequence[Event]) -> None:
    """A stage: each event stored brings 4 KiB along, so no write fits in the pages the file
    already has; with the file's size capped that is a full disk, SQLITE_FULL and all."""
    db.execute("INSERT INTO ballast VALUES (zeroblob(?))", (4096 * len(events),))


def disk_full(log: EventLog) -> None:
    """From now on no event fits: the file cannot grow (and events need room, see ballast)."""
    db = log.db
    db.execute("CREATE TABLE IF NOT EXISTS ballast (b BLOB)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    if ballast not in log._stages:
        log.add_stage(ballast)


def space_freed(log: EventLog) -> None:
    log.db.execute("PRAGMA max_page_count = 1073741823")


async def stored(db: Path) -> int:
    def count() -> int:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    return await asyncio.to_thread(count)


async def until(check: object, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not await check():  # type: ignore[operator]  # noqa: ASYNC110 - polling state
            await asyncio.sleep(0.05)


# --- reads never hold up writes -------------------------------------------------------------


async def test_a_flood_of_reads_neither_delays_writes_nor_queues_without_bound(
    tmp_path: Path,
) -> None:
    """300 concurrent full-scan queries on a 200,000-event log while events are appended:
    every append finishes while most admitted reads are still running (they are not queued
    behind them), reads beyond the bound are refused at once with LogBusy, nothing else."""
    db = tmp_path / "e.sqlite3"
    await (await EventLog.open(db, {})).close()
    fill(db, 200_000)
    log = await EventLog.open(db, {})
    try:
        reads = [
            asyncio.ensure_future(
                log.query(state="maintenance") if i % 2 else log.since(199_000 + i, 1000)
            )
            for i in range(300)
        ]
        # the scans (odd) are the slow ones; since() pages (even) are quick
        scans = reads[1::2]
        done_at: list[int] = []
        for i in range(10):
            appended = await asyncio.wait_for(log.append([ev(f"w{i}", 2e9 + i)]), 20)
            assert appended[0].id == 200_001 + i
            done_at.append(sum(1 for r in scans if r.done() and r.exception() is None))
        outcomes = await asyncio.wait_for(asyncio.gather(*reads, return_exceptions=True), 60)
        others = [o for o in outcomes if not isinstance(o, (list, LogBusy))]
        assert others == []
        answered = sum(isinstance(o, list) for o in outcomes[1::2])
        refused = sum(isinstance(o, LogBusy) for o in outcomes)
        assert answered > 0 and refused >= 300 - (READERS + READ_QUEUE)
        assert done_at[0] < answered // 2 and done_at[-1] < answered, (done_at, answered)
        assert len(await log.query(limit=5)) == 5  # and reads work again afterwards
    finally:
        await log.close()


async def test_a_read_that_runs_too_long_is_stopped_as_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query over its time is interrupted (LogBusy), and the next read is answered."""
    db = tmp_path / "e.sqlite3"
    await (await EventLog.open(db, {})).close()
    fill(db, 100_000)
    log = await EventLog.open(db, {})
    try:
        monkeypatch.setattr(eventlog_module, "READ_TIME", 0.0)
        with pytest.raises(LogBusy, match="was stopped"):
            await log.query(state="maintenance")
        monkeypatch.setattr(eventlog_module, "READ_TIME", 30.0)
        assert [r["id"] for r in await log.query(limit=2)] == [100_000, 99_999]
    finally:
        await log.close()


# --- one writer -------------------------------------------------------------------------------

SECOND_WRITER = """
import asyncio, sys
from monitor.outputs.eventlog import EventLog, LogRefused
async def main():
    try:
        log = await EventLog.open(sys.argv[1], {})
    except LogRefused as exc:
        print(exc)
        sys.exit(exc.exit_code)
    await log.close()
    print("opened")
asyncio.run(main())
"""


def open_elsewhere(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SECOND_WRITER, str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


async def test_a_second_writer_in_another_process_is_refused_and_readers_are_not(
    tmp_path: Path,
) -> None:
    """While one process writes the log, another process's open is refused with one line
    naming the holder; a plain reader reads meanwhile; after close the other may open it."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 1.0)])
        second = await asyncio.to_thread(open_elsewhere, db)
        assert second.returncode == 2, second
        line = second.stdout.strip()
        assert "\n" not in line and "Traceback" not in second.stderr
        assert f"is in use by another confmon (pid {os.getpid()}" in line, line
        assert "pass another --state-db" in line
        assert await stored(db) == 1  # a reader in this thread, not the writer's
        await log.append([ev("b", 2.0)])
        assert await stored(db) == 2
    finally:
        await log.close()
    again = await asyncio.to_thread(open_elsewhere, db)
    assert (again.returncode, again.stdout.strip()) == (0, "opened"), again


async def test_another_name_for_a_log_in_use_is_refused_too(tmp_path: Path) -> None:
    """A symbolic link or a hard link to the log one monitor writes is the same file: a
    second monitor opening it by that name is refused (it would write the same ids)."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 1.0)])
        (tmp_path / "symlink.sqlite3").symlink_to(db)
        os.link(db, tmp_path / "hardlink.sqlite3")
        for name, says in (
            ("symlink.sqlite3", f"(pid {os.getpid()}"),
            ("hardlink.sqlite3", "another name of the same file"),
        ):
            other = await asyncio.to_thread(open_elsewhere, tmp_path / name)
            assert other.returncode == 2, other
            assert "is in use by another confmon" in other.stdout and says in other.stdout
            assert "Traceback" not in other.stderr
    finally:
        await log.close()
    again = await asyncio.to_thread(open_elsewhere, tmp_path / "hardlink.sqlite3")
    assert (again.returncode, again.stdout.strip()) == (0, "opened"), again


# --- files that are not a sound confmon log -------------------------------------------------


def garbage(db: Path) -> None:
    db.write_bytes(os.urandom(64 * 1024))


def truncated(db: Path) -> None:
    fill(db, 20_000)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.truncate(db, db.stat().st_size * 6 // 10)


def scribbled(db: Path) -> None:
    """A real log whose second page was overwritten (header intact)."""
    fill(db, 20_000)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with db.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(4096))


def foreign(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Nguyễn')")


def foreign_app(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL)")


def foreign_events(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL, what TEXT)")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (garbage, "is not a confmon event log (not an SQLite database)"),
        (truncated, "is corrupt ("),
        (scribbled, "is corrupt ("),
        (foreign, "is not a confmon event log (another program's database, with the tables"),
        (foreign_app, "is not a confmon event log (another program's database: application"),
        (foreign_events, "is not a confmon event log (its events table has no"),
    ],
)
async def test_a_corrupt_or_foreign_file_is_refused_at_open_and_left_unchanged(
    tmp_path: Path, make: object, said: str
) -> None:
    """One line, exit code 2, what to do; the file's bytes are as they were."""
    db = tmp_path / "e.sqlite3"
    if make in (truncated, scribbled):
        await (await EventLog.open(db, {})).close()
    make(db)  # type: ignore[operator]
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(LogRefused) as caught:
        await asyncio.wait_for(EventLog.open(db, {}), 30)
    text = str(caught.value)
    assert said in text and text.endswith(MOVE_ASIDE) and "\n" not in text, text
    assert caught.value.exit_code == 2
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


async def test_a_fifo_or_a_directory_is_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO with no writer would block the open for ever; it is refused at once."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(LogRefused, match="is not a regular file"):
            await asyncio.wait_for(EventLog.open(path, {}), 20)
    assert not (tmp_path / "fifo.lock").exists()


async def test_a_log_that_breaks_while_running_answers_unavailable_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pages overwritten under a running log: every read raises LogUnavailable (never
    another error), the log says it once, and close still works."""
    db = tmp_path / "e.sqlite3"
    await (await EventLog.open(db, {})).close()
    fill(db, 20_000)
    log = await EventLog.open(db, {})
    try:
        await log._call(lambda: log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        with db.open("r+b") as f:
            for page in range(2, db.stat().st_size // 4096, 3):
                f.seek(page * 4096)
                f.write(os.urandom(4096))
        for _ in range(5):
            with pytest.raises(LogUnavailable, match="cannot be read: the file is corrupt"):
                await log.query(state="maintenance")
            with pytest.raises(LogUnavailable):
                await log.since(0, 1000)
        assert len(messages(caplog, "cannot be read")) == 1
        no_tracebacks(caplog)
    finally:
        await log.close()


async def test_a_log_that_cannot_be_read_is_not_ok_in_the_status(tmp_path: Path) -> None:
    """Reads of a corrupt log answer 503: /api/v1/status says the log is not ok, and why,
    instead of ok while its history cannot be had."""
    db = tmp_path / "e.sqlite3"
    await (await EventLog.open(db, {})).close()
    fill(db, 20_000)
    inv = parse_inventory(
        "profiles: {p: {tcp: {port: 9}}}\npoints: [{id: a, name: A, host: 127.0.0.1, profile: p}]\n"
    )
    m = Monitor(inv, state_db=db)
    await m.start()
    try:
        assert m.eventlog is not None
        assert m.summary()["event_log"]["ok"] is True
        log = m.eventlog
        await log._call(lambda: log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        with db.open("r+b") as f:
            for page in range(2, db.stat().st_size // 4096, 3):
                f.seek(page * 4096)
                f.write(os.urandom(4096))
        with pytest.raises(LogUnavailable):
            await log.query(state="maintenance")
        status = m.summary()["event_log"]
        assert status["ok"] is False
        assert status["error"].startswith("the event log cannot be read: the file is corrupt"), (
            status
        )
    finally:
        with contextlib.suppress(ConfmonError):
            await m.stop()


# --- the file deleted or replaced while running -----------------------------------------------


@pytest.mark.parametrize("which", [("",), ("", "-wal", "-shm", ".lock")])
async def test_a_deleted_log_is_recreated_with_its_history_and_ids_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, which: tuple[str, ...]
) -> None:
    """rm of the log (or of all its files) under a running log: the next write puts a copy
    of the whole log back at the path, said once; ids and last states carry on; the lock
    is taken again, so a second writer is still refused."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 1.0), ev("b", 2.0), ev("c", 3.0)])
        for suffix in which:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db}{suffix}")
        assert [e.id for e in await log.append([ev("d", 4.0), ev("a", 5.0, State.UP)])] == [4, 5]
        assert db.exists() and log.recreated == 1
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT id, point FROM events ORDER BY id").fetchall()
            last = dict(conn.execute("SELECT point, state FROM last_state").fetchall())
        assert rows == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "a")]
        assert last == {"a": "up", "b": "down", "c": "down", "d": "down"}
        assert [e.id for e in await log.since(3, 10)] == [4, 5]  # readers read the new file
        said = messages(caplog, "was deleted while running")
        assert (
            len(said) == 1
            and "re-created it with its history (3 events), ids go on from 4" in said[0]
        ), said
        assert (await asyncio.to_thread(open_elsewhere, db)).returncode == 2
    finally:
        await log.close()
    assert log.unsaved is None
    log = await EventLog.open(db, {})
    try:
        assert log.last_id == 5
        assert (await log.append([ev("e", 6.0)]))[0].id == 6
    finally:
        await log.close()


async def test_a_deletion_is_noticed_without_any_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No state change for a while after the rm: the file is back at the path all the same."""
    monkeypatch.setattr(eventlog_module, "WATCH_INTERVAL", 0.05)
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 1.0)])
        db.unlink()

        async def back() -> bool:
            return db.exists()

        await until(back)
        assert await stored(db) == 1
        assert len(messages(caplog, "was deleted while running")) == 1
    finally:
        await log.close()


async def test_a_replaced_log_is_left_alone_and_this_runs_events_are_saved_beside_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another file moved to the path: it is not written; events go on into the open file,
    which is copied beside it at close; the monitor's stop says where, in one line."""
    db = tmp_path / "e.sqlite3"
    inv = parse_inventory(
        "monitor: {fail_after: 1}\nprofiles: {p: {tcp: {port: 9}}}\n"
        "points: [{id: a, name: A, host: 127.0.0.1, profile: p}]\n"
    )
    m = Monitor(inv, state_db=db)
    await m.start()
    assert m.eventlog is not None and m.events is not None
    await m.eventlog.append([ev("x", 1.0)])
    other = tmp_path / "other.sqlite3"
    foreign(other)
    os.replace(other, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    feed(m, "a", refused())
    await m.events.drain()
    assert m.summary()["event_log"]["ok"] is False
    with pytest.raises(ConfmonError) as caught:
        await m.stop()
    saved = tmp_path / f"e.sqlite3.saved-{os.getpid()}"
    line = str(caught.value)
    assert "was replaced by another file while running" in line and str(saved) in line, line
    assert "\n" not in line and caught.value.exit_code == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    with contextlib.closing(sqlite3.connect(saved)) as conn:
        rows = conn.execute("SELECT id, point FROM events ORDER BY id").fetchall()
    assert rows == [(1, "x"), (2, "a")]
    assert len(messages(caplog, "was replaced by another file")) == 1  # said when noticed
    await m.stop()  # a second stop neither raises nor hangs


async def test_a_log_that_cannot_be_recreated_makes_stop_fail_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log's directory removed and a file put in its place: nothing can be re-created;
    said once while running, and stop raises one line counting what is lost."""
    folder = tmp_path / "state"
    db = folder / "e.sqlite3"
    log = await EventLog.open(db, {})
    await log.append([ev("a", 1.0)])
    for name in os.listdir(folder):
        os.unlink(folder / name)
    folder.rmdir()
    folder.write_text("not a directory\n")
    for i in range(3):
        await log.append([ev(f"p{i}", 2.0 + i)])
    assert log.trouble == "deleted"
    assert len(messages(caplog, "cannot be re-created")) == 1
    await log.close()
    assert log.unsaved is not None
    assert "was deleted while running and could not be re-created" in log.unsaved
    assert "the 3 state changes stored since then are lost" in log.unsaved
    no_tracebacks(caplog)


# --- writes that fail ------------------------------------------------------------------------


async def test_stop_while_writes_fail_raises_one_line_counting_the_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file cannot grow (SQLITE_FULL): stop raises ConfmonError after closing
    everything, saying how many state changes are not stored, where, and why."""
    db = tmp_path / "e.sqlite3"
    inv = parse_inventory(
        "monitor: {fail_after: 1}\nprofiles: {p: {tcp: {port: 9}}}\n"
        "points: ["
        + ", ".join(f"{{id: p{i}, name: P{i}, host: 127.0.0.1, profile: p}}" for i in range(12))
        + "]\n"
    )
    m = Monitor(inv, state_db=db)
    await m.start()
    assert m.eventlog is not None and m.events is not None
    eventlog = m.eventlog
    await eventlog._call(disk_full, eventlog)
    for i in range(12):
        feed(m, f"p{i}", refused())
    await m.events.drain()
    status = m.summary()["event_log"]
    assert status["ok"] is False and status["error"] == "disk full"
    with pytest.raises(ConfmonError) as caught:
        await asyncio.wait_for(m.stop(), 60)
    assert str(caught.value) == f"12 state changes could not be stored in {db} (disk full)"
    assert caught.value.exit_code == 1
    assert m.eventlog is None and eventlog._db is None  # closed before raising
    assert len(messages(caplog, "cannot store state changes in the event log (disk full)")) == 1
    no_tracebacks(caplog)


class Spy:
    """The real event log, with the size of every transaction that committed."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.committed: list[int] = []

    @property
    def last_id(self) -> int:
        return self.log.last_id

    async def append(self, events: Sequence[Event]) -> list[Event]:
        stored = await self.log.append(events)
        self.committed.append(len(stored))
        return stored

    async def since(self, after_id: int, limit: int) -> list[Event]:
        return await self.log.since(after_id, limit)


async def test_a_full_log_retries_in_small_chunks_keeps_a_bounded_backlog_and_says_it_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the file cannot grow, events wait (at most the backlog cap: the oldest are
    dropped and counted); live subscribers get nothing unstored but the status says why;
    once space is free they are stored in transactions of at most 500, in order, and the
    log said it once when it began and once when it ended, with the counts."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    spy = Spy(log)
    stream = EventStream(spy, retry=0.01, retry_max=0.05, backlog=2_000)
    stream.start()
    sub = stream.subscribe(size=5_000)
    try:
        await log._call(disk_full, log)
        for batch in range(10):
            stream.publish([ev(f"p{batch}-{i}", batch * 1000.0 + i) for i in range(300)])
            await asyncio.sleep(0.02)
        await stream.drain()  # returns once the log fails
        # (the pages the file has still take a few rows before it is full)
        early = sum(spy.committed)
        assert stream.failing and 0 < stream.pending <= 2_000 and stream.dropped > 0
        assert early + stream.pending + stream.dropped == 3_000
        assert stream.status() == {
            "ok": False,
            "pending": stream.pending,
            "dropped": stream.dropped,
            "error": "disk full",
        }
        assert sub.queue.qsize() == early  # only what is stored is fanned out
        await log._call(space_freed, log)

        async def caught_up() -> bool:
            return not stream.failing and stream.pending == 0

        await until(caught_up, 30)
        kept = 3_000 - stream.dropped
        assert sum(spy.committed) == kept and max(spy.committed) <= 500
        got = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert [m["id"] for m in got if m is not None] == list(range(1, kept + 1))
        assert got[-1] is not None and got[-1]["point"] == "p9-299"  # the newest are kept
        assert len(messages(caplog, "cannot store state changes")) == 1
        assert len(messages(caplog, "backlog is over 2000")) == 1
        recovered = messages(caplog, "the event log is written again")
        assert len(recovered) == 1, recovered
        late = re.search(r"(\d+) state changes were stored late, (\d+) dropped", recovered[0])
        assert late is not None and int(late[2]) == stream.dropped
        assert kept - early <= int(late[1]) <= kept
        no_tracebacks(caplog)
    finally:
        await stream.close()
        await log.close()


async def test_a_little_free_space_stores_some_events_at_once(tmp_path: Path) -> None:
    """Room for a few pages only: a transaction of 500 does not fit but smaller ones do, so
    events are stored as soon as that room exists (not only once the whole backlog fits)."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    spy = Spy(log)
    stream = EventStream(spy, retry=0.01, retry_max=0.05)
    stream.start()
    try:
        await log._call(disk_full, log)
        stream.publish([ev(f"p{i}", float(i)) for i in range(1_000)])
        await stream.drain()
        assert stream.failing

        def a_little(db_: sqlite3.Connection) -> None:
            pages = db_.execute("PRAGMA page_count").fetchone()[0]
            db_.execute(f"PRAGMA max_page_count = {pages + 6}")

        await log._call(a_little, log.db)

        async def some() -> bool:
            return bool(spy.committed)

        await until(some)
        assert 0 < max(spy.committed) < 500, spy.committed
    finally:
        await log._call(space_freed, log)
        await stream.close()
        await log.close()


# --- a writer that crashes, a disk that hangs --------------------------------------------------


async def test_a_crashed_writer_is_said_once_fails_readiness_and_its_backlog_is_stored_at_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the writer task (a subscriber that raises on a state change): said once
    with its traceback, /readyz turns 503 and the summary says the log is not written;
    what was queued after the crash is still stored by the last flush at stop."""
    db = tmp_path / "e.sqlite3"
    inv = parse_inventory(
        "monitor: {fail_after: 1}\nprofiles: {p: {tcp: {port: 9}}}\n"
        "points: [{id: a, name: A, host: 127.0.0.1, profile: p},"
        " {id: b, name: B, host: 127.0.0.1, profile: p}]\n"
    )
    m = Monitor(inv, state_db=db)
    await m.start()
    assert m.events is not None
    sub = m.subscribe()
    put = sub.put

    def buggy(message: dict[str, object] | None) -> None:
        if message is not None and message.get("type") == "state":
            raise RuntimeError("a bug in a subscriber")
        put(message)

    sub.put = buggy  # type: ignore[method-assign]
    feed(m, "a", refused())

    async def crashed() -> bool:
        return not m.ready

    await until(crashed)
    feed(m, "b", refused())
    status = m.summary()["event_log"]
    assert status["ok"] is False and "a bug in a subscriber" in status["error"]
    assert status["pending"] == 1
    await asyncio.wait_for(m.stop(), 60)
    said = [r for r in caplog.records if "the event writer stopped" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None
    assert await stored(db) == 2


async def test_close_is_bounded_when_the_log_thread_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that never returns (a hung disk): the stream's close and the log's close
    each return within their bound, say so, and count the write as not stored."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    release = threading.Event()

    def hang(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        release.wait(60)

    log.add_stage(hang)
    stream = EventStream(log)
    stream.start()
    try:
        stream.publish([ev("a", 1.0)])
        await asyncio.sleep(0.2)
        assert await asyncio.wait_for(stream.close(limit=0.5), 20) == 1
        await asyncio.wait_for(log.close(limit=0.5), 20)
        assert len(messages(caplog, "did not close within 0.5s")) == 1
        assert log.unsaved is not None and "did not close" in log.unsaved
    finally:
        release.set()
    logging.getLogger("confmon").info("released")


async def test_open_waits_out_a_short_sqlite_lock_held_by_another_program(tmp_path: Path) -> None:
    """Another program holding the file locked for a moment (a backup): the open waits for
    it (SQLite's busy timeout) and then works; the writer lock is not involved."""
    db = tmp_path / "e.sqlite3"
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode=DELETE")
        other.execute("BEGIN EXCLUSIVE")
        opening = asyncio.ensure_future(EventLog.open(db, {}))
        await asyncio.sleep(1.0)
        assert not opening.done()
        other.execute("ROLLBACK")
        log = await asyncio.wait_for(opening, 20)
    finally:
        other.close()
    try:
        assert (await log.append([ev("a", 1.0)]))[0].id == 1
    finally:
        await log.close()
