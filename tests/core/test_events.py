"""The state-change stream: durable first, ids for life, stages in the same transaction, resync."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from monitor.core.events import RESYNC, Event, EventStream, State
from monitor.outputs.eventlog import EventLog


def ev(point: str, at: float, to: State = State.DOWN) -> Event:
    return Event(point, State.UP, to, "test", at, cause=point, name=point.upper(), district="d")


async def test_live_subscribers_see_an_event_only_after_it_is_stored(tmp_path: Path) -> None:
    """While the log's transaction has not committed, no live subscriber has the event."""
    log = await EventLog.open(tmp_path / "e.sqlite3", {})
    gate = asyncio.Event()
    original = log.append

    async def slow_append(events: Sequence[Event]) -> list[Event]:
        await gate.wait()
        return await original(events)

    log.append = slow_append  # type: ignore[method-assign]
    stream = EventStream(log)
    stream.start()
    sub = stream.subscribe()
    try:
        stream.publish([ev("a", 1.0), ev("b", 2.0)])
        await asyncio.sleep(0.2)
        assert sub.queue.empty() and log.last_id == 0
        gate.set()
        first = await asyncio.wait_for(sub.queue.get(), 5)
        second = await asyncio.wait_for(sub.queue.get(), 5)
        assert first is not None and second is not None
        assert (first["point"], first["id"]) == ("a", 1) and (second["point"], second["id"]) == (
            "b",
            2,
        )
        assert (await log.since(0, 10))[1].point == "b"
    finally:
        await stream.close()
        await log.close()


async def test_ids_increase_for_the_life_of_the_file(tmp_path: Path) -> None:
    """Ids continue after a reopen, and after retention deleted every event."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    assert [e.id for e in await log.append([ev("a", 1.0), ev("b", 2.0)])] == [1, 2]
    await log.close()
    log = await EventLog.open(db, {})
    assert [e.id for e in await log.append([ev("c", 3.0)])] == [3]
    assert await log.prune(now=10.0 + log.retention) == 3
    await log.close()
    log = await EventLog.open(db, {})
    try:
        assert log.last_id == 3
        stored = await log.append([ev("d", 4.0)])
        assert stored[0].id == 4
        back = await log.since(0, 10)
        assert [(e.id, e.point, e.name, e.cause, e.district) for e in back] == [
            (4, "d", "D", "d", "d")
        ]
    finally:
        await log.close()


async def test_a_stage_shares_the_events_transaction(tmp_path: Path) -> None:
    """A durable stage that fails rolls the events back; the stream retries and stores once."""
    log = await EventLog.open(tmp_path / "e.sqlite3", {})
    outbox: list[int] = []
    failing = [True]

    def stage(db: sqlite3.Connection, events: Sequence[Event]) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS outbox (event INTEGER)")
        db.executemany("INSERT INTO outbox VALUES (?)", [(e.id,) for e in events])
        if failing[0]:
            raise sqlite3.OperationalError("disk I/O error")
        outbox.extend(e.id for e in events)

    log.add_stage(stage)
    stream = EventStream(log, retry=0.05)
    stream.start()
    sub = stream.subscribe()
    try:
        stream.publish([ev("a", 1.0)])
        await asyncio.sleep(0.3)
        assert stream.failing and sub.queue.empty() and await log.since(0, 10) == []
        failing[0] = False
        message = await asyncio.wait_for(sub.queue.get(), 5)
        assert message is not None and message["id"] == 1
        assert [e.id for e in await log.since(0, 10)] == [1] and outbox == [1]
        rows = await log._call(lambda: log.db.execute("SELECT event FROM outbox").fetchall())
        assert rows == [(1,)]  # the failed attempts left nothing behind
    finally:
        await stream.close()
        await log.close()


async def test_a_slow_subscriber_is_told_to_resync_and_can(tmp_path: Path) -> None:
    """A full queue is emptied and replaced by RESYNC; the log has everything it missed."""
    log = await EventLog.open(tmp_path / "e.sqlite3", {})
    stream = EventStream(log)
    stream.start()
    sub = stream.subscribe(size=5)
    try:
        stream.publish([ev(f"p{i}", float(i)) for i in range(20)])
        await stream.drain()
        assert sub.overflows >= 1
        messages = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert RESYNC in messages
        seen = [m["id"] for m in messages if m is not None and m.get("type") == "state"]
        missed = await stream.replay(seen[0] - 1 if seen else 0, 100)
        assert [e.id for e in missed][-1] == 20
    finally:
        await stream.close()
        await log.close()


async def test_close_stores_what_is_queued(tmp_path: Path) -> None:
    """Events published just before close are in the log afterwards."""
    db = tmp_path / "e.sqlite3"
    log = await EventLog.open(db, {})
    stream = EventStream(log)
    stream.start()
    stream.publish([ev(f"p{i}", float(i)) for i in range(2500)])  # more than one chunk
    assert await stream.close() == 0
    await log.close()
    log = await EventLog.open(db, {})
    try:
        assert log.last_id == 2500
    finally:
        await log.close()


@pytest.mark.parametrize("n", [1, 3])
async def test_close_with_a_dead_store_reports_the_loss(tmp_path: Path, n: int) -> None:
    """If the log cannot be written at all, close says how many events were not stored."""
    log = await EventLog.open(tmp_path / "e.sqlite3", {})

    async def broken(events: Sequence[Event]) -> list[Event]:
        raise sqlite3.OperationalError("database or disk is full")

    log.append = broken  # type: ignore[method-assign]
    stream = EventStream(log, retry=0.05)
    stream.start()
    stream.publish([ev(f"p{i}", float(i)) for i in range(n)])
    try:
        assert await stream.close(limit=0.5) == n
    finally:
        await log.close()
