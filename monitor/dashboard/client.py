"""Keeping a :class:`Snapshot` in step with a running monitor over its API.

Reads the full state (status, points, events) on connect, then follows
``/api/v1/stream`` for changes (after a reconnect, from the last event id it
applied, so no change is missed or shown twice), and re-reads the points every few seconds for
fresh RTT/jitter/loss/MOS figures. When the server is unreachable the snapshot
is marked disconnected (the dashboard shows a stale banner and keeps the last
known state) and the client reconnects by itself with backoff. Every request
has a timeout; the stream has a read timeout longer than the server's
keep-alive interval.

What the user is told at once, without waiting for a timeout: a monitor that
refuses the token (401/403, :class:`TokenRefused`, exit 2) ends the dashboard,
since retrying cannot help; with ``retry=False`` (one snapshot) the first
failed read ends it too (:class:`Unreachable`, exit 1: connection refused, a
wrong answer). Answers are bounded (:data:`MAX_ANSWER`) and checked by the model
(:class:`~monitor.dashboard.model.BadAnswer`); a server sending HTML, 50 MB or
JSON of the wrong shape is one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from monitor.dashboard.model import EVENTS_KEPT, BadAnswer, Snapshot
from monitor.errors import ConfmonError
from monitor.text import printable

__all__ = ["MAX_ANSWER", "TokenRefused", "Unreachable", "acknowledge", "follow", "watch_detail"]

_TIMEOUT = aiohttp.ClientTimeout(total=10)
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
MAX_ANSWER = 32 << 20
"""Largest answer read from the API, in bytes (450 points take about 250 KB)."""

#: what a failed read can raise; anything else is a bug
_FAILURES = (aiohttp.ClientError, OSError, TimeoutError, ValueError)


class TokenRefused(ConfmonError):
    """The monitor answered 401 or 403: the token is wrong or missing."""

    exit_code = 2


class Unreachable(ConfmonError):
    """The first read of a one-shot client failed (refused, reset, a wrong answer)."""


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=_TIMEOUT) as resp:
        if resp.status != 200:
            head = await resp.content.read(200)
            raise aiohttp.ClientResponseError(
                resp.request_info,
                resp.history,
                status=resp.status,
                message=printable(head.decode("utf-8", "replace"), 200),
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > MAX_ANSWER:
                raise BadAnswer(f"the answer is larger than {MAX_ANSWER >> 20} MiB")
            chunks.append(chunk)
    return _json(b"".join(chunks))


def _json(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise BadAnswer("the answer is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise BadAnswer(f"the answer is not JSON ({exc})") from None


def _field(answer: Any, key: str) -> Any:
    if not isinstance(answer, dict) or key not in answer:
        raise BadAnswer(f"the answer has no {key!r}")
    return answer[key]


async def _full_read(session: aiohttp.ClientSession, base: str, snap: Snapshot) -> None:
    status, points = await asyncio.gather(
        _get(session, f"{base}/api/v1/status"), _get(session, f"{base}/api/v1/points")
    )
    snap.apply_points(_field(points, "points"))
    snap.apply_summary(status)
    if snap.last_event_id is None:
        # first connect: the recent history, then the stream from its newest id; after a
        # reconnect the stream replays what was missed (Last-Event-ID), so the list
        # neither loses nor repeats an event
        events = await _get(session, f"{base}/api/v1/events?limit={EVENTS_KEPT}")
        snap.apply_events(_field(events, "events"))


async def _refresh_points(
    session: aiohttp.ClientSession, base: str, snap: Snapshot, every: float
) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            points = await _get(session, f"{base}/api/v1/points")
            snap.apply_points(_field(points, "points"))
        except _FAILURES as exc:
            # the stream still carries state changes; say the figures are stale, try again
            snap.error = f"figures not refreshed: {_describe(exc)}"


async def _stream(
    session: aiohttp.ClientSession, base: str, snap: Snapshot, connected: asyncio.Event | None
) -> None:
    headers = {"Last-Event-ID": str(snap.last_event_id)} if snap.last_event_id is not None else {}
    async with session.get(
        f"{base}/api/v1/stream", timeout=_STREAM_TIMEOUT, headers=headers
    ) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status)
        snap.connected = True
        snap.error = ""
        if connected is not None:
            connected.set()
        kind = ""
        async for raw in resp.content:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                data = _json(line[6:])
                if kind == "state":
                    snap.apply_state(data)
                elif kind in ("summary", "hello"):
                    snap.apply_summary(data)
            elif line.startswith(":"):
                snap.touch()  # keep-alive: the server is there
            elif not line:
                kind = ""
    raise ConnectionError("the server closed the stream")


async def follow(
    base: str,
    snap: Snapshot,
    token: str | None = None,
    refresh: float = 5.0,
    connected: asyncio.Event | None = None,
    *,
    retry: bool = True,
) -> None:
    """Keep ``snap`` up to date with the monitor at ``base`` until cancelled.

    ``connected`` is set once the first full read succeeded and the stream is open.
    A refused token raises :class:`TokenRefused` at once; with ``retry=False`` a
    failure before ``connected`` raises :class:`Unreachable` instead of retrying.
    """
    base = base.rstrip("/")
    snap.url = printable(base, 200)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    backoff = 0.5
    async with aiohttp.ClientSession(headers=headers, trust_env=False) as session:
        while True:
            refresher: asyncio.Task[None] | None = None
            try:
                await _full_read(session, base, snap)
                refresher = asyncio.get_running_loop().create_task(
                    _refresh_points(session, base, snap, refresh)
                )
                backoff = 0.5
                await _stream(session, base, snap, connected)
            except _FAILURES as exc:
                if isinstance(exc, aiohttp.ClientResponseError) and exc.status in (401, 403):
                    raise TokenRefused(_refusal(exc.status, token)) from None
                snap.connected = False
                snap.error = _describe(exc)
                if not retry and (connected is None or not connected.is_set()):
                    raise Unreachable(f"cannot read {snap.url}: {snap.error}") from None
            finally:
                if refresher is not None:
                    refresher.cancel()
                    # wait for its end without swallowing a cancellation of our own: a stop
                    # asked for right now must end this loop, not be lost in its clean-up
                    await asyncio.wait([refresher])
                    if not refresher.cancelled():
                        refresher.exception()  # retrieved: the stream's failure says it
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def watch_detail(
    base: str,
    snap: Snapshot,
    token: str | None,
    wanted: Callable[[], str | None],
    wake: asyncio.Event,
    every: float = 2.0,
) -> None:
    """While ``wanted()`` names a point, read its detail (each probe's latest result) every
    ``every`` seconds, and at once when ``wake`` is set; until cancelled. A failed read keeps
    what was shown (the main stream says when the monitor is gone)."""
    base = base.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers, trust_env=False) as session:
        while True:
            pid = wanted()
            if pid is not None:
                try:
                    detail = await _get(session, f"{base}/api/v1/points/{quote(pid, safe='')}")
                    snap.apply_point_detail(detail)
                except _FAILURES:
                    pass
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await wake.wait()


async def acknowledge(base: str, token: str | None, cause: str, by: str) -> str:
    """Acknowledge the incident of ``cause`` on the monitor; what to tell the operator."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession(headers=headers, trust_env=False) as session,
            session.post(
                f"{base.rstrip('/')}/api/v1/acks",
                json={"cause": cause, "by": by},
                timeout=_TIMEOUT,
            ) as resp,
        ):
            body = _json(await resp.content.read(4096))
            if resp.status == 201:
                return f"acknowledged {cause}: alert reminders stop while it lasts"
            error = body.get("error") if isinstance(body, dict) else None
            return f"not acknowledged: {printable(str(error or f'HTTP {resp.status}'), 200)}"
    except _FAILURES as exc:
        return f"not acknowledged: {_describe(exc)}"


def _refusal(status: int, token: str | None) -> str:
    if token is None:
        return f"the monitor wants a token (HTTP {status}): pass --token or set CONFMON_API_TOKEN"
    return f"the monitor refused the token (HTTP {status}): check --token or CONFMON_API_TOKEN"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}" + (" (wrong or missing --token?)" if exc.status == 401 else "")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = (
            "connection refused"
            if isinstance(exc.os_error, ConnectionRefusedError)
            else str(exc.os_error)
        )
        return printable(reason, 200)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, BadAnswer):
        return f"unexpected answer from the monitor: {exc}"
    return printable(str(exc) or type(exc).__name__, 200)
