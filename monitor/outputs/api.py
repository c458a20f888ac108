"""HTTP exposition: ``/metrics``, the JSON API, the SSE stream, health checks and reload.

Routes (all answers JSON unless noted; errors are ``{"error": "..."}`` with a
proper status code; unknown paths are 404; request bodies are capped at 64 KiB):

- ``GET /metrics``: Prometheus text format (contract names and labels).
- ``GET /api/v1/status``: city-wide summary, readiness, scheduler figures.
- ``GET /api/v1/points?district=&state=&level=``: every point, filtered.
- ``GET /api/v1/points/{id}``: one point, its latest result per probe, its history.
- ``GET /api/v1/districts``: per district: headquarters state and counts per state.
- ``GET /api/v1/events?point=&district=&state=&since=&until=&before=&limit=``: the
  event log, newest first; page with ``before=<id of the last event seen>``.
- ``GET /api/v1/stream``: Server-Sent Events: ``state`` (each change, with ``id:``
  the event's id), ``summary`` (each second), ``hello`` (the summary at connect). A
  client that reconnects with ``Last-Event-ID: N`` (browsers' EventSource does it by
  itself) first receives every event after N from the event log, in order, then the
  live ones: none missed, none twice. A client too slow to keep up is caught up the
  same way from the log instead of being cut off.
- ``GET /healthz`` (process alive), ``GET /readyz`` (monitor started).
- ``POST /-/reload``: re-read the config (like SIGHUP).

With a bearer token configured, ``/api/*`` and ``/-/*`` need
``Authorization: Bearer <token>``; ``/metrics`` and the health checks stay open
(Prometheus and load balancers scrape them).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from monitor.core.events import Event, LiveSubscription, event_json
from monitor.core.health import STATES, PointHealth
from monitor.core.results import result_json
from monitor.core.service import Monitor
from monitor.errors import ConfigError, ConfmonError
from monitor.outputs.metrics import CONTENT_TYPE

__all__ = ["MAX_BODY", "make_app", "start_api"]

MAX_BODY = 64 * 1024
MONITOR: web.AppKey[Monitor] = web.AppKey("monitor", Monitor)
Reload = Callable[[], Awaitable[str]]
RELOAD: web.AppKey[Reload | None] = web.AppKey("reload")
#: events sent per page while a reconnecting client catches up from the event log
REPLAY_PAGE = 500
#: messages queued for one SSE client before it is caught up from the log instead
SSE_QUEUE = 2048
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: turn them into null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(_clean(data), ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class _BadParam(Exception):
    pass


def _param_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _BadParam(f"{name}: {raw!r} is not a number (Unix seconds)") from None
    if not math.isfinite(value):
        raise _BadParam(f"{name}: {raw!r} is not a finite number")
    return value


def _param_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadParam(f"{name}: {raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise _BadParam(f"{name}: {value} is out of range {lo}..{hi}")
    return value


def _param_state(request: web.Request) -> str | None:
    raw = request.query.get("state")
    if raw is not None and raw not in {s.value for s in STATES}:
        raise _BadParam(f"state: {raw!r} is not one of {', '.join(s.value for s in STATES)}")
    return raw


def _point_json(h: PointHealth) -> dict[str, Any]:
    p = h.point
    return {
        "id": p.id,
        "name": p.name,
        "district": p.district,
        "parent": p.parent,
        "level": p.level,
        "host": p.host,
        "state": h.state.value,
        "since": h.since,
        "reason": h.reason,
        "cause": h.cause or p.id,
        "last_seen": h.last_seen,
        "metrics": h.metrics(),
    }


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    # refuse big bodies up front, whether or not the handler would read them
    if (request.content_length or 0) > MAX_BODY:
        return _error(413, f"request body over {MAX_BODY} bytes")
    try:
        return await handler(request)
    except _BadParam as exc:
        return _error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error(404, f"no such path {request.path!r}")
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ())))
            resp = _json({"error": f"{request.method} is not allowed here; use {allowed}"}, 405)
            resp.headers["Allow"] = allowed
            return resp
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason)
        raise


def _auth(token: str | None) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith(("/api/", "/-/")):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.Response(
                    text=json.dumps({"error": "missing or wrong bearer token"}),
                    status=401,
                    content_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="confmon"'},
                )
        return await handler(request)

    return check


async def metrics(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    body = m.writer.render() + m.telemetry.render()
    return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


async def status(request: web.Request) -> web.Response:
    return _json(request.app[MONITOR].summary())


async def points(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    district = request.query.get("district")
    level = request.query.get("level")
    state = _param_state(request)
    if district is not None and district not in m.model.district_counts:
        raise _BadParam(f"district: {district!r} is not a district id (see /api/v1/districts)")
    out = [
        _point_json(h)
        for h in m.model.points.values()
        if (district is None or h.point.district == district)
        and (state is None or h.state.value == state)
        and (level is None or h.point.level == level)
    ]
    return _json({"points": out, "count": len(out)})


async def point(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    pid = request.match_info["id"]
    h = m.model.points.get(pid)
    if h is None:
        return _error(404, f"no point {pid!r}")
    data = _point_json(h)
    data["children"] = list(h.point.children)
    data["profile"] = h.point.profile
    data["probes"] = {name: result_json(r) for name, r in h.latest.items()}
    data["history"] = await m.eventlog.query(point=pid, limit=50) if m.eventlog else []
    for row in data["history"]:
        row["name"] = h.point.name
    return _json(data)


async def districts(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    out = []
    for d in m.inv.districts():
        counts = m.model.district_counts[d.id]
        out.append(
            {
                "id": d.id,
                "name": d.name,
                "state": m.model.points[d.id].state.value,
                "points": sum(counts.values()),
                "states": {s.value: counts[s] for s in STATES},
            }
        )
    return _json({"districts": out})


async def events(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    if m.eventlog is None:
        return _error(503, "the event log is not open yet")
    rows = await m.eventlog.query(
        point=request.query.get("point"),
        district=request.query.get("district"),
        state=_param_state(request),
        since=_param_float(request, "since"),
        until=_param_float(request, "until"),
        before_id=_param_int(request, "before", 0, 0, 2**62) or None,
        limit=_param_int(request, "limit", 100, 1, 1000),
    )
    for row in rows:
        p = m.inv.points.get(row["point"])
        row["name"] = p.name if p else row["point"]
    return _json({"events": rows, "next_before": rows[-1]["id"] if rows else None})


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
    if raw is None or not raw.strip():
        return None
    if not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw.strip()) > 18:
        raise _BadParam(f"Last-Event-ID: {raw[:40]!r} is not an event id")
    return int(raw)


async def stream(request: web.Request) -> web.StreamResponse:
    m = request.app[MONITOR]
    if m.events is None:
        return _error(503, "the monitor is not started yet")
    last = _last_event_id(request)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    # Subscribing and reading the newest stored id happen with no await between them:
    # every event up to that id was fanned out before this subscriber existed, every
    # later one will be in its queue. Events from the log and from the queue are told
    # apart by id, so an event stored while the log is read is sent once.
    sub = m.subscribe(SSE_QUEUE)
    newest = m.events.last_id
    try:
        await resp.write(_sse("hello", {"type": "hello", **m.summary()}))
        if last is not None and last <= newest:  # a larger id is from another event log
            newest = max(newest, await _replay(m, resp, last))
        await _follow(m, sub, resp, newest)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        m.unsubscribe(sub)
    return resp


async def _replay(m: Monitor, resp: web.StreamResponse, after: int) -> int:
    """Send every stored event after ``after``; returns the id of the last one sent."""
    assert m.events is not None
    while True:
        page: list[Event] = await m.events.replay(after, REPLAY_PAGE)
        for e in page:
            await resp.write(_sse("state", {"type": "state", **event_json(e)}, e.id))
            after = e.id
        if len(page) < REPLAY_PAGE:
            return after


async def _follow(m: Monitor, sub: LiveSubscription, resp: web.StreamResponse, last: int) -> None:
    while True:
        try:
            message = await asyncio.wait_for(sub.queue.get(), timeout=15.0)
        except TimeoutError:
            await resp.write(b": keep-alive\n\n")
            continue
        if message is None or message.get("type") == "bye":
            return
        kind = str(message["type"])
        if kind == "resync":  # fell behind: what was dropped is in the log
            last = await _replay(m, resp, last)
            continue
        if kind == "state":
            eid = int(message["id"])
            if eid <= last:
                continue  # already sent from the log
            last = eid
            await resp.write(_sse(kind, message, eid))
        else:
            await resp.write(_sse(kind, message))


def _sse(kind: str, data: dict[str, Any], eid: int | None = None) -> bytes:
    head = f"id: {eid}\n" if eid is not None else ""
    body = json.dumps(_clean(data), ensure_ascii=False)
    return f"{head}event: {kind}\ndata: {body}\n\n".encode()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    if request.app[MONITOR].ready:
        return web.Response(text="ready\n")
    return web.Response(text="not ready\n", status=503)


async def reload_config(request: web.Request) -> web.Response:
    do = request.app[RELOAD]
    if do is None:
        return _error(409, "this monitor was not started from a config file")
    try:
        message = await do()
    except ConfigError as exc:
        return _json(
            {"error": "reload failed; the running config is kept", "problems": exc.lines()}, 400
        )
    except ConfmonError as exc:  # e.g. the demo, which has no config file to re-read
        return _error(409, str(exc))
    return _json({"status": "ok", "message": message})


def make_app(
    monitor: Monitor, token: str | None = None, reload: Reload | None = None
) -> web.Application:
    """The aiohttp application serving ``monitor``; ``reload`` serves ``POST /-/reload``."""
    app = web.Application(middlewares=[_errors, _auth(token)], client_max_size=MAX_BODY)
    app[MONITOR] = monitor
    app[RELOAD] = reload
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/points", points)
    app.router.add_get("/api/v1/points/{id}", point)
    app.router.add_get("/api/v1/districts", districts)
    app.router.add_get("/api/v1/events", events)
    app.router.add_get("/api/v1/stream", stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/-/reload", reload_config)
    return app


async def start_api(
    monitor: Monitor,
    host: str,
    port: int,
    token: str | None = None,
    *,
    reload: Reload | None = None,
) -> web.AppRunner:
    """Serve the API; returns the runner (``await runner.cleanup()`` to stop)."""
    runner = web.AppRunner(make_app(monitor, token, reload), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfmonError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return runner
