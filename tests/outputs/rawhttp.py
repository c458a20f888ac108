"""Raw HTTP/1.1 over real sockets, for requests no client library would send, and a monitor
served with test-sized limits and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.core.service import Monitor
from monitor.inventory import Inventory
from monitor.outputs.api import start_api
from monitor.outputs.httpserver import ApiServer, Timeouts, bind
from tests.outputs.fixtures import inventory

TOKEN = "s3cret"


@dataclass
class Answer:
    """A parsed response: status (0 when the server closed without one), headers, body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return Answer(0, raw=raw)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    return Answer(int(parts[1]), headers, body, raw)


async def read_answer(reader: asyncio.StreamReader, within: float = 20.0) -> Answer:
    """Read one response (to its Content-Length, else to EOF), bounded by ``within``."""
    data = b""
    async with asyncio.timeout(within):
        while b"\r\n\r\n" not in data:
            chunk = await reader.read(65536)
            if not chunk:
                return parse(data)
            data += chunk
        answer = parse(data)
        length = answer.headers.get("content-length")
        if length is not None and length.isdigit():
            head = data.index(b"\r\n\r\n") + 4
            while len(data) - head < int(length):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
        return parse(data)


async def exchange(port: int, request: bytes, within: float = 20.0) -> Answer:
    """Send ``request`` on a new connection and read one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        try:
            return await read_answer(reader, within)
        except ConnectionError:
            return Answer(0)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request(
    method: str = "GET",
    path: str = "/healthz",
    *headers: str | bytes,
    body: bytes = b"",
    close: bool = True,
) -> bytes:
    """A well-formed request (the pieces may be anything)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: confmon"]
    lines += [h.encode() if isinstance(h, str) else h for h in headers]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True once the server closed the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                if not await reader.read(65536):
                    return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


@contextlib.asynccontextmanager
async def hostile_api(
    tmp_path: Path,
    *,
    inv: Inventory | None = None,
    max_connections: int = 8,
    timeouts: Timeouts | None = None,
    body_timeout: float = 1.0,
    token: str | None = TOKEN,
    reload_calls: list[int] | None = None,
) -> AsyncIterator[tuple[Monitor, ApiServer, int]]:
    """A started monitor (no probing) whose API has test-sized limits: (monitor, server, port)."""
    monitor = Monitor(inv or inventory(), state_db=tmp_path / "ev.sqlite3")
    sockets = await bind("127.0.0.1", 0)
    calls = reload_calls if reload_calls is not None else []

    async def reload() -> str:
        calls.append(1)
        return "reloaded"

    await monitor.start()
    server = None
    try:
        server = await start_api(
            monitor,
            sockets,
            token,
            reload=reload,
            max_connections=max_connections,
            timeouts=timeouts or Timeouts(header=1.0, idle=2.0, write=1.0, linger=0.5),
            body_timeout=body_timeout,
        )
        yield monitor, server, sockets[0].getsockname()[1]
    finally:
        monitor.close_streams()
        if server is not None:
            await server.close()
        else:
            for sock in sockets:
                sock.close()
        await monitor.stop()


def small_receive_buffer() -> socket.socket:
    """A client socket whose receive window is tiny: a server writing to it stalls at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    return sock
