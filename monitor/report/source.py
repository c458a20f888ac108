"""What the session report reads from an event log: the changes, the state before the window,
the monitor's runs. Read-only, synchronous, and checked at this boundary.

The log is opened with :func:`monitor.outputs.eventlog.open_read_only` (no lock: a monitor
may be writing it). A log of an older confmon may lack columns (``cause``, ``name``,
``evidence``) or the ``runs`` table; they read as empty. Every row is checked here: a time
that is not a finite number, a state that is not one of the six, metrics that are not a
JSON object of numbers are refused with one line (:class:`BadLog`, exit 2), so that the
computation can trust what it gets.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from monitor.core.events import State
from monitor.errors import ConfmonError
from monitor.outputs.eventlog import HEARTBEAT, open_read_only, why
from monitor.text import printable

__all__ = ["STILL_RUNNING", "BadLog", "Change", "LogExtract", "LogFile", "Run", "read_log"]

#: a run without a stop whose last heartbeat is this recent is taken to be still running
STILL_RUNNING = 3 * HEARTBEAT

_STATES = frozenset(s.value for s in State)
_FIGURES = ("rtt", "jitter", "loss", "mos")


class BadLog(ConfmonError):
    """The log holds something confmon never writes (a hand-edited or foreign row)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Change:
    """One stored state change (a row of ``events``), checked."""

    id: int
    at: float
    point: str
    district: str
    name: str
    previous: State
    state: State
    reason: str
    cause: str
    evidence: float | None
    metrics: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Run:
    """A monitor's time writing the log: from ``started`` to ``until`` (its stop; its last
    heartbeat if it died without one; now if it is still running)."""

    started: float
    until: float
    stopped: bool
    name: str
    timezone: str
    interval: float | None


@dataclass(frozen=True)
class LogExtract:
    """What the report needs of one log, for one window."""

    path: str
    #: each point's last change at or before the window's start
    before: dict[str, Change]
    #: the changes inside the window (after its start, up to its end), oldest first
    changes: list[Change]
    #: each point the log knows (events or last states) -> (district, name); the name is
    #: the latest one written, "" when none was
    known: dict[str, tuple[str, str]]
    #: the monitors' runs, oldest first; None for a log of a confmon that did not record them
    runs: list[Run] | None
    #: the time of the log's oldest stored event (None: it has none)
    first_event: float | None
    #: each point's last state as the log keeps it: point -> (state, since), for a point
    #: whose events were pruned
    last_states: dict[str, tuple[State, float]] = field(default_factory=dict)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadLog(f"{what} is not a finite number ({printable(repr(value), 40)})")
    return float(value)


def _state(value: object, what: str) -> State:
    if not isinstance(value, str) or value not in _STATES:
        raise BadLog(f"{what} is not a state ({printable(repr(value), 40)})")
    return State(value)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _metrics(raw: object, what: str) -> dict[str, float | None]:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BadLog(f"{what}: the metrics are not a JSON object")
    out: dict[str, float | None] = {}
    for name in _FIGURES:
        value = data.get(name)
        out[name] = None if value is None else _number(value, f"{what}: {name}")
    return out


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})").fetchall()}


def _select(columns: set[str], wanted: tuple[str, ...], fallback: dict[str, str]) -> str:
    """The SELECT list for ``wanted``, a constant for a column an older log does not have."""
    return ", ".join(c if c in columns else f"{fallback.get(c, 'NULL')} AS {c}" for c in wanted)


_EVENT_COLUMNS = (
    "id",
    "at",
    "point",
    "district",
    "name",
    "previous",
    "state",
    "reason",
    "cause",
    "evidence",
    "metrics",
)
_EVENT_FALLBACK = {"name": "''", "cause": "''", "metrics": "'{}'", "evidence": "NULL"}


def _change(row: tuple[object, ...], shown: str) -> Change:
    eid, at, point, district, name, previous, state, reason, cause, evidence, metrics = row
    what = f"{shown}: event {printable(repr(eid), 20)}"
    if isinstance(eid, bool) or not isinstance(eid, int):
        raise BadLog(f"{what}: the id is not a whole number")
    pid = _text(point)
    if not pid:
        raise BadLog(f"{what}: no point")
    return Change(
        id=eid,
        at=_number(at, f"{what}: at"),
        point=pid,
        district=_text(district) or pid,
        name=_text(name),
        previous=_state(previous, f"{what}: previous"),
        state=_state(state, f"{what}: state"),
        reason=_text(reason),
        cause=_text(cause) or pid,
        evidence=None if evidence is None else _number(evidence, f"{what}: evidence"),
        metrics=_metrics(metrics, what),
    )


class LogFile:
    """An event log opened for reading (a context manager): its runs first (they name the
    time zone the window's times are read in), then the window's changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._shown = printable(self.path, 200)
        self._db = open_read_only(path)

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def runs(self, now: float) -> list[Run] | None:
        """The monitors' runs, oldest first; None for a log that does not record them."""
        try:
            return _runs(self._db, self._shown, now)
        except sqlite3.Error as exc:
            raise ConfmonError(f"cannot read the event log {self._shown}: {why(exc)}") from None

    def read(self, start: float, end: float, now: float) -> LogExtract:
        """What the report needs for the window ``start``..``end``."""
        try:
            return _read(self._db, self._shown, self.path, start, end, now)
        except sqlite3.Error as exc:
            raise ConfmonError(f"cannot read the event log {self._shown}: {why(exc)}") from None


def read_log(path: str | Path, start: float, end: float, now: float) -> LogExtract:
    """The changes and runs of the log at ``path`` for the window ``start``..``end``.

    Raises :class:`~monitor.outputs.eventlog.LogRefused` for what is not a confmon log,
    :class:`BadLog` for a row confmon would not write, :class:`ConfmonError` if it cannot
    be read now; each is one line."""
    with LogFile(path) as f:
        return f.read(start, end, now)


def _read(
    db: sqlite3.Connection, shown: str, path: str, start: float, end: float, now: float
) -> LogExtract:
    select = _select(_columns(db, "events"), _EVENT_COLUMNS, _EVENT_FALLBACK)
    # one snapshot of the log for all the reads (the monitor may write meanwhile)
    db.execute("BEGIN")
    before_rows = db.execute(
        f"SELECT {select} FROM events WHERE id IN "
        "(SELECT MAX(id) FROM events WHERE at <= ? GROUP BY point)",
        (start,),
    ).fetchall()
    rows = db.execute(
        f"SELECT {select} FROM events WHERE at > ? AND at <= ? ORDER BY id", (start, end)
    ).fetchall()
    before = {c.point: c for c in (_change(r, shown) for r in before_rows)}
    changes = [_change(r, shown) for r in rows]

    known: dict[str, tuple[str, str]] = {}
    names = db.execute(
        "SELECT point, district, "
        + ("name" if "name" in _columns(db, "events") else "''")
        + " FROM events WHERE id IN (SELECT MAX(id) FROM events GROUP BY point)"
    ).fetchall()
    for point, district, name in names:
        if isinstance(point, str) and point:
            known[point] = (_text(district) or point, _text(name))
    last_states: dict[str, tuple[State, float]] = {}
    for point, state, since in db.execute("SELECT point, state, since FROM last_state"):
        if not isinstance(point, str) or not point:
            continue
        last_states[point] = (
            _state(state, f"{shown}: the last state of {printable(point, 80)}"),
            _number(since, f"{shown}: the last state of {printable(point, 80)}: since"),
        )
        known.setdefault(point, (point, ""))
    first = db.execute("SELECT MIN(at) FROM events").fetchone()[0]
    runs = _runs(db, shown, now)
    db.execute("COMMIT")
    return LogExtract(
        path=path,
        before=before,
        changes=changes,
        known=known,
        runs=runs,
        first_event=None if first is None else _number(first, f"{shown}: the oldest event"),
        last_states=last_states,
    )


def _runs(db: sqlite3.Connection, shown: str, now: float) -> list[Run] | None:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "runs" not in tables:
        return None
    out: list[Run] = []
    for started, alive, stopped, name, timezone, interval in db.execute(
        "SELECT started, alive, stopped, name, timezone, interval FROM runs ORDER BY started, id"
    ):
        what = f"{shown}: a run"
        begun = _number(started, f"{what}: started")
        last = max(begun, _number(alive, f"{what}: alive"))
        if stopped is not None:
            until = max(begun, _number(stopped, f"{what}: stopped"))
        elif now - last <= STILL_RUNNING:
            until = max(last, now)  # still running: it covers up to now
        else:
            until = last  # died without closing the log: known to be alive until then
        out.append(
            Run(
                started=begun,
                until=until,
                stopped=stopped is not None,
                name=_text(name),
                timezone=_text(timezone),
                interval=None if interval is None else _number(interval, f"{what}: interval"),
            )
        )
    return out
