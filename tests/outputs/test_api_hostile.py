"""The API under hostile input, over real sockets: malformed requests, odd tokens, bodies in
every framing, idle and stalled connections, floods past the connection cap, a busy or broken
event log. Every answer is JSON, nothing is a traceback, and /healthz always gets in."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from monitor.core.events import Event
from monitor.core.health import State
from monitor.errors import ConfmonError, UsageError
from monitor.inventory import load_inventory
from monitor.outputs.eventlog import EventLog, LogBusy, LogUnavailable
from monitor.outputs.httpserver import RateLimitedLog, Timeouts, bind
from tests.helpers import CONFIGS, ROOT, free_port
from tests.outputs.rawhttp import (
    TOKEN,
    closed_by_server,
    exchange,
    hostile_api,
    read_answer,
    request,
    small_receive_buffer,
)

AUTH = f"Authorization: Bearer {TOKEN}"

MALFORMED = {
    "unknown method": b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    "not a request line": b"GARBAGE\r\n\r\n",
    "bad version": b"GET /healthz HTTP/9\r\n\r\n",
    "100 KB header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    "negative length": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "length not a number": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    "two lengths": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "header without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad chunk size": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "200 headers": b"GET /healthz HTTP/1.1\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(200))
    + b"\r\n",
}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text, caplog.text[-3000:]
    assert not [r for r in caplog.records if r.exc_info], caplog.text[-3000:]
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")], caplog.text[-3000:]


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_request_is_a_json_400_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Each kind of malformed request gets a JSON 400 saying what is wrong, and no traceback."""
    caplog.set_level(logging.DEBUG)
    async with hostile_api(tmp_path) as (_, _server, port):
        answer = await exchange(port, MALFORMED[name])
        assert answer.status == 400, answer.raw[:300]
        assert answer.is_json and answer.json()["error"].startswith("bad request")
        assert (await exchange(port, request())).status == 200
    no_tracebacks(caplog)


async def test_a_flood_of_malformed_requests_logs_a_line_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """300 malformed requests: all answered 400, and the log gets one line at once and one
    with the count when the interval ends, not 300 (nor 300 tracebacks)."""
    caplog.set_level(logging.DEBUG)
    async with hostile_api(tmp_path, max_connections=512) as (_, server, port):
        server.bad_requests.interval = 1.0
        kinds = list(MALFORMED.values())
        answers = await asyncio.gather(*(exchange(port, kinds[i % len(kinds)]) for i in range(300)))
        assert [a.status for a in answers] == [400] * 300
        await asyncio.sleep(1.5)  # the interval ends: the count is said
        lines = [r.getMessage() for r in caplog.records if r.name == "confmon.api"]
        assert 2 <= len(lines) <= 3, lines
        assert "299 more bad HTTP requests" in lines[1] or "more bad HTTP requests" in lines[-1]
        assert server.stats.bad_requests == 300
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer \xff\xfe\xfd",
        b"Bearer \xc3\x28",
        "Bearer tökén".encode(),
        b"Bearer " + TOKEN.encode() + b"\xff",
        b"Basic " + TOKEN.encode(),
        b"Bearer",
        b"\xff" * 5000,
    ],
)
async def test_odd_authorization_headers_are_401(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    """Non-ASCII bytes, a wrong scheme or a token with junk after it: 401 in JSON, not 500."""
    async with hostile_api(tmp_path) as (_, _server, port):
        answer = await exchange(port, request("GET", "/api/v1/status", b"Authorization: " + value))
        assert answer.status == 401, answer.raw[:300]
        assert answer.json() == {"error": "missing or wrong bearer token"}
        assert answer.headers["www-authenticate"].startswith("Bearer")
        ok = await exchange(port, request("GET", "/api/v1/status", b"authorization: bearer s3cret"))
        assert ok.status == 200  # the scheme is case-insensitive; the token is not
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "path",
    ["//api/v1/status", "/api/v1/../v1/status", "/%61pi/v1/status", "/API/v1/status", "/nowhere"],
)
async def test_no_spelling_of_a_path_gets_past_the_token(tmp_path: Path, path: str) -> None:
    """With a token set, only /healthz, /readyz and /metrics are open: any other spelling is
    401, so nothing the router might still match is reachable without it."""
    async with hostile_api(tmp_path) as (_, _server, port):
        answer = await exchange(port, request("GET", path))
        assert answer.status == 401, answer.raw[:300]


async def test_metrics_auth_puts_metrics_behind_the_token(tmp_path: Path) -> None:
    """metrics_auth: /metrics needs the token; the health checks stay open."""
    from monitor.core.service import Monitor
    from monitor.outputs.api import start_api
    from tests.outputs.fixtures import inventory

    monitor = Monitor(inventory(), state_db=tmp_path / "ev.sqlite3")
    await monitor.start()
    sockets = await bind("127.0.0.1", 0)
    server = await start_api(monitor, sockets, TOKEN, metrics_auth=True)
    port = sockets[0].getsockname()[1]
    try:
        assert (await exchange(port, request("GET", "/metrics"))).status == 401
        with_token = await exchange(port, request("GET", "/metrics", AUTH))
        assert with_token.status == 200 and b"confmon_points" in with_token.body
        assert (await exchange(port, request("GET", "/healthz"))).status == 200
    finally:
        await server.close()
        await monitor.stop()


def chunked(data: bytes, size: int = 8192) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        part = data[i : i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


async def test_body_limit_holds_whatever_the_framing(tmp_path: Path) -> None:
    """A 200 KB chunked body to /-/reload is 413 (and no reload happens), as are a declared
    70 KB one and a gzip bomb; a small chunked body is read and the reload runs."""
    calls: list[int] = []
    async with hostile_api(tmp_path, reload_calls=calls) as (_, _server, port):
        big = request("POST", "/-/reload", AUTH, "Transfer-Encoding: chunked")
        answer = await exchange(port, big + chunked(b"x" * 200_000))
        assert answer.status == 413 and answer.is_json, answer.raw[:300]
        assert "over 65536 bytes" in answer.json()["error"]
        declared = request("POST", "/-/reload", AUTH, "Content-Length: 70000", body=b"x" * 70000)
        assert (await exchange(port, declared)).status == 413
        assert calls == []
        small = request("POST", "/-/reload", AUTH, "Transfer-Encoding: chunked")
        answer = await exchange(port, small + chunked(b"y" * 100))
        assert answer.status == 200, answer.raw[:300]
        assert calls == [1]
        just_over = request("POST", "/-/reload", AUTH, "Transfer-Encoding: chunked")
        answer = await exchange(port, just_over + chunked(b"z" * (64 * 1024 + 1), 1000))
        assert answer.status == 413
        bomb = gzip.compress(b"\0" * 10_000_000)  # 10 MB of zeros in ~10 KB
        zipped = request(
            "POST", "/-/reload", AUTH, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}"
        )
        answer = await exchange(port, zipped + bomb)
        assert answer.status == 413, answer.raw[:300]  # counted once decompressed
        assert calls == [1]


async def test_a_body_that_never_arrives_is_a_408(tmp_path: Path) -> None:
    """Content-Length 100 and 10 bytes sent: 408 in JSON after the body timeout, not a hang."""
    async with hostile_api(tmp_path, body_timeout=1.0) as (_, _server, port):
        start = time.monotonic()
        answer = await exchange(
            port, request("POST", "/-/reload", AUTH, "Content-Length: 100", body=b"x" * 10)
        )
        assert answer.status == 408 and answer.is_json, answer.raw[:300]
        assert time.monotonic() - start < 15


async def test_silent_and_slow_connections_are_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    """A connection that sends nothing, and one that trickles its request head a byte at a
    time, are both closed once the header timeout has passed."""
    async with hostile_api(tmp_path, timeouts=Timeouts(header=1.0, idle=30.0)) as (_, server, port):
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                    slow_w.write(bytes([byte]))
                    await slow_w.drain()
                    await asyncio.sleep(0.05)

        dripping = asyncio.get_running_loop().create_task(trickle())
        try:
            assert await closed_by_server(silent_r, 20)
            assert await closed_by_server(slow_r, 20)
        finally:
            dripping.cancel()
            for w in (silent_w, slow_w):
                w.close()
        assert server.stats.header_timeouts >= 2


async def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    """After an answered request, a keep-alive connection left idle is closed by the server."""
    async with hostile_api(tmp_path, timeouts=Timeouts(header=5.0, idle=1.0)) as (_, _s, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request(close=False))
            assert (await read_answer(reader)).status == 200
            assert await closed_by_server(reader, 20)
        finally:
            writer.close()


async def test_at_the_cap_the_oldest_idle_connection_makes_room(tmp_path: Path) -> None:
    """With the cap reached by idle connections, /healthz still gets in: the oldest idle one
    is closed for it, and the API never holds more connections than the cap."""
    async with hostile_api(tmp_path, max_connections=8, timeouts=Timeouts(header=60, idle=60)) as (
        _,
        server,
        port,
    ):
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
        await wait_for(lambda: server.connections == 8)
        assert (await exchange(port, request())).status == 200
        assert await closed_by_server(idle[0][0], 10)  # the oldest made room
        # a flood of 200 more idle connections: the cap holds, /healthz keeps getting in
        flood = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]
        for _ in range(5):
            assert server.connections <= 8
            assert (await exchange(port, request())).status == 200
        assert server.stats.evicted >= 200
        for _r, w in idle + flood:
            w.close()


async def test_when_every_connection_is_busy_new_ones_are_refused(tmp_path: Path) -> None:
    """Eight connections busy sending a body: a ninth is refused with a JSON 503 and the API
    holds no more than its cap; once they are done, /healthz answers again."""
    slow_body_never = Timeouts(header=1.0, idle=2.0, write=1.0, linger=0.5, slow_body=60.0)
    async with hostile_api(
        tmp_path, max_connections=8, body_timeout=3.0, timeouts=slow_body_never
    ) as (_, server, port):
        busy = []
        for _ in range(8):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request("POST", "/-/reload", AUTH, "Content-Length: 1000", body=b"x"))
            busy.append((r, w))
        await wait_for(lambda: server.connections == 8)
        await asyncio.sleep(0.3)  # their heads are parsed: they are in a handler, not idle
        refused = await exchange(port, request())
        assert refused.status == 503, refused.raw[:300]
        assert refused.json()["error"].startswith("too many connections")
        assert server.connections <= 8 and server.stats.refused >= 1
        for r, _w in busy:  # the body timeout ends them with a 408
            assert (await read_answer(r)).status == 408
        await wait_for(lambda: server.connections == 0)  # after a short linger on the body
        assert (await exchange(port, request())).status == 200
        for _r, w in busy:
            w.close()


async def test_a_slow_body_flood_cannot_lock_healthz_out(tmp_path: Path) -> None:
    """Every connection sends a body a byte at a time: a newcomer evicts the one that has
    been at it longest instead of being refused, so /healthz answers."""
    async with hostile_api(tmp_path, max_connections=8, body_timeout=30.0) as (_, server, port):
        slow = []
        for _ in range(8):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request("POST", "/-/reload", AUTH, "Content-Length: 60000", body=b"xx"))
            slow.append((r, w))
        await wait_for(lambda: server.connections == 8)
        await asyncio.sleep(1.5)  # longer than slow_body (1 s): every one is evictable
        health = await exchange(port, request())
        assert health.status == 200, health.raw[:300]
        assert server.stats.evicted >= 1 and server.stats.refused == 0
        assert server.connections <= 8
        for _r, w in slow:
            w.close()


async def test_event_streams_have_their_own_cap(tmp_path: Path) -> None:
    """A quarter of the connections may be SSE streams: beyond that a JSON 503 with
    Retry-After, and a stream that closes frees its place."""
    async with hostile_api(tmp_path, max_connections=8) as (_, _server, port):
        streams = []
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request("GET", "/api/v1/stream", AUTH, close=False))
            async with asyncio.timeout(10):
                assert b"event: hello" in await r.readuntil(b"\n\n")
            streams.append((r, w))
        third = await exchange(port, request("GET", "/api/v1/stream", AUTH))
        assert third.status == 503 and "event streams are open" in third.json()["error"]
        assert third.headers["retry-after"] == "10"
        streams[0][1].close()
        await asyncio.sleep(2.5)  # the server notices at its next write (a summary a second)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(request("GET", "/api/v1/stream", AUTH, close=False))
        async with asyncio.timeout(10):
            assert b"event: hello" in await r.readuntil(b"\n\n")
        w.close()
        streams[1][1].close()


async def test_a_reader_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    """GET /metrics (450 points, ~800 KB) by a client that never reads: once the kernel's
    buffers are full, the server gives the response up after the write timeout instead of
    holding the connection (and its descriptor) for ever."""
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    async with hostile_api(
        tmp_path, inv=inv, token=None, timeouts=Timeouts(header=5, idle=60, write=1.0)
    ) as (_, server, port):
        sock = small_receive_buffer()
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await wait_for(lambda: len(server._connections) == 1)
        # the kernel would otherwise take the whole 800 KB into its send buffer (up to 4 MB):
        # a small one makes the stall show at once, as a bigger response would anyway
        (conn,) = server._connections
        assert conn.transport is not None
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        await loop.sock_sendall(sock, request("GET", "/metrics"))
        await wait_for(lambda: server.stats.write_timeouts >= 1, 30)
        await wait_for(lambda: server.connections == 0, 10)
        sock.close()


async def test_event_log_trouble_is_a_json_503_and_bugs_a_json_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LogBusy: 503 with Retry-After; LogUnavailable: 503; a wait of ours that ran out: 503;
    a bug: a JSON 500 and one log line. Never plain text, never a traceback."""
    caplog.set_level(logging.DEBUG)
    async with hostile_api(tmp_path) as (monitor, _server, port):
        assert monitor.eventlog is not None
        cases: list[tuple[BaseException, int]] = [
            (LogBusy("too many reads are waiting"), 503),
            (LogUnavailable("the event log cannot be read: disk I/O error"), 503),
            (TimeoutError(), 503),
            (RuntimeError("a bug"), 500),
        ]
        now: list[BaseException] = []

        async def failing(**_kw: object) -> list[dict[str, object]]:
            raise now[-1]

        monkeypatch.setattr(monitor.eventlog, "query", failing)
        for path in ("/api/v1/events", "/api/v1/points/ba-vi"):
            for exc, status in cases:
                now.append(exc)
                answer = await exchange(port, request("GET", path, AUTH))
                assert answer.status == status and answer.is_json, (exc, answer.raw[:300])
                assert answer.json()["error"]
                if isinstance(exc, LogBusy):
                    assert answer.headers["retry-after"].isdigit()
                    assert answer.json()["error"] == "too many reads are waiting"
        lines = [r for r in caplog.records if r.name == "confmon.api"]
        assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
    no_tracebacks(caplog)


async def test_a_stream_whose_replay_fails_ends_with_an_error_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconnecting SSE client whose catch-up cannot be read gets an ``error`` event with a
    ``retry`` hint and the stream ends (it reconnects and is caught up then)."""
    async with hostile_api(tmp_path) as (monitor, _server, port):
        assert monitor.events is not None
        await monitor.eventlog.append(  # type: ignore[union-attr]
            [Event("ba-vi", State.UNKNOWN, State.UP, "first result", time.time())]
        )

        async def failing(after: int, limit: int = 1000) -> list[Event]:
            raise LogUnavailable("the event log cannot be read: disk I/O error")

        monkeypatch.setattr(monitor.events, "replay", failing)
        monkeypatch.setattr(monitor.events, "last_id", 1, raising=False)
        raw = request("GET", "/api/v1/stream", AUTH, "Last-Event-ID: 0")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        data = b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                data += chunk
        writer.close()
        assert b"event: hello" in data and b"retry: 5000\nevent: error" in data
        assert b"disk I/O error" in data


async def test_150_concurrent_event_queries_on_a_large_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """150 concurrent /api/v1/events queries on a log of 60,000 events: every answer is a
    200 or a JSON 503, and nothing is logged as a traceback."""
    caplog.set_level(logging.INFO)
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    ids = list(inv.points)
    log = await EventLog.open(
        tmp_path / "ev.sqlite3", {p.id: p.district for p in inv.points.values()}
    )
    now = time.time() - 86400
    states = [State.UP, State.DOWN, State.UNREACHABLE, State.DEGRADED]
    for batch in range(12):
        await log.append(
            [
                Event(
                    ids[i % len(ids)],
                    states[i % 4],
                    states[(i + 1) % 4],
                    f"test change {i}",
                    now + batch * 5000 + i,
                )
                for i in range(5000)
            ]
        )
    await log.close()
    async with hostile_api(tmp_path, inv=inv, token=None, max_connections=256) as (_, _s, port):
        base = f"http://127.0.0.1:{port}"
        queries = [
            "/api/v1/events?limit=1000",
            "/api/v1/events?state=degraded&limit=1000",
            "/api/v1/events?point=ba-vi&limit=1000",
            f"/api/v1/events?since={now + 30000}&limit=1000",
            "/api/v1/events?district=soc-son&state=down&limit=1000",
        ]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int) -> tuple[int, str, str]:
                path = queries[i % len(queries)]
                async with session.get(base + path, timeout=aiohttp.ClientTimeout(total=120)) as r:
                    return r.status, r.content_type, await r.text()

            answers = await asyncio.gather(*(one(i) for i in range(150)))
        for status, ctype, text in answers:
            assert status in (200, 503), text[:300]
            assert ctype == "application/json", text[:300]
            if status == 503:
                assert json.loads(text)["error"]
        assert sum(1 for s, _, _ in answers if s == 200) >= 1
    no_tracebacks(caplog)


async def test_bind_says_what_is_wrong_with_an_address() -> None:
    """A name that does not resolve and an address not on this machine are usage errors
    (exit 2); an address in use is a runtime error (exit 1); each is one line."""
    with pytest.raises(UsageError, match="does not resolve"):
        await bind("nosuchhost.invalid", 9201)
    with pytest.raises(UsageError, match="not an address of this machine"):
        await bind("192.0.2.77", 9201)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(ConfmonError, match="the address is in use") as caught:
            await bind("127.0.0.1", taken.getsockname()[1])
        assert caught.value.exit_code == 1
    finally:
        taken.close()
    sockets = await bind("localhost", free_port())
    assert sockets and all(s.fileno() >= 0 for s in sockets)
    for s in sockets:
        s.close()


async def test_rate_limited_log_counts_what_it_does_not_show(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """First line at once, then one line per interval with the count and the last message."""
    caplog.set_level(logging.INFO)
    said = RateLimitedLog(logging.getLogger("confmon.test"), logging.WARNING, "oddities", 0.3)
    for i in range(50):
        said(f"oddity {i}")
    assert [r.getMessage() for r in caplog.records] == ["oddity 0"]
    await asyncio.sleep(0.5)
    assert caplog.records[-1].getMessage().startswith("49 more oddities in the last 0.3 s")
    assert caplog.records[-1].getMessage().endswith("the last: oddity 49")
    await asyncio.sleep(0.5)  # nothing new: nothing said
    assert len(caplog.records) == 2
    said("again")
    assert caplog.records[-1].getMessage() == "again"
    said.close()


_OUT_OF_FILES = textwrap.dedent(
    """
    import asyncio, logging, os, resource, signal, sys
    from aiohttp import web
    from monitor.outputs.httpserver import ApiServer, bind

    async def main():
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
        app = web.Application()
        async def healthz(request):
            return web.Response(text="ok")
        app.router.add_get("/healthz", healthz)
        sockets = await bind("127.0.0.1", 0)
        server = ApiServer(app, sockets, max_connections=100)
        await server.start()
        hog = []
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        print(sockets[0].getsockname()[1], flush=True)
        freed = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, freed.set)
        await freed.wait()
        for fd in hog:
            os.close(fd)
        await asyncio.sleep(15)
        await server.close()

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    asyncio.run(main())
    """
)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_accept_out_of_descriptors_neither_spins_nor_floods_the_log() -> None:
    """A server with no descriptor left and clients waiting: accept() fails with EMFILE, the
    server pauses and retries each second (little CPU, a line or two in the log), and serves
    the clients as soon as descriptors are free again."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _OUT_OF_FILES],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", port), timeout=20)
            c.sendall(request())
            clients.append(c)
        before = _cpu_seconds(proc.pid)
        time.sleep(4)
        spent = _cpu_seconds(proc.pid) - before
        assert spent < 1.5, f"{spent:.2f} s of CPU in 4 s: accepting spins"
        proc.send_signal(signal.SIGUSR1)
        for c in clients:
            c.settimeout(20)
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    accept_lines = [line for line in err.splitlines() if "accept" in line]
    assert 1 <= len(accept_lines) <= 3, err
    assert os.strerror(errno.EMFILE) in accept_lines[0], err


async def wait_for(check: Callable[[], bool], within: float = 10.0) -> None:
    """Poll the server's counters (bounded)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - counters of the server under test, polled
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("expect", [b"!", b"\x80", b"100-continue-please", b"x" * 300])
async def test_an_unknown_expect_header_is_a_json_417(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, expect: bytes
) -> None:
    """aiohttp answers an Expect it does not know before any middleware, in plain text (a
    500 for a byte that is not ASCII): found by the fuzz test. JSON 417 like every other
    bad request, and 100-continue still works."""
    caplog.set_level(logging.DEBUG)
    async with hostile_api(tmp_path) as (_, _server, port):
        answer = await exchange(port, request("GET", "/healthz", b"Expect: " + expect))
        assert answer.status == 417, answer.raw[:300]
        assert answer.is_json and answer.json()["error"].startswith("bad request: unknown Expect")
        body = b'{"x": 1}'
        cont = request(
            "POST", "/-/reload", "Expect: 100-continue", f"Content-Length: {len(body)}", body=body
        )
        assert (await exchange(port, cont)).status != 417
    no_tracebacks(caplog)
