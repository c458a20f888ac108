"""A real aiohttp server that plays an alert receiver: it records what arrives and answers
what the test scripts (200, 500, 429 with Retry-After, or nothing: not listening)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Arrival:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``answers``: the statuses to give next, in order (then ``default``); a status may be
    ``(429, {"Retry-After": "3"})``. Only answers of 2xx count as ``delivered``."""

    default: int = 200
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    body: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        for s in statuses:
            self.answers.append(s if isinstance(s, tuple) else (s, {}))

    @property
    def delivered(self) -> list[Arrival]:
        return [a for a in self.arrivals if 200 <= a.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status, headers = self.answers.popleft() if self.answers else (self.default, {})
        self.arrivals.append(
            Arrival(time.time(), request.path, dict(request.headers), body, status)
        )
        self._changed.set()
        return web.Response(status=status, headers=headers, text=self.body or "{}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        if not self.port:
            server = self._site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Stop listening (connections are refused until :meth:`start` again)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, n: int, within: float, delivered: bool = True) -> list[Arrival]:
        """Until ``n`` arrivals (2xx answers only, by default) have come in."""
        async with asyncio.timeout(within):
            while True:
                got = self.delivered if delivered else self.arrivals
                if len(got) >= n:
                    return got
                self._changed.clear()
                await self._changed.wait()
