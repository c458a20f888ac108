"""The SQLite event log: durable, filtered, paged, and the source of restart state."""

from __future__ import annotations

from pathlib import Path

from monitor.core.health import Event, State
from monitor.outputs.eventlog import EventLog


def ev(point: str, prev: State, to: State, at: float) -> Event:
    return Event(
        point,
        prev,
        to,
        f"{prev} -> {to}",
        at,
        {"rtt": 0.01, "jitter": None, "loss": 0.0, "mos": None},
    )


async def test_events_survive_reopen_and_filter_and_page(tmp_path: Path) -> None:
    """Events written, closed and reopened are all there, newest first, filterable and pageable."""
    db = tmp_path / "events.sqlite3"
    districts = {"d": "d", "d.a": "d", "m": "m"}
    log = await EventLog.open(db, districts)
    await log.append(
        [ev("d", State.UNKNOWN, State.UP, 100.0), ev("d.a", State.UNKNOWN, State.UP, 101.0)]
    )
    await log.append(
        [ev("d", State.UP, State.DOWN, 200.0), ev("d.a", State.UP, State.UNREACHABLE, 201.0)]
    )
    await log.append([ev("m", State.UNKNOWN, State.DEGRADED, 300.0)])
    await log.close()

    log = await EventLog.open(db, districts)
    try:
        rows = await log.query()
        assert [r["point"] for r in rows] == ["m", "d.a", "d", "d.a", "d"]
        assert (
            rows[0]["metrics"]["rtt"] == 0.01
            and rows[0]["from"] == "unknown"
            and rows[0]["to"] == "degraded"
        )
        assert [r["point"] for r in await log.query(district="d", state="up")] == ["d.a", "d"]
        assert [r["at"] for r in await log.query(since=150, until=250)] == [201.0, 200.0]
        page1 = await log.query(limit=2)
        page2 = await log.query(limit=2, before_id=page1[-1]["id"])
        assert [r["at"] for r in page1 + page2] == [300.0, 201.0, 200.0, 101.0]
        last = await log.last_states()
        assert last == {
            "d": (State.DOWN, 200.0, "up -> down"),
            "d.a": (State.UNREACHABLE, 201.0, "up -> unreachable"),
            "m": (State.DEGRADED, 300.0, "unknown -> degraded"),
        }
        assert await log.prune(now=250.0 + log.retention) == 4
        assert [r["point"] for r in await log.query()] == ["m"]
    finally:
        await log.close()


async def test_stop_writes_events_queued_behind_a_slow_query(tmp_path: Path) -> None:
    """SIGTERM while the log's thread is busy (a long API query): the state change still lands."""
    import asyncio
    import sqlite3
    import time

    from monitor.core.results import ProbeResult
    from monitor.core.service import Monitor
    from monitor.inventory import parse_inventory
    from tests.outputs.fixtures import feed

    db = tmp_path / "events.sqlite3"
    inv = parse_inventory(
        "monitor: {fail_after: 1}\nprofiles: {p: {tcp: {port: 9}}}\n"
        "points: [{id: a, name: A, host: 127.0.0.1, profile: p}]\n"
    )
    m = Monitor(inv, state_db=db)
    await m.start()
    assert m.eventlog is not None
    slow = asyncio.get_running_loop().run_in_executor(m.eventlog._pool, time.sleep, 1.0)
    feed(
        m,
        "a",
        [
            ProbeResult(
                probe="tcp", target="x", ok=False, at=time.time(), duration=0.0, error="refused"
            )
        ],
    )
    await asyncio.sleep(0.4)  # the writer has queued its batch behind the slow call
    await m.stop()
    await slow
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT previous, state FROM events").fetchall() == [
            ("unknown", "down")
        ]
