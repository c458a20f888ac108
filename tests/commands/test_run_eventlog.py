"""`confmon run` and its event log file: one line and exit 2 for a file it cannot use, a
second monitor on the same file refused, and the file deleted under a running monitor put
back with its history. Real processes; points on 127.61.0.0/16 whose TCP port is closed
(so they go down at once and every added point makes an event)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from monitor.inventory import parse_inventory
from tests.commands.running import Running, count_events, events, start_run, until
from tests.helpers import ROOT, free_port
from tests.outputs.test_eventlog_disk_full import fill_up, tmpfs

__all__ = ["tmpfs"]  # the fixture (a small tmpfs, root only)

MOVE_ASIDE = "move it aside or pass another --state-db"


def config(points: int) -> str:
    listed = ", ".join(
        f"{{id: p{i}, name: P{i}, host: 127.61.0.{i + 1}, profile: closed}}" for i in range(points)
    )
    return (
        "monitor: {interval: 1s, fail_after: 1, stale_after: 10s}\n"
        "profiles: {closed: {tcp: {port: 9, timeout: 500ms}}}\n"
        f"points: [{listed}]\n"
    )


def write_config(tmp_path: Path, points: int, name: str = "lab-hanoi.yaml") -> Path:
    """The config (by default where start_run looks for it)."""
    path = tmp_path / name
    path.write_text(config(points), encoding="utf-8")
    return path


async def run_to_exit(tmp_path: Path, db: Path) -> tuple[int, str]:
    """``confmon run`` that is expected to exit by itself; (code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "run",
        "-c",
        str(write_config(tmp_path, 2, "second.yaml")),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--state-db",
        str(db),
        "--no-icmp",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def garbage(db: Path) -> None:
    db.write_bytes(os.urandom(20_000))


def foreign(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.close()


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (garbage, "is not a confmon event log (not an SQLite database)"),
        (foreign, "is not a confmon event log (another program's database, with the tables"),
    ],
)
async def test_run_refuses_a_file_that_is_not_its_event_log(
    tmp_path: Path, make: object, said: str
) -> None:
    """One line on stderr, exit 2, no traceback, nothing probed, the file unchanged."""
    db = tmp_path / "state.sqlite3"
    make(db)  # type: ignore[operator]
    before = db.read_bytes()
    code, err = await run_to_exit(tmp_path, db)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"confmon: {db} {said}"), err
    assert lines[0].endswith(MOVE_ASIDE)
    assert db.read_bytes() == before


def json_log(run: Running) -> list[dict[str, object]]:
    return [json.loads(line) for line in run.log().splitlines() if line.startswith("{")]


async def test_a_second_monitor_is_refused_and_a_deleted_log_comes_back(tmp_path: Path) -> None:
    """With one monitor running: a second on its --state-db exits 2 naming the first's pid;
    the log deleted under the first is put back with its history (said once), new state
    changes land in it with ids that go on, and the first still exits 0."""
    write_config(tmp_path, 3)
    inv = parse_inventory(config(3))
    run = await start_run(tmp_path, inv)
    try:

        async def three_down() -> bool:
            return run.state_db.exists() and count_events(run.state_db) == 3

        await until(three_down, 30, "3 points down in the event log")

        code, err = await run_to_exit(tmp_path, run.state_db)
        assert code == 2, err
        assert err.strip() == (
            f"confmon: {run.state_db} is in use by another confmon (pid {run.proc.pid}, which "
            f"holds {run.state_db}.lock); stop it or pass another --state-db"
        )

        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{run.state_db}{suffix}")

        async def back() -> bool:
            return run.state_db.exists()

        await until(back, 20, "the event log back at its path")
        assert [r[0] for r in events(run.state_db)] == [1, 2, 3]

        write_config(tmp_path, 5)  # two more points: two more state changes
        run.proc.send_signal(1)  # SIGHUP

        async def five() -> bool:
            return count_events(run.state_db) == 5

        await until(five, 30, "the new points' events in the re-created log")
        assert [r[0] for r in events(run.state_db)] == [1, 2, 3, 4, 5]
        assert await run.stop() == 0
    finally:
        if run.proc.returncode is None:
            run.proc.kill()
            await run.proc.wait()
        await run.session.close()
    said = [r for r in json_log(run) if "was deleted while running" in str(r["message"])]
    assert len(said) == 1 and "re-created it with its history (3 events)" in str(said[0])
    assert "Traceback" not in run.log()


async def test_stopping_on_a_full_disk_exits_1_with_one_line(tmp_path: Path, tmpfs: Path) -> None:
    """The disk under --state-db fills while running: new state changes wait (the status
    says why), and SIGTERM exits 1 with one line counting them, without a traceback."""
    write_config(tmp_path, 3)
    run = await start_run(tmp_path, parse_inventory(config(3)), state_db=tmpfs / "e.sqlite3")
    try:

        async def three_down() -> bool:
            return run.state_db.exists() and count_events(run.state_db) == 3

        await until(three_down, 30, "3 points down in the event log")
        fill_up(tmpfs / "filler")
        write_config(tmp_path, 5)
        run.proc.send_signal(1)  # SIGHUP: two more points, two state changes

        async def waiting() -> bool:
            status = (await run.get("/api/v1/status")).get("event_log") or {}
            return status.get("error") == "disk full" and status.get("pending") == 2

        await until(waiting, 30, "two state changes waiting for the full disk")
        code = await run.stop(within=60)
    finally:
        if run.proc.returncode is None:
            run.proc.kill()
            await run.proc.wait()
        await run.session.close()
    lines = run.log().strip().splitlines()
    assert code == 1, lines[-5:]
    assert (
        lines[-1] == f"confmon: 2 state changes could not be stored in {run.state_db} (disk full)"
    )
    assert "Traceback" not in run.log()
