"""The lab's control API and HTTP status pages under hostile requests: a 4xx, never a 500.

Real servers on this module's loopback block (127.62.0.0/16): the control API of a
running lab, and the lab's own status-page responder spoken to over raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.inventory import load_inventory
from monitor.lab import Lab, lab_inventory
from monitor.lab.control import MAX_DEPTH, ControlServer
from tests.lab.clients import TEST_INVENTORY, free_ports

BASE = IPv4Address("127.62.1.1")  # the lab's points: 127.62.1.1 ..
CONTROL_HOST = "127.62.0.1"


@pytest.fixture
async def hostile_lab(tmp_path: Path) -> AsyncIterator[tuple[Lab, str, int]]:
    """A running lab on 127.62.1.x and its control API on 127.62.0.1: (lab, url, http port)."""
    sip, media, http = free_ports(3)
    path = tmp_path / "lab.yaml"
    path.write_text(TEST_INVENTORY.format(sip=sip, media=media, http=http), encoding="utf-8")
    inv = lab_inventory(load_inventory(path), BASE)
    async with Lab(inv, seed=3) as lab, ControlServer(lab, host=CONTROL_HOST, port=0) as control:
        yield lab, control.url, http


async def _send(
    url: str, method: str, body: bytes, ctype: str = "application/json"
) -> tuple[int, str, object]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            url,
            data=body,
            headers={"Content-Type": ctype},
            timeout=aiohttp.ClientTimeout(total=20),
        ) as r,
    ):
        text = await r.text()
        try:
            data: object = json.loads(text) if text else None
        except ValueError:
            data = text
        return r.status, r.content_type, data


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 30_000 + b"]" * 30_000, f"nested deeper than {MAX_DEPTH} levels"),
        (b'{"delay": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested deeper than"),
        (b"\xff\xfe\x00garbage", "the body is not JSON"),
        (b'{"delay": [1, 2]}', "delay"),
        (b'{"delay": NaN}', "delay"),
        (b'{"delay": 1e999}', "delay"),
        (b'{"loss": {"a": 1}}', "loss"),
        (b'{"sip_status": "\xc2\xb2"}', "sip_status"),
        (b'{"distribution": ["normal"]}', "distribution"),
        (b'{"down": "perhaps"}', "down"),
        (b"[]", "expected a JSON object"),
        (b'"40ms"', "expected a JSON object"),
        (b"", "the body is not JSON"),
    ],
)
async def test_bad_bodies_are_json_400s(
    hostile_lab: tuple[Lab, str, int], body: bytes, message: str
) -> None:
    """Deep, malformed and wrongly typed bodies: 400 with a JSON error saying what, lab unchanged."""
    lab, url, _ = hostile_lab
    for method in ("PUT", "PATCH"):
        status, ctype, data = await _send(f"{url}/impairments/hq", method, body)
        assert (status, ctype) == (400, "application/json"), data
        assert isinstance(data, dict) and message in data["error"], data
    assert lab.impairments() == {}


async def test_a_body_over_64_kib_is_a_json_413(hostile_lab: tuple[Lab, str, int]) -> None:
    """Even a valid one: 413 and JSON, the lab unchanged."""
    lab, url, _ = hostile_lab
    body = json.dumps({"delay": "40ms", "pad": "x" * 70_000}).encode()
    status, ctype, _ = await _send(f"{url}/impairments/hq", "PUT", body)
    assert (status, ctype) == (413, "application/json")
    assert lab.impairments() == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
keys = st.sampled_from(
    ["delay", "jitter", "distribution", "loss", "down", "sip_status", "http_status", "x"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.dictionaries(keys, json_values, max_size=4).map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
    ),
    method=st.sampled_from(["PUT", "PATCH", "POST", "DELETE", "GET"]),
    point=st.sampled_from(["hq", "hq.a", "nope", "%00", "..%2F", "x" * 300]),
)
async def test_random_requests_never_get_a_500(
    hostile_lab: tuple[Lab, str, int], body: bytes, method: str, point: str
) -> None:
    """Whatever the body, method and point: a JSON answer below 500."""
    _, url, _ = hostile_lab
    status, ctype, data = await _send(f"{url}/impairments/{point}", method, body)
    assert status < 500, data
    if status >= 400:
        assert ctype == "application/json" and isinstance(data, dict) and "error" in data


async def _raw(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 20)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "length",
    ["²", "٣", "1" * 5000, "-5", "+5", "0x10", " ", "1 2"],
)
async def test_status_page_refuses_a_bad_content_length_with_400(
    hostile_lab: tuple[Lab, str, int], length: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Content-Length that is not plain ASCII digits: 400, no exception in the lab's loop."""
    _, _, port = hostile_lab
    caplog.set_level(logging.ERROR)
    head = f"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    answer = await _raw(str(BASE), port, head.encode("latin-1", "replace"))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    ok = await _raw(
        str(BASE), port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /impairments/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /impairments/a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"FOO / HTTP/1.1\r\n\r\n",
    ],
)
async def test_a_malformed_request_is_a_json_400_and_no_traceback(
    hostile_lab: tuple[Lab, str, int], request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are not HTTP get the monitor API's treatment: a JSON 400 and at most a
    one-line warning, never a traceback in the lab's log."""
    _, url, _ = hostile_lab
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request_bytes)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", answer
    assert b"application/json" in head.lower(), answer
    assert "error" in json.loads(body)
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
