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
- ``GET /api/v1/notifications?receiver=&limit=``: each alert receiver's figures
  (pending, delivered, failed, last error) and the newest notifications with their
  outcome (attempts, last answer), newest first.
- ``GET /api/v1/stream``: Server-Sent Events: ``state`` (each change, with ``id:``
  the event's id), ``summary`` (each second), ``hello`` (the summary at connect). A
  client that reconnects with ``Last-Event-ID: N`` (browsers' EventSource does it by
  itself) first receives every event after N from the event log, in order, then the
  live ones: none missed, none twice. A client too slow to keep up is caught up the
  same way from the log instead of being cut off.
- ``GET /healthz`` (process alive), ``GET /readyz`` (monitor started).
- ``POST /-/reload``: re-read the config (like SIGHUP).

With a bearer token configured, every path (``/api/*``, ``/-/*``, and unknown
ones: no spelling of a path gets past the check) needs ``Authorization: Bearer
<token>``, compared as bytes in constant time whatever the header holds;
``/metrics`` and the health checks stay open (Prometheus and load balancers
scrape them) unless ``metrics_auth`` puts ``/metrics`` behind the token too.

Hostile input: a request body is read here, whatever its framing (length or
chunked), up to 64 KiB and for at most ``body_timeout`` seconds (413 and 408 in
JSON otherwise); at most ``max_streams`` SSE streams run at once (503 beyond);
the event log being busy or unreadable is a JSON 503 (``Retry-After`` when busy);
any other error in a handler is a JSON 500 and one log line, never a plain-text
500 or a traceback. Connections, their timeouts and malformed requests are
handled below, in :mod:`monitor.outputs.httpserver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from monitor.core.acks import NotInTrouble
from monitor.core.events import Event, LiveSubscription, event_json
from monitor.core.health import STATES, PointHealth
from monitor.core.results import ProbeResult, result_json
from monitor.core.service import Monitor
from monitor.errors import ConfigError, ConfmonError
from monitor.outputs.eventlog import LogBusy, LogUnavailable
from monitor.outputs.httpserver import (
    DEFAULT_MAX_CONNECTIONS,
    ApiServer,
    BodyReader,
    RateLimitedLog,
    Timeouts,
)
from monitor.outputs.metrics import CONTENT_TYPE
from monitor.text import printable, quoted

__all__ = ["BODY_TIMEOUT", "MAX_BODY", "make_app", "start_api"]

log = logging.getLogger("confmon.api")

MAX_BODY = 64 * 1024
#: how long a request body may take to arrive
BODY_TIMEOUT = 10.0
#: seconds a client is asked to wait (``Retry-After``) when the event log is busy
RETRY_AFTER = 2
MONITOR: web.AppKey[Monitor] = web.AppKey("monitor", Monitor)
Reload = Callable[[], Awaitable[str]]
RELOAD: web.AppKey[Reload | None] = web.AppKey("reload")
STREAMS: web.AppKey[_Streams] = web.AppKey("streams")
ERRORS: web.AppKey[RateLimitedLog] = web.AppKey("errors", RateLimitedLog)
BODY_WAIT: web.AppKey[float] = web.AppKey("body_timeout", float)
#: the request's body, read by the body middleware (absent when there is none)
BODY: web.RequestKey[bytes] = web.RequestKey("body", bytes)
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


class _BadBody(Exception):
    """A request body refused: ``status`` and the message say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Streams:
    """How many SSE streams run, and how many may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live = 0


def _param_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _BadParam(f"{name}: {quoted(raw)} is not a number (Unix seconds)") from None
    if not math.isfinite(value):
        raise _BadParam(f"{name}: {quoted(raw)} is not a finite number")
    return value


def _param_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadParam(f"{name}: {quoted(raw)} is not a whole number") from None
    if not lo <= value <= hi:
        raise _BadParam(f"{name}: {value} is out of range {lo}..{hi}")
    return value


def _param_state(request: web.Request) -> str | None:
    raw = request.query.get("state")
    if raw is not None and raw not in {s.value for s in STATES}:
        raise _BadParam(f"state: {quoted(raw)} is not one of {', '.join(s.value for s in STATES)}")
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
    """Every failure of a handler as a JSON answer; a bug as a JSON 500 and one log line."""
    try:
        return await handler(request)
    except _BadParam as exc:
        return _error(400, str(exc))
    except _BadBody as exc:
        resp = _error(exc.status, str(exc))
        resp.force_close()  # what is left of the body is not read: this connection is done
        return resp
    except LogBusy as exc:
        resp = _error(503, str(exc) or "the event log is busy; try again shortly")
        resp.headers["Retry-After"] = str(RETRY_AFTER)
        return resp
    except LogUnavailable as exc:
        return _error(503, str(exc) or "the event log cannot be read now")
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error(404, f"no such path {quoted(request.path)}")
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ())))
            resp = _error(
                405, f"{printable(request.method, 20)} is not allowed here; use {allowed}"
            )
            resp.headers["Allow"] = allowed
            return resp
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason)
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise  # the client went away (or the server is stopping): nothing to answer
    except Exception as exc:
        return _failed(request, exc)


def _failed(request: web.Request, exc: Exception) -> web.Response:
    """A handler's unexpected error: one (rate-limited) log line and a JSON 500, or a 503 for
    a wait of ours that ran out."""
    timed_out = isinstance(exc, TimeoutError)
    request.app[ERRORS](
        f"{'timed out' if timed_out else 'error'} answering {printable(request.method, 20)} "
        f"{quoted(request.path)}: {type(exc).__name__}: {printable(str(exc), 200)}"
    )
    if request.writer.output_size > 0:
        # a stream whose head is out: no other answer fits; close the connection
        raise ConnectionResetError("the response has started") from None
    if timed_out:
        resp = _error(503, "the monitor is too busy to answer now; try again shortly")
        resp.headers["Retry-After"] = str(RETRY_AFTER)
        return resp
    return _error(500, "internal error (logged)")


def _header_bytes(value: str) -> bytes | None:
    """A header value as the bytes that came on the wire (aiohttp decodes them as UTF-8 with
    surrogate escapes), or None if it cannot be (then it matches no token)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeError:
        return None


#: paths open without the token: health checks for load balancers, metrics for scrapers
_OPEN = frozenset({"/healthz", "/readyz", "/metrics"})


def _auth(token: str | None, metrics: bool = False) -> Middleware:
    """With a token, every path but the open ones needs it (unknown paths too: nothing is
    reachable by a spelling the check did not foresee)."""
    expected = token.encode("utf-8") if token else b""
    open_paths = _OPEN - {"/metrics"} if metrics else _OPEN

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path not in open_paths:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            raw = _header_bytes(given.strip())
            # compared whatever the scheme: the time taken says nothing about the token
            same = hmac.compare_digest(raw if raw is not None else b"", expected)
            if not (same and raw is not None and scheme.lower() == "bearer"):
                return web.Response(
                    text=json.dumps({"error": "missing or wrong bearer token"}),
                    status=401,
                    content_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="confmon"'},
                )
        return await handler(request)

    return check


@web.middleware
async def _body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole request body, whatever its framing, before the handler runs: at most
    :data:`MAX_BODY` bytes (413) within the app's body timeout (408), kept as
    ``request[BODY]``; reading it here is what makes the limit hold for chunked bodies too."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _BadBody(413, f"request body over {MAX_BODY} bytes")
    if request.body_exists:
        limit = request.app[BODY_WAIT]
        size = 0
        chunks: list[bytes] = []
        conn = request.protocol
        if isinstance(conn, BodyReader):  # at the connection cap, slow senders go first
            conn.body_since = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(limit):
                while chunk := await request.content.read(MAX_BODY + 1):
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise _BadBody(413, f"request body over {MAX_BODY} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise _BadBody(408, f"the request body did not arrive within {limit:g} s") from None
        except (_BadBody, asyncio.CancelledError):
            raise
        except ConnectionError:  # the client went away mid-body: no bug of ours to log
            raise _BadBody(
                400, "the client closed the connection before its body arrived"
            ) from None
        except Exception as exc:  # a malformed chunk: the parser's error
            raise _BadBody(400, f"bad request body: {printable(str(exc), 200)}") from None
        finally:
            if isinstance(conn, BodyReader):
                conn.body_since = None
        request[BODY] = b"".join(chunks)
    return await handler(request)


async def metrics(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    body = m.writer.render() + m.telemetry.render()
    return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


async def status(request: web.Request) -> web.Response:
    return _json(request.app[MONITOR].summary())


async def agents(request: web.Request) -> web.Response:
    """The agents a server knows (online, last seen, points, results); none in ``run``."""
    return _json({"agents": request.app[MONITOR].agent_listing()})


async def points(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    district = request.query.get("district")
    level = request.query.get("level")
    state = _param_state(request)
    if district is not None and district not in m.model.district_counts:
        raise _BadParam(
            f"district: {quoted(district)} is not a district id (see /api/v1/districts)"
        )
    out = [
        _point_json(h)
        for h in m.model.points.values()
        if (district is None or h.point.district == district)
        and (state is None or h.state.value == state)
        and (level is None or h.point.level == level)
    ]
    return _json({"points": out, "count": len(out)})


def _probe_json(r: ProbeResult, described: ProbeResult | None, host: str) -> dict[str, Any]:
    """A probe's latest result; when it came without its phases (an agent's steady result),
    also the last one that had them, as ``described``. A result from an agent names no
    target (the wire does not carry it): the point's ``host`` is shown."""
    out = result_json(r)
    if not out["target"]:
        out["target"] = host
    if described is not None and described is not r and not r.phases:
        out["described"] = _probe_json(described, None, host)
    return out


async def point(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    pid = request.match_info["id"]
    h = m.model.points.get(pid)
    if h is None:
        return _error(404, f"no point {quoted(pid)}")
    data = _point_json(h)
    data["children"] = list(h.point.children)
    data["profile"] = h.point.profile
    data["probes"] = {
        name: _probe_json(r, h.described.get(name), h.point.host) for name, r in h.latest.items()
    }
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


async def notifications(request: web.Request) -> web.Response:
    m = request.app[MONITOR]
    alerts = m.alerts
    limit = _param_int(request, "limit", 50, 1, 1000)
    receiver = request.query.get("receiver")
    if alerts is None:
        if receiver is not None:
            raise _BadParam(f"receiver: {quoted(receiver)}: no receivers are configured")
        return _json({"receivers": [], "notifications": []})
    if receiver is not None and receiver not in alerts.receivers:
        names = ", ".join(alerts.receivers) or "none"
        raise _BadParam(f"receiver: {quoted(receiver)} is not a receiver (configured: {names})")
    rows = await alerts.recent(limit, receiver)
    return _json({"receivers": await alerts.status(), "notifications": rows})


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
    if raw is None or not raw.strip():
        return None
    if not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw.strip()) > 18:
        raise _BadParam(f"Last-Event-ID: {quoted(raw, 40)} is not an event id")
    return int(raw)


async def stream(request: web.Request) -> web.StreamResponse:
    m = request.app[MONITOR]
    if m.events is None:
        return _error(503, "the monitor is not started yet")
    last = _last_event_id(request)
    streams = request.app[STREAMS]
    if streams.live >= streams.limit:
        resp = _error(503, f"{streams.limit} event streams are open already; try again later")
        resp.headers["Retry-After"] = "10"
        return resp
    streams.live += 1
    try:
        return await _stream(request, m, last)
    finally:
        streams.live -= 1


async def _stream(request: web.Request, m: Monitor, last: int | None) -> web.StreamResponse:
    assert m.events is not None
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
    except (LogBusy, LogUnavailable, TimeoutError) as exc:
        # the log cannot be read to catch this client up: it reconnects with Last-Event-ID
        # (EventSource does by itself, after ``retry``) and is caught up then
        message = str(exc) or "the event log cannot be read now"
        with contextlib.suppress(ConnectionError):
            await resp.write(b"retry: 5000\n" + _sse("error", {"type": "error", "error": message}))
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


async def acks(request: web.Request) -> web.Response:
    return _json({"acks": [a.json() for a in request.app[MONITOR].acks.active()]})


async def acknowledge(request: web.Request) -> web.Response:
    """``{"cause": ID, "by": "who"}``: acknowledge the incident of ``cause`` (a point id, or
    ``agent:ID``) while it lasts; its alert reminders stop."""
    try:
        body = json.loads(request.get(BODY, b"") or b"null")
    except (ValueError, RecursionError):
        return _error(400, 'the body must be JSON: {"cause": "POINT", "by": "NAME"}')
    if not isinstance(body, dict) or not isinstance(body.get("cause"), str):
        return _error(400, 'the body must be {"cause": "POINT", "by": "NAME"} (cause is required)')
    cause, by = body["cause"], body.get("by", "")
    if not isinstance(by, str):
        return _error(400, '"by" must be a string (who acknowledges)')
    m = request.app[MONITOR]
    try:
        ack = await m.acknowledge(cause, printable(by.strip(), 60) or "operator", time.time())
    except NotInTrouble:
        known = cause in m.model.points or cause.startswith("agent:")
        why = "has no incident going on" if known else "is not a point of the inventory"
        return _error(409 if known else 404, f"{quoted(cause)} {why}")
    log.info("incident %s acknowledged by %s", ack.cause, ack.by)
    return _json(ack.json(), 201)


def make_app(
    monitor: Monitor,
    token: str | None = None,
    reload: Reload | None = None,
    *,
    metrics_auth: bool = False,
    max_streams: int = DEFAULT_MAX_CONNECTIONS // 4,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    """The aiohttp application serving ``monitor``; ``reload`` serves ``POST /-/reload``.

    ``metrics_auth`` puts ``/metrics`` behind the token too; ``max_streams`` bounds the SSE
    streams open at once.
    """
    app = web.Application(
        middlewares=[_errors, _auth(token, metrics_auth), _body], client_max_size=MAX_BODY
    )
    app[MONITOR] = monitor
    app[RELOAD] = reload
    app[STREAMS] = _Streams(max(1, max_streams))
    app[ERRORS] = RateLimitedLog(log, logging.ERROR, "API errors")
    app[BODY_WAIT] = body_timeout
    app.on_cleanup.append(_close_errors)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/agents", agents)
    app.router.add_get("/api/v1/points", points)
    app.router.add_get("/api/v1/points/{id}", point)
    app.router.add_get("/api/v1/districts", districts)
    app.router.add_get("/api/v1/events", events)
    app.router.add_get("/api/v1/stream", stream)
    app.router.add_get("/api/v1/notifications", notifications)
    app.router.add_get("/api/v1/acks", acks)
    app.router.add_post("/api/v1/acks", acknowledge)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/-/reload", reload_config)
    return app


async def _close_errors(app: web.Application) -> None:
    app[ERRORS].close()


async def start_api(
    monitor: Monitor,
    sockets: list[socket.socket],
    token: str | None = None,
    *,
    reload: Reload | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    metrics_auth: bool = False,
    timeouts: Timeouts | None = None,
    body_timeout: float = BODY_TIMEOUT,
) -> ApiServer:
    """Serve the API on ``sockets`` (bound by :func:`monitor.outputs.httpserver.bind`);
    ``await server.close()`` to stop. A quarter of ``max_connections`` may be SSE streams."""
    app = make_app(
        monitor,
        token,
        reload,
        metrics_auth=metrics_auth,
        max_streams=max_connections // 4,
        body_timeout=body_timeout,
    )
    server = ApiServer(app, sockets, max_connections=max_connections, timeouts=timeouts)
    await server.start()
    return server
