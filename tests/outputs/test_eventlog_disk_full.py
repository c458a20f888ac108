"""A really full disk under the event log: a small tmpfs, filled by another file, then freed.

Needs root (``mount -t tmpfs``); each test mounts its own tmpfs on a directory under
tmp_path and unmounts it (lazily) when done."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.core.events import CHUNK, EventStream
from monitor.core.health import Event, State
from monitor.core.results import ProbeResult
from monitor.core.service import Monitor
from monitor.errors import ConfmonError
from monitor.inventory import parse_inventory
from monitor.outputs.eventlog import EventLog
from tests.helpers import require_binary, require_root
from tests.outputs.fixtures import feed
from tests.outputs.test_eventlog_hostile import Spy, messages, no_tracebacks, until


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs (unmounted afterwards)."""
    require_root("mounting a tmpfs")
    mount, umount = require_binary("mount"), require_binary("umount")
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run([mount, "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run([umount, "-l", str(where)], check=True)


def fill_up(path: Path) -> int:
    """Write ``path`` until the file system is full; returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for block in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    return path.stat().st_size


def ev(i: int, points: int = 1_000_000) -> Event:
    reason = f"2 failed cycles (sip: no response within 1s (2 sent)) #{i}" + " " * 100
    point = f"p{i % points}"
    return Event(point, State.UP, State.DOWN, reason, 1e9 + i, {"rtt": 0.01, "loss": 0.0})


async def test_a_full_disk_is_said_once_retried_in_chunks_and_stored_when_space_returns(
    tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills: one line; nothing is fanned out that is not stored; a little space
    freed stores some events at once (small transactions); all space freed stores all,
    in order, with ids 1..n, in transactions of at most CHUNK; one line on recovery."""
    db = tmpfs / "e.sqlite3"
    log = await EventLog.open(db, {})
    spy = Spy(log)
    stream = EventStream(spy, retry=0.02, retry_max=0.2)
    stream.start()
    sub = stream.subscribe(size=10_000)
    filler = tmpfs / "filler"
    try:
        size = fill_up(filler)
        with pytest.raises(OSError) as full:
            (tmpfs / "probe").write_bytes(b"x" * 65536)
        assert full.value.errno == errno.ENOSPC
        n = 3_000
        stream.publish([ev(i) for i in range(n)])

        async def failing() -> bool:
            return stream.failing

        await until(failing)
        assert spy.committed == [] and sub.queue.empty()
        assert stream.status()["error"] == "disk full"

        os.truncate(filler, size - 256 * 1024)  # room for some, not for all

        async def some() -> bool:
            return bool(spy.committed)

        await until(some, 30)
        assert stream.pending > 0

        filler.unlink()

        async def all_stored() -> bool:
            return not stream.failing and stream.pending == 0

        await until(all_stored, 60)
        assert sum(spy.committed) == n and max(spy.committed) <= CHUNK
        with contextlib.closing(sqlite3.connect(db)) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
        assert ids == list(range(1, n + 1))
        got = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert [m["id"] for m in got if m is not None] == ids
        assert len(messages(caplog, "cannot store state changes in the event log (disk full)")) == 1
        recovered = messages(caplog, "the event log is written again")
        assert len(recovered) == 1 and re.search(
            r"\d+ state changes were stored late, 0 dropped", recovered[0]
        ), recovered
        no_tracebacks(caplog)
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        await stream.close()
        await log.close()


async def test_stopping_on_a_full_disk_counts_what_is_lost_in_one_line(
    tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk is full when the monitor stops: the stop raises one line naming how many
    state changes are not stored, where and why, after everything is closed."""
    db = tmpfs / "e.sqlite3"
    inv = parse_inventory(
        "monitor: {fail_after: 1}\nprofiles: {p: {tcp: {port: 9}}}\npoints: ["
        + ", ".join(f"{{id: p{i}, name: P{i}, host: 127.0.0.1, profile: p}}" for i in range(40))
        + "]\n"
    )
    m = Monitor(inv, state_db=db)
    await m.start()
    assert m.events is not None and m.eventlog is not None
    eventlog = m.eventlog
    try:
        fill_up(tmpfs / "filler")
        for i in range(40):
            result = ProbeResult(
                probe="tcp", target="x", ok=False, at=time.time(), duration=0.0, error="refused"
            )
            feed(m, f"p{i}", [result])
        await m.events.drain()
        with pytest.raises(ConfmonError) as caught:
            await asyncio.wait_for(m.stop(), 60)
    finally:
        await m.stop()
    assert str(caught.value) == f"40 state changes could not be stored in {db} (disk full)"
    assert eventlog._db is None and m.eventlog is None
    no_tracebacks(caplog)


async def test_a_deleted_log_on_a_nearly_full_disk_is_recreated_without_the_old_history(
    tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log deleted when a full copy of it does not fit (its space is still held by the
    open file): the new file at the path has the ids and last states, said in one line, and
    later events are stored in it."""
    db = tmpfs / "e.sqlite3"
    log = await EventLog.open(db, {})
    try:
        for start in range(0, 3_000, 500):
            await log.append([ev(i, 20) for i in range(start, start + 500)])
        await log._call(lambda: log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        filler = tmpfs / "filler"
        size = fill_up(filler)
        os.truncate(filler, size - 192 * 1024)  # far less than the log's size
        assert db.stat().st_size > 4 * 192 * 1024
        db.unlink()
        stored = await log.append([ev(3_000, 20)])
        assert stored[0].id == 3_001 and log.recreated == 1
        said = messages(caplog, "was deleted while running")
        assert (
            len(said) == 1
            and "without the older history (copying it failed: disk full)" in (said[0])
        ), said
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT id FROM events").fetchall() == [(3_001,)]
            last = dict(conn.execute("SELECT point, reason FROM last_state").fetchall())
        assert (
            len(last) == 20 and last["p0"].startswith("2 failed cycles") and "#3000" in last["p0"]
        )
        assert "#2999" in last["p19"]  # carried over from the deleted file
        assert (await log.append([ev(3_001, 20)]))[0].id == 3_002
    finally:
        await log.close()
    assert log.unsaved is None
