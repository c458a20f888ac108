"""What the event log keeps for the session report: when a monitor ran (``runs``), the evidence
time of each change, an older log brought up to date, and the read-only open of a log."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from monitor.core.health import Event, State
from monitor.outputs import eventlog as eventlog_module
from monitor.outputs.eventlog import EventLog, LogRefused, RunInfo, open_read_only
from tests.helpers import eventually


def ev(point: str, at: float, evidence: float | None = None) -> Event:
    return Event(point, State.UP, State.DOWN, "2 failed cycles", at, {}, evidence=evidence)


def runs(db: Path) -> list[tuple[float, float, float | None, str, str, float | None]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT started, alive, stopped, name, timezone, interval FROM runs ORDER BY id"
        ).fetchall()


async def test_each_open_is_a_run_with_its_start_heartbeat_and_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row per open: started at open, alive moved by the heartbeat while open, stopped at
    close, with the monitor's name and time zone; a second open is a second row."""
    monkeypatch.setattr(eventlog_module, "WATCH_INTERVAL", 0.05)
    monkeypatch.setattr(eventlog_module, "HEARTBEAT", 0.1)
    db = tmp_path / "e.sqlite3"
    before = time.time()
    log = await EventLog.open(db, {}, run=RunInfo("Hội nghị", "Asia/Ho_Chi_Minh", 5.0))
    try:
        [(started, alive, stopped, name, tz, interval)] = runs(db)
        assert before <= started <= alive and stopped is None
        assert (name, tz, interval) == ("Hội nghị", "Asia/Ho_Chi_Minh", 5.0)
        await eventually(lambda: runs(db)[0][1] > alive, 20, "a heartbeat")
    finally:
        await log.close()
    [(started, alive, stopped, *_)] = runs(db)
    assert stopped is not None and started <= alive <= stopped <= time.time()
    await (await EventLog.open(db, {})).close()
    assert len(runs(db)) == 2 and runs(db)[1][3:5] == ("", "")


async def test_the_evidence_of_a_change_is_stored_and_read_back(tmp_path: Path) -> None:
    """Event.evidence survives the log (None stays None)."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 100.0, evidence=93.5), ev("b", 101.0)])
        got = await log.since(0)
    finally:
        await log.close()
    assert [(e.point, e.evidence) for e in got] == [("a", 93.5), ("b", None)]


def first_release_log(db: Path) -> None:
    """A log as the first confmon wrote it: no cause, name, evidence, and no runs table."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,"
            " point TEXT NOT NULL, district TEXT NOT NULL, previous TEXT NOT NULL,"
            " state TEXT NOT NULL, reason TEXT NOT NULL, metrics TEXT NOT NULL);"
            "CREATE TABLE last_state (point TEXT PRIMARY KEY, state TEXT NOT NULL,"
            " since REAL NOT NULL, reason TEXT NOT NULL);"
            "INSERT INTO events (at, point, district, previous, state, reason, metrics)"
            " VALUES (50.0, 'a', 'a', 'unknown', 'up', 'ok', '{}');"
        )


async def test_an_older_log_gets_the_runs_table_and_the_evidence_column(tmp_path: Path) -> None:
    """Opened by a monitor, a first-release log is migrated: its events are kept, new ones
    carry their evidence, and the run is recorded."""
    db = tmp_path / "old.sqlite3"
    first_release_log(db)
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 100.0, evidence=90.0)])
        got = await log.since(0)
    finally:
        await log.close()
    assert [(e.at, e.evidence) for e in got] == [(50.0, None), (100.0, 90.0)]
    assert len(runs(db)) == 1


async def test_a_read_only_open_takes_no_lock_and_changes_nothing(tmp_path: Path) -> None:
    """While a monitor writes the log, a reader opens it (no 'in use' refusal) and sees what
    is stored; an older log is read as it is, not migrated."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        await log.append([ev("a", 100.0)])
        with contextlib.closing(open_read_only(db)) as conn:
            assert conn.execute("SELECT point FROM events").fetchall() == [("a",)]
            with pytest.raises(sqlite3.OperationalError):
                conn.execute("DELETE FROM events")
    finally:
        await log.close()
    old = tmp_path / "old.sqlite3"
    first_release_log(old)
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    with contextlib.closing(open_read_only(old)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: None, "no such file; pass the event log a monitor writes (its --state-db)"),
        (lambda p: p.mkdir(), "is not a regular file"),
        (lambda p: p.write_bytes(b""), "is not a confmon event log (it is empty)"),
        (lambda p: p.write_text("at,point\n"), "is not a confmon event log (not an SQLite"),
    ],
)
def test_a_read_only_open_refuses_what_is_not_a_log_in_one_line(
    tmp_path: Path, make: object, said: str
) -> None:
    """Missing, a directory, an empty file, a CSV: LogRefused, one line, exit code 2."""
    path = tmp_path / "e.sqlite3"
    make(path)  # type: ignore[operator]
    with pytest.raises(LogRefused) as caught:
        open_read_only(path)
    assert said in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
