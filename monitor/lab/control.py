"""The lab's control API: change impairments of a running lab from another process.

A trainer's script, a test or ``curl`` talks to it over HTTP on a loopback
address (it has no authentication, so it refuses any other address):

- ``GET /impairments`` -> ``{"ba-dinh": {"delay": 0.04, ...}, ...}``, the points
  that have an impairment of their own (points below them are affected too).
- ``GET /impairments/{point}`` -> that point's impairment (healthy if none).
- ``PUT /impairments/{point}`` with a JSON object -> replaces it; fields left out
  are healthy. ``PATCH`` merges into the current one instead. Durations are
  seconds or strings (``"40ms"``), loss a ratio or a percentage (``"5%"``); see
  :class:`~monitor.lab.impairment.Impairment`. Answers the impairment now in force.
- ``DELETE /impairments/{point}`` heals one point, ``DELETE /impairments`` all: 204.
- ``GET /stats`` -> reply counters of the lab.

Every error is JSON ``{"error": "..."}``: 400 for a body that is not JSON (or is
JSON nested deeper than :data:`MAX_DEPTH`, or not an object) or a bad value,
404 for an unknown point or path, 405 for a wrong method, 413 for a body over
64 KiB. An impairment is a flat object, so the depth is checked before the body
is parsed: a body nested 30,000 deep is a 400 at once, not a ``RecursionError``.
aiohttp serves it: one site, where routing and JSON handling are worth a library
(the 10,000 status pages use :mod:`monitor.lab.http` instead).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from monitor.errors import ConfmonError
from monitor.lab.impairment import Impairment
from monitor.lab.lab import Lab, UnknownPointError
from monitor.outputs.httpserver import ApiServer, bind
from monitor.text import printable

__all__ = ["DEFAULT_CONTROL_PORT", "ControlServer"]

DEFAULT_CONTROL_PORT = 9109
_MAX_BODY = 64 * 1024
#: control connections at once (a script or two drive the lab; a flood gets 503s)
_MAX_CONNECTIONS = 64
MAX_DEPTH = 8
"""Deepest nesting of ``[`` and ``{`` accepted in a body (an impairment needs 1)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger("confmon.lab")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda obj: json.dumps(obj, ensure_ascii=False)
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


@web.middleware
async def _json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UnknownPointError as exc:
        return _error(404, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception as exc:  # a bug: a JSON 500 and one log line, not a page and a traceback
        log.error(
            "lab control: %s %s failed: %s: %s",
            request.method,
            printable(request.path, 200),
            type(exc).__name__,
            printable(str(exc), 200),
        )
        return _error(500, "internal error in the lab's control API")


def _depth(body: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text, brackets inside strings not counted.

    Linear, without recursion; a body that is not JSON gets some number and is
    refused by the parser afterwards.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class ControlServer:
    """The control API of one :class:`Lab`, as an async context manager."""

    def __init__(self, lab: Lab, *, host: str = "127.0.0.1", port: int = DEFAULT_CONTROL_PORT):
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfmonError(
                f"the lab control API has no authentication and listens only on loopback, not {host!r}"
            )
        self.lab = lab
        self.host = host
        self.port = port
        self._server: ApiServer | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9109``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        """The aiohttp application (exposed for tests)."""
        app = web.Application(middlewares=[_json_errors], client_max_size=_MAX_BODY)
        app.router.add_get("/impairments", self._list)
        app.router.add_delete("/impairments", self._clear_all)
        app.router.add_get("/impairments/{point}", self._get)
        app.router.add_put("/impairments/{point}", self._put)
        app.router.add_patch("/impairments/{point}", self._patch)
        app.router.add_delete("/impairments/{point}", self._delete)
        app.router.add_get("/stats", self._stats)
        return app

    async def start(self) -> None:
        """Listen; a busy port is a one-line ConfmonError.

        Served like the monitor's API (:class:`monitor.outputs.httpserver.ApiServer`): a
        connection cap, header and idle timeouts, and a malformed request is a JSON 400
        with at most one log line per 10 s, never a traceback."""
        try:
            sockets = await bind(self.host, self.port)
        except ConfmonError as exc:
            raise ConfmonError(
                f"{exc}; for the lab control API pick another --control-port (0 turns it off)"
            ) from None
        server = ApiServer(self.app(), sockets, max_connections=_MAX_CONNECTIONS)
        await server.start()
        self.port = server.ports[0]
        self._server = server

    async def stop(self) -> None:
        """Stop listening and close open control connections."""
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- handlers ---------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return _json({pid: imp.to_json() for pid, imp in self.lab.impairments().items()})

    async def _get(self, request: web.Request) -> web.Response:
        return _json(self.lab.impairment(request.match_info["point"]).to_json())

    async def _put(self, request: web.Request) -> web.Response:
        return await self._update(request, base=Impairment())

    async def _patch(self, request: web.Request) -> web.Response:
        return await self._update(request, base=None)

    async def _update(self, request: web.Request, base: Impairment | None) -> web.Response:
        point = request.match_info["point"]
        current = self.lab.impairment(point)  # 404 before looking at the body
        body = await request.read()
        if _depth(body) > MAX_DEPTH:
            return _error(400, f"the body is nested deeper than {MAX_DEPTH} levels")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return _error(400, f"the body is not JSON: {exc}")
        try:
            impairment = Impairment.from_json(data, base if base is not None else current)
        except ValueError as exc:
            return _error(400, str(exc))
        self.lab.set_impairment(point, impairment)
        return _json(impairment.to_json())

    async def _delete(self, request: web.Request) -> web.Response:
        self.lab.clear(request.match_info["point"])
        return web.Response(status=204)

    async def _clear_all(self, request: web.Request) -> web.Response:
        self.lab.clear()
        return web.Response(status=204)

    async def _stats(self, request: web.Request) -> web.Response:
        return _json({"points": len(self.lab.inventory.points), **self.lab.stats()})
