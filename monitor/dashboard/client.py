"""Keeping a :class:`Snapshot` in step with a running monitor over its API.

Reads the full state (status, points, events) on connect, then follows
``/api/v1/stream`` for changes (after a reconnect, from the last event id it
applied, so no change is missed or shown twice), and re-reads the points every few seconds for
fresh RTT/jitter/loss/MOS figures. When the server is unreachable the snapshot
is marked disconnected (the dashboard shows a stale banner and keeps the last
known state) and the client reconnects by itself with backoff. Every request
has a timeout; the stream has a read timeout longer than the server's
keep-alive interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

from monitor.dashboard.model import Snapshot

__all__ = ["follow"]

_TIMEOUT = aiohttp.ClientTimeout(total=10)
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=_TIMEOUT) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(
                resp.request_info,
                resp.history,
                status=resp.status,
                message=(await resp.text())[:200],
            )
        return await resp.json()


async def _full_read(session: aiohttp.ClientSession, base: str, snap: Snapshot) -> None:
    status, points = await asyncio.gather(
        _get(session, f"{base}/api/v1/status"), _get(session, f"{base}/api/v1/points")
    )
    snap.apply_points(points["points"])
    snap.apply_summary(status)
    if snap.last_event_id is None:
        # first connect: the recent history, then the stream from its newest id; after a
        # reconnect the stream replays what was missed (Last-Event-ID), so the list
        # neither loses nor repeats an event
        events = await _get(session, f"{base}/api/v1/events?limit=50")
        snap.apply_events(events["events"])


async def _refresh_points(
    session: aiohttp.ClientSession, base: str, snap: Snapshot, every: float
) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            points = await _get(session, f"{base}/api/v1/points")
            snap.apply_points(points["points"])
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
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
                data = json.loads(line[6:])
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
) -> None:
    """Keep ``snap`` up to date with the monitor at ``base`` until cancelled.

    ``connected`` is set once the first full read succeeded and the stream is open.
    """
    base = base.rstrip("/")
    snap.url = base
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
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
                snap.connected = False
                snap.error = _describe(exc)
            finally:
                if refresher is not None:
                    refresher.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await refresher
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}" + (" (wrong or missing --token?)" if exc.status == 401 else "")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (
            "connection refused"
            if isinstance(exc.os_error, ConnectionRefusedError)
            else str(exc.os_error)
        )
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
