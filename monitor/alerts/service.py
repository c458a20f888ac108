"""The alert service: from the event log's state changes to delivered notifications.

**Durability.** A receiver's queue of changes not yet grouped is the event log itself:
each receiver has a cursor (the id of the last event it took into account) stored in
the ``alert_receivers`` table with its groups (:meth:`Groups.dump`). Grouping reads the
events past the cursor; the notifications it makes are inserted into the
``notifications`` table *in the same transaction* that moves the cursor and saves the
groups. So an event that is stored is notified after any restart (the event and its
place in every receiver's queue are one commit), and a notification exists exactly once.

**Delivery.** One task per receiver sends its pending notifications oldest first (the
order of the messages is the order of the changes), one at a time, with the retry rules
of :mod:`monitor.alerts.delivery`; each outcome is written to the notification's row. A
restart resends a notification that was pending, with the same ``X-Confmon-Delivery``
id; one recorded as delivered is never sent again. (A crash between a receiver's
answer and the commit of "delivered" can send one message twice, which the delivery id
lets a receiver notice: no sender can do better over HTTP.)

**What shows.** ``confmon_notifications_total{receiver,result}`` (``delivered``,
``retried``, ``failed``, ``expired``), ``confmon_notifications_pending{receiver}``, and
:meth:`Alerts.recent` behind ``/api/v1/notifications``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from monitor.alerts.config import AlertsSettings, Receiver, resolve_secret
from monitor.alerts.delivery import MAX_AGE, Outcome, post, retry_backoff, sleep_until
from monitor.alerts.formats import AM_RESEND, Context, Rendered, render
from monitor.alerts.grouping import Groups, Notification, PointFacts
from monitor.backoff import Backoff
from monitor.core.events import State
from monitor.errors import ConfmonError
from monitor.inventory import Inventory
from monitor.outputs.eventlog import LogBusy, LogUnavailable

if TYPE_CHECKING:
    from monitor.core.service import Monitor

__all__ = ["Alerts", "send_test"]

log = logging.getLogger("confmon")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_receivers (
    receiver TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    delivery TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    group_key TEXT NOT NULL,
    summary TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    last_result TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS notifications_pending
    ON notifications (receiver, id) WHERE status = 'pending';
"""
#: events read from the log per query while catching up
READ_CHUNK = 1000
#: the feeder looks at the clock at least this often (group waits, reminders)
TICK = 0.25
#: a delivery that answers after the stop began is given this long
STOP_GRACE = 2.0


def _facts_of(inv: Inventory) -> Callable[[str], PointFacts | None]:
    points = inv.points

    def facts(pid: str) -> PointFacts | None:
        p = points.get(pid)
        if p is None:
            return None
        d = points.get(p.district)
        return PointFacts(p.name, p.district, d.name if d is not None else p.district, p.level)

    return facts


def _context(inv: Inventory, external_url: str) -> Context:
    return Context(inv.settings.name, inv.settings.timezone, external_url)


@dataclass
class _Receiver:
    """A receiver's live parts: its groups, its secret, its queue of pending ids."""

    spec: Receiver
    secret: str | None
    groups: Groups
    queue: deque[int] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_success: float | None = None
    last_error: str | None = None
    #: consecutive temporary failures of the head of the queue, and the waits between them
    streak: int = 0
    backoff: Backoff = field(default_factory=retry_backoff)


class Alerts:
    """Groups the monitor's stored state changes per receiver and delivers them.

    ``printer``: the demo's dry run; each notification's text is handed to it instead of
    being POSTed (and recorded as delivered).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        printer: Callable[[str, Rendered], None] | None = None,
        external_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.monitor = monitor
        self.printer = printer
        self.external_url = external_url
        self._clock = clock
        self.receivers: dict[str, _Receiver] = {}
        self._stop = asyncio.Event()
        self._feeder: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._unsaved: list[Notification] = []
        self._dirty_state = False
        self._said_unsaved = False

    @property
    def settings(self) -> AlertsSettings:
        return self.monitor.inv.alerts

    @property
    def _log(self) -> Any:
        assert self.monitor.eventlog is not None, "Alerts used before the monitor started"
        return self.monitor.eventlog

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the secrets (a missing one is a :class:`ConfmonError`), load the saved
        groups and pending notifications, start the feeder and one sender per receiver."""
        specs = self.settings.receivers
        secrets = {r.name: resolve_secret(r) for r in specs}
        await self._log.write(lambda db: db.executescript(_SCHEMA) and None)
        saved = dict(
            await self._log.read(
                lambda db: db.execute("SELECT receiver, state FROM alert_receivers").fetchall()
            )
        )
        pending = await self._log.read(
            lambda db: db.execute(
                "SELECT receiver, id FROM notifications WHERE status = 'pending' ORDER BY id"
            ).fetchall()
        )
        for spec in specs:
            self.receivers[spec.name] = self._make(spec, secrets[spec.name], saved.get(spec.name))
        for name, nid in pending:
            if name in self.receivers:
                self.receivers[name].queue.append(nid)
        waiting = sum(len(r.queue) for r in self.receivers.values())
        if waiting:
            log.info("alerts: %d notifications from before the restart are still to send", waiting)
        await self._save_state()
        self._session = aiohttp.ClientSession(trust_env=True)
        loop = asyncio.get_running_loop()
        for r in self.receivers.values():
            r.task = loop.create_task(self._deliver(r), name=f"confmon-alerts-{r.spec.name}")
        self._feeder = loop.create_task(self._feed(), name="confmon-alerts")
        self.monitor.telemetry.watch_outbox(self.pending)

    def _make(self, spec: Receiver, secret: str | None, saved: str | None) -> _Receiver:
        s = self.monitor.inv.settings
        groups = Groups(
            spec,
            self.settings,
            _facts_of(self.monitor.inv),
            settle=(s.fail_after + 1) * s.interval,
            doubtful=self._uplink_doubtful,
            behind=self._behind,
            acked=self.monitor.acks.acked,
        )
        if spec.format == "alertmanager-api":
            groups.repeat_every = AM_RESEND
        if saved is not None:
            try:
                groups.load(json.loads(saved))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning(
                    "alerts: the saved groups of %s cannot be read (%s); starting afresh",
                    spec.name,
                    exc,
                )
                groups.last_event = self._log.last_id
        else:
            groups.last_event = self._log.last_id  # a new receiver hears of what comes now
        for state in ("delivered", "retried", "failed", "expired"):
            self.monitor.telemetry.notifications.labels(spec.name, state)
        return _Receiver(spec, secret, groups)

    def _behind(self, point: str) -> int:
        """How many rooms are reached through ``point`` (its descendants)."""
        inv = self.monitor.inv
        return len(inv.descendants(point)) if point in inv.points else 0

    def _uplink_doubtful(self, point: str, since: float) -> bool:
        """Whether an uplink of ``point`` (down since ``since``) may be the cause after all:
        it failed its last cycle without being down yet, or it has not been heard from
        since ``point`` began to fail (its first failed cycle, ``fail_after - 1``
        intervals before ``since``)."""
        inv, model = self.monitor.inv, self.monitor.model
        s = inv.settings
        began = since - s.fail_after * s.interval
        p = inv.points.get(point)
        parent = p.parent if p is not None else None
        while parent is not None:
            h = model.points.get(parent)
            if h is None or (h.state is not State.UP and h.state is not State.DEGRADED):
                return False  # down (the room would be unreachable), unknown, maintenance
            if h.last_ok is False or h.last_seen is None or h.last_seen < began:
                return True
            parent = h.point.parent
        return False

    async def stop(self) -> None:
        """Stop feeding and sending; whatever is pending stays pending (sent after a
        restart). Safe to call twice."""
        self._stop.set()
        tasks = [t for t in (self._feeder, *(r.task for r in self.receivers.values())) if t]
        for r in self.receivers.values():
            r.wake.set()
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for t in running:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(*running, return_exceptions=True)
        self._feeder = None
        for r in self.receivers.values():
            r.task = None
        if self._unsaved or self._dirty_state:
            with contextlib.suppress(ConfmonError):
                await self._commit([])
        if self._session is not None:
            await self._session.close()
            self._session = None

    def apply(self, inv: Inventory) -> None:
        """A reloaded inventory: receivers kept keep their groups, queue and sender (a
        changed one takes its new settings in place, so that a message being sent is not
        sent twice); new ones start from now; removed ones stop (their pending
        notifications stay in the log, sent if they come back)."""
        specs = {r.name: r for r in inv.alerts.receivers}
        for name in list(self.receivers):
            if name not in specs:
                old = self.receivers.pop(name)
                if old.task is not None:
                    old.task.cancel()
        loop = asyncio.get_running_loop()
        for name, spec in specs.items():
            current = self.receivers.get(name)
            try:
                secret = resolve_secret(spec)
            except ConfmonError as exc:
                log.error("%s; %s", exc, "keeping its old settings" if current else "not used")
                continue
            if current is not None:
                current.spec, current.secret = spec, secret
                current.groups.set_receiver(spec, inv.alerts, _facts_of(inv))
                current.groups.repeat_every = (
                    AM_RESEND if spec.format == "alertmanager-api" else None
                )
                continue
            r = self._make(spec, secret, None)
            self.receivers[name] = r
            r.task = loop.create_task(self._deliver(r), name=f"confmon-alerts-{name}")
        self._dirty_state = True

    # --- grouping ---------------------------------------------------------------------------

    async def _feed(self) -> None:
        sub = self.monitor.subscribe(4096)
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(sub.queue.get(), TICK)
                    if message is None:
                        return  # the monitor is going away
                try:
                    await self._step()
                except (LogBusy, LogUnavailable) as exc:
                    if not self._said_unsaved:
                        log.warning("alerts: the event log cannot be used (%s); retrying", exc)
                        self._said_unsaved = True
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("alerts: grouping failed (a bug); retrying in 5 s")
                    await asyncio.sleep(5.0)
        finally:
            self.monitor.unsubscribe(sub)

    async def _step(self) -> None:
        """Read new events, group them, and commit what is due."""
        groups = [r.groups for r in self.receivers.values()]
        if not groups:
            return
        eventlog = self._log
        now = self._clock()
        while True:
            cursor = min(g.last_event for g in groups)
            if eventlog.last_id <= cursor:
                break
            events = await eventlog.since(cursor, READ_CHUNK)
            if not events:
                break
            for g in groups:
                g.add(events, now)
            self._dirty_state = True
        notes: list[Notification] = []
        for g in groups:
            due = g.next_due()
            if due is not None and due <= now:
                made = g.flush(now)
                if made:
                    notes += made
        if notes or self._unsaved or self._dirty_state:
            await self._commit(notes)

    async def _commit(self, notes: list[Notification]) -> None:
        """Insert ``notes`` (and any left from a failed commit) with every receiver's state,
        in one transaction; then hand them to their senders."""
        todo = self._unsaved + notes
        self._unsaved = todo
        rows = []
        for n in todo:
            r = self.receivers.get(n.receiver)
            if r is None:
                continue
            rendered = render(n, r.spec, _context(self.monitor.inv, self.external_url))
            rows.append((n, rendered))
        states = [(name, json.dumps(r.groups.dump())) for name, r in self.receivers.items()]

        def write(db: sqlite3.Connection) -> list[tuple[str, int]]:
            ids = []
            for n, rendered in rows:
                cur = db.execute(
                    "INSERT INTO notifications (receiver, delivery, kind, status, created_at,"
                    " group_key, summary, body, content_type) VALUES (?, ?, ?, 'pending', ?, ?,"
                    " ?, ?, ?)",
                    (
                        n.receiver,
                        str(uuid.uuid4()),
                        n.kind,
                        n.created_at,
                        str(n.group.get("key", "")),
                        rendered.summary,
                        rendered.body,
                        rendered.content_type,
                    ),
                )
                ids.append((n.receiver, int(cur.lastrowid or 0)))
            db.executemany(
                "INSERT INTO alert_receivers (receiver, state) VALUES (?, ?)"
                " ON CONFLICT(receiver) DO UPDATE SET state = excluded.state",
                states,
            )
            return ids

        ids = await self._log.write(write)
        self._unsaved = []
        self._dirty_state = False
        if self._said_unsaved:
            log.warning("alerts: the event log is written again; nothing was lost")
            self._said_unsaved = False
        for (name, nid), (n, rendered) in zip(ids, rows, strict=True):
            r = self.receivers.get(name)
            if r is None:  # removed by a reload meanwhile: it stays pending in the log
                continue
            r.queue.append(nid)
            r.wake.set()
            log.info("alerts: %s %s: %s", name, n.kind, rendered.summary)

    async def _save_state(self) -> None:
        self._dirty_state = True
        await self._commit([])

    # --- delivery ---------------------------------------------------------------------------

    async def _deliver(self, r: _Receiver) -> None:
        while not self._stop.is_set():
            if not r.queue:
                r.wake.clear()
                await r.wake.wait()
                continue
            try:
                await self._send_head(r)
            except (LogBusy, LogUnavailable) as exc:
                log.warning("alerts: %s: the event log cannot be used (%s)", r.spec.name, exc)
                await sleep_until(time.time() + 1.0, self._stop)
            except Exception:
                log.exception("alerts: %s: sending failed (a bug); retrying in 5 s", r.spec.name)
                await sleep_until(time.time() + 5.0, self._stop)

    async def _send_head(self, r: _Receiver) -> None:
        nid = r.queue[0]
        row = await self._log.read(
            lambda db: db.execute(
                "SELECT status, delivery, created_at, body, content_type, attempts, summary"
                " FROM notifications WHERE id = ?",
                (nid,),
            ).fetchone()
        )
        if row is None or row[0] != "pending":
            r.queue.popleft()
            return
        _, delivery, created_at, body, content_type, attempts, summary = row
        name = r.spec.name
        counter = self.monitor.telemetry.notifications
        now = time.time()
        if now - created_at > MAX_AGE:
            await self._record(nid, "expired", attempts, "not delivered within 24 h")
            counter.labels(name, "expired").inc()
            log.error("alerts: %s: notification %d expired undelivered: %s", name, nid, summary)
            r.queue.popleft()
            return
        if self.printer is not None:
            self.printer(
                name, Rendered(bytes(body), content_type, summary, _text_of(body, summary))
            )
            outcome = Outcome("delivered", "printed (dry run)")
        else:
            assert self._session is not None
            outcome = await post(
                self._session, r.spec, r.secret, bytes(body), content_type, delivery
            )
        attempts += 1
        if outcome.result == "delivered":
            await self._record(nid, "delivered", attempts, outcome.detail)
            counter.labels(name, "delivered").inc()
            r.last_success = time.time()
            if r.streak:
                log.warning("alerts: %s answers again (%s)", name, outcome.detail)
            r.streak = 0
            r.backoff.reset()
            r.queue.popleft()
            return
        r.last_error = outcome.detail
        if outcome.result == "failed":
            await self._record(nid, "failed", attempts, outcome.detail)
            counter.labels(name, "failed").inc()
            r.streak = 0
            r.backoff.reset()
            log.error(
                "alerts: %s refused notification %d for good (%s); check the receiver's "
                "url, secret and chat; going on with the next",
                name,
                nid,
                outcome.detail,
            )
            r.queue.popleft()
            return
        await self._record(nid, "pending", attempts, outcome.detail)
        counter.labels(name, "retried").inc()
        r.streak += 1
        wait = outcome.wait if outcome.wait is not None else r.backoff.next()
        if r.streak == 1:  # once when it starts failing; "answers again" when it is over
            log.warning(
                "alerts: %s: %s; %d waiting, next try in %.0f s",
                name,
                outcome.detail,
                len(r.queue),
                wait,
            )
        await sleep_until(time.time() + wait, self._stop)

    async def _record(self, nid: int, status: str, attempts: int, detail: str) -> None:
        now = time.time()
        done = None if status == "pending" else now

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE notifications SET status = ?, attempts = ?, last_attempt_at = ?,"
                " last_result = ?, done_at = ? WHERE id = ?",
                (status, attempts, now, detail, done, nid),
            )

        # the outcome of a message already sent must be kept: tried again until it is
        for tried in range(30):
            try:
                await self._log.write(write)
                return
            except LogUnavailable:
                if tried == 29 or self._stop.is_set():
                    raise
                await asyncio.sleep(1.0)

    # --- what shows -------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Receiver -> notifications waiting to be sent (``confmon_notifications_pending``)."""
        return {name: len(r.queue) for name, r in self.receivers.items()}

    async def status(self) -> list[dict[str, Any]]:
        """Each receiver's figures for the API (counts from the log: they survive restarts)."""

        def read(db: sqlite3.Connection) -> dict[tuple[str, str], tuple[int, float | None]]:
            rows = db.execute(
                "SELECT receiver, status, COUNT(*), MAX(done_at) FROM notifications"
                " GROUP BY receiver, status"
            ).fetchall()
            return {(r, st): (int(n), done) for r, st, n, done in rows}

        counts = await self._log.read(read)
        return [
            {
                "name": name,
                "format": r.spec.format,
                "pending": len(r.queue),
                "delivered": counts.get((name, "delivered"), (0, None))[0],
                "failed": counts.get((name, "failed"), (0, None))[0],
                "expired": counts.get((name, "expired"), (0, None))[0],
                "last_success_at": r.last_success or counts.get((name, "delivered"), (0, None))[1],
                "last_error": r.last_error,
                "retrying": r.streak > 0,
            }
            for name, r in self.receivers.items()
        ]

    async def recent(self, limit: int = 50, receiver: str | None = None) -> list[dict[str, Any]]:
        """The newest notifications, with their outcome (newest first)."""

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = (
                "SELECT id, receiver, delivery, kind, status, created_at, group_key, summary,"
                " attempts, last_attempt_at, last_result, done_at FROM notifications"
            )
            args: tuple[Any, ...] = ()
            if receiver is not None:
                sql += " WHERE receiver = ?"
                args = (receiver,)
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
            keys = (
                "id",
                "receiver",
                "delivery",
                "kind",
                "status",
                "created_at",
                "group",
                "summary",
                "attempts",
                "last_attempt_at",
                "last_result",
                "done_at",
            )
            return [dict(zip(keys, row, strict=True)) for row in rows]

        result: list[dict[str, Any]] = await self._log.read(read)
        return result


def _text_of(body: bytes, summary: str) -> str:
    """The human text inside a rendered body (the chat formats), else its summary (for
    the dry run's printout)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return summary
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        return str(doc["text"])
    return summary


async def send_test(
    inv: Inventory, receiver: Receiver, now: float | None = None
) -> tuple[Outcome, Rendered]:
    """Send a clearly marked test message to ``receiver`` now (``confmon alerts test``)."""
    secret = resolve_secret(receiver)
    at = time.time() if now is None else now
    # the Alertmanager formats carry alerts: one, named ConfmonTest, that says what it is
    test = {
        "point": "confmon-test",
        "name": "Tin nhắn thử / test message",
        "district": "",
        "district_name": "",
        "level": "",
        "state": "test",
        "previous": "",
        "since": at,
        "reason": "a test of this receiver (confmon alerts test); not an incident",
        "cause": "confmon-test",
        "cause_name": "",
        "metrics": {},
        "was": None,
    }
    n = Notification(
        receiver=receiver.name,
        kind="test",
        status="firing",
        group={"key": "test", "by": "test", "rooms": 0, "causes": [], "counts": {}},
        alerts=[test] if receiver.format.startswith("alertmanager") else [],
        created_at=at,
    )
    rendered = render(n, receiver, _context(inv, ""))
    async with aiohttp.ClientSession(trust_env=True) as session:
        outcome = await post(
            session, receiver, secret, rendered.body, rendered.content_type, str(uuid.uuid4())
        )
    return outcome, rendered
