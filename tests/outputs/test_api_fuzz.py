"""Random requests against the real API (a started monitor, a real socket): random methods,
paths, query strings, headers (non-ASCII bytes, huge values) and bodies in every framing.
Never a 5xx other than a JSON 503, never a traceback in the logs, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.outputs.httpserver import Timeouts
from tests.outputs.rawhttp import TOKEN, Answer, hostile_api, parse

PATHS = [
    "/",
    "/metrics",
    "/healthz",
    "/readyz",
    "/api/v1/status",
    "/api/v1/points",
    "/api/v1/points/ba-vi",
    "/api/v1/points/ba-vi.tan-linh",
    "/api/v1/districts",
    "/api/v1/events",
    "/api/v1/stream",
    "/api/v1/acks",
    "/api/v1/notifications",
    "/-/reload",
    "/api/v1/nowhere",
    "*",
    "http://confmon/healthz",
]
HEADERS = [
    "Authorization",
    "Content-Length",
    "Transfer-Encoding",
    "Last-Event-ID",
    "Host",
    "Expect",
    "Connection",
    "Content-Type",
    "Content-Encoding",
    "Accept",
    "Upgrade",
    "X-Anything",
]
QUERY_KEYS = ["point", "district", "state", "since", "until", "before", "limit", "level", "x"]


class Collect(logging.Handler):
    """Every record logged, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Collect]]:
    """The API on a thread of its own (with its own loop), for blocking clients: (port, logs)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    collect = Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collect)
    root.setLevel(logging.DEBUG)
    ready: list[int] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        timeouts = Timeouts(header=3.0, idle=3.0, write=3.0, linger=0.5)
        async with hostile_api(tmp, max_connections=64, timeouts=timeouts, body_timeout=2.0) as (
            _,
            _server,
            port,
        ):
            ready.append(port)
            started.set()
            await stop.wait()

    def main() -> None:
        try:
            loop.run_until_complete(serve())
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=main, name="fuzz-api", daemon=True)
    thread.start()
    started.wait(30)
    assert ready, "the API did not start"
    try:
        yield ready[0], collect
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        root.removeHandler(collect)
        root.setLevel(level)


def _rarely(
    draw: st.DrawFn, common: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
) -> bytes:
    """Mostly ``common``, one time in five ``odd``: most requests reach a handler."""
    return draw(odd) if draw(st.integers(0, 4)) == 4 else draw(common)


_TEXT = st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass"))
_VALUES = {
    "Last-Event-ID": st.sampled_from([b"0", b"1", b"999999999999999999999", b"-1", b"\xff"]),
    "Expect": st.just(b"100-continue"),
    "Connection": st.sampled_from([b"keep-alive", b"Upgrade", b"close"]),
    "Upgrade": st.sampled_from([b"websocket", b"h2c"]),
    "Content-Encoding": st.sampled_from([b"gzip", b"deflate", b"br", b"zstd", b"x"]),
    "Content-Type": st.sampled_from([b"application/json", b"multipart/form-data; boundary=x"]),
    "Accept": st.sampled_from([b"text/html", b"*/*"]),
}


def _clean(raw: bytes) -> bytes:
    return raw.replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Mostly well-formed requests to real paths, each with a twist or two."""
    method = _rarely(
        draw,
        st.sampled_from(["GET"] * 6 + ["POST"] * 2 + ["HEAD", "PUT", "DELETE", "OPTIONS"]).map(
            str.encode
        ),
        st.sampled_from([b"FOO", b"get", "GÉT".encode()])
        | st.binary(min_size=1, max_size=12).filter(lambda b: b" " not in b),
    )
    path = draw(st.sampled_from(PATHS)).encode()
    path += _rarely(
        draw,
        st.just(b""),
        st.sampled_from([b"/", b"//", b"/..", b"%00", b"%ff%fe", "/ö".encode(), b"/" + b"a" * 9000])
        | _TEXT
        | st.binary(max_size=30),
    ).replace(b" ", b"%20")
    if draw(st.booleans()):
        pairs = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(QUERY_KEYS) | st.text(max_size=10),
                    st.sampled_from(
                        ["ba-vi", "down", "1", "0", "nan", "inf", "-1", "1e308", "9" * 25, "%ff"]
                    )
                    | st.text(max_size=20),
                ),
                max_size=5,
            )
        )
        if draw(st.integers(0, 4)) == 4:  # raw, as typed
            query = "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
        else:
            query = "&".join(
                f"{quote(k, errors='surrogatepass')}={quote(v, errors='surrogatepass')}"
                for k, v in pairs
            ).encode()
        path += b"?" + query.replace(b" ", b"+")
    version = _rarely(
        draw,
        st.just(b"HTTP/1.1"),
        st.sampled_from([b"HTTP/1.0", b"HTTP/2.0", b"HTP/1", b"HTTP/1.1x"]),
    )
    lines = [method + b" " + _clean(path) + b" " + version, b"Host: confmon"]
    token = b"Bearer " + TOKEN.encode()
    if draw(st.integers(0, 9)) < 9:
        lines.append(
            b"Authorization: "
            + _rarely(
                draw,
                st.just(token),
                st.sampled_from(
                    [b"bearer " + TOKEN.encode(), b"Bearer", b"Basic eA==", token + b"x"]
                )
                | st.binary(max_size=300).map(lambda b: b"Bearer " + _clean(b)),
            )
        )
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(HEADERS))
        named = name.encode()
        value = _rarely(
            draw,
            _VALUES.get(name, _TEXT),
            st.binary(max_size=100) | st.integers(1000, 20000).map(lambda n: b"v" * n),
        )
        if draw(st.integers(0, 9)) == 9:
            named = _clean(draw(st.binary(min_size=1, max_size=20)))
        lines.append(named + b": " + _clean(value))
    body = draw(st.binary(max_size=3000))
    framing = draw(
        st.sampled_from(["none", "none", "length", "chunked", "junk-length", "junk-chunks"])
    )
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif framing == "junk-length":
        lines.append(b"Content-Length: " + draw(st.sampled_from([b"-5", b"abc", b"1e3", b" "])))
    elif framing == "junk-chunks":
        lines.append(b"Transfer-Encoding: chunked")
        body = draw(st.binary(max_size=50)) + b"\r\n0\r\n\r\n"
    else:
        body = b""
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port: int, raw: bytes, within: float = 20.0) -> tuple[Answer, float]:
    """Send ``raw``; read the first final answer's head (and body, if it has a length)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(raw)
        data = b""
        deadline = start + within
        while True:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionError:
                break
            except TimeoutError:
                raise AssertionError(f"no answer within {within:g} s to {raw[:200]!r}") from None
            if not chunk:
                break
            data += chunk
            while data.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in data:  # 100 Continue
                data = data.split(b"\r\n\r\n", 1)[1]
            if b"\r\n\r\n" in data:
                answer = parse(data)
                length = answer.headers.get("content-length")
                if length is None or not length.isdigit() or len(answer.body) >= int(length):
                    break
        return parse(data), time.monotonic() - start


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(raw=requests())
def test_random_requests_get_an_answer_and_never_a_traceback(
    api: tuple[int, Collect], raw: bytes
) -> None:
    """Any request: an answer (or a closed connection) within a bounded time; a 5xx only as
    a JSON 503; nothing logged with a traceback, and nothing from aiohttp's own loggers."""
    port, logs = api
    answer, took = send(port, raw)
    assert took < 20
    if answer.status >= 500:
        assert answer.status == 503 and answer.is_json, answer.raw[:300]
    if answer.status >= 400 and answer.status != 401 and answer.body:
        assert answer.is_json, answer.raw[:300]
    with logs.guard:
        records = list(logs.records)
    bad = [
        r
        for r in records
        if r.exc_info
        or "Traceback" in r.getMessage()
        or r.name.startswith("aiohttp")
        or (r.name.startswith("asyncio") and r.levelno >= logging.WARNING)
    ]
    assert not bad, [(r.name, r.getMessage()[:300]) for r in bad]


def test_the_fuzzed_server_still_serves(api: tuple[int, Collect]) -> None:
    """After the random requests, /healthz still answers and nothing leaked into the log."""
    port, _logs = api
    answer, _ = send(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == 200
