"""Event logs built by hand for the report's tests: real EventLog files, exact times."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from monitor.core.events import Event, State
from monitor.inventory import Inventory, parse_inventory
from monitor.outputs.eventlog import EventLog, RunInfo
from tests.core.test_health import CONFIG as HEALTH_CONFIG

#: a window start; the tests' times are offsets from it (2026-05-28 08:00 in Hanoi)
T0 = 1_779_930_000.0

#: the health model's tests' inventory: d (Huyện Ba Vì: headquarters and three communes) and
#: m (Quận Ba Đình, a headquarters alone)
CONFIG = HEALTH_CONFIG

DISTRICTS = {"d": "d", "d.a": "d", "d.b": "d", "d.c": "d", "m": "m"}


def inventory() -> Inventory:
    return parse_inventory(CONFIG)


def change(
    point: str,
    previous: State,
    state: State,
    at: float,
    *,
    reason: str = "",
    cause: str = "",
    evidence: float | None = None,
    metrics: dict[str, float | None] | None = None,
    name: str = "",
) -> Event:
    return Event(
        point,
        previous,
        state,
        reason or f"{previous.value} -> {state.value}",
        T0 + at,
        metrics or {"rtt": 0.01, "jitter": 0.002, "loss": 0.0, "mos": 4.3},
        cause=cause or point,
        name=name or point,
        district=DISTRICTS.get(point, point),
        evidence=None if evidence is None else T0 + evidence,
    )


def first_results(at: float, points: Sequence[str] = tuple(DISTRICTS)) -> list[Event]:
    return [change(p, State.UNKNOWN, State.UP, at, evidence=at - 1) for p in points]


async def write_log(
    path: Path,
    events: Sequence[Event],
    runs: Sequence[tuple[float, float, float | None]] | None = ((-60.0, 3600.0, 3600.0),),
) -> Path:
    """A log at ``path`` with ``events`` stored by the real EventLog, and ``runs`` (start,
    alive, stop as offsets from T0; stop None: it died) in place of the run that opening it
    recorded; ``runs=None``: a log as an older confmon left it, without a runs table."""
    log = await EventLog.open(path, DISTRICTS, run=RunInfo("Hội nghị thử", "Asia/Ho_Chi_Minh", 5.0))
    try:
        await log.append(list(events))
    finally:
        await log.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        if runs is None:
            db.execute("DROP TABLE runs")
        else:
            db.execute("DELETE FROM runs")
            db.executemany(
                "INSERT INTO runs (started, alive, stopped, pid, name, timezone, interval)"
                " VALUES (?, ?, ?, 1, 'Hội nghị thử', 'Asia/Ho_Chi_Minh', 5.0)",
                [(T0 + a, T0 + b, None if c is None else T0 + c) for a, b, c in runs],
            )
    return path
