"""The lab's HTTP status page: 200 JSON on the configured path, 404 elsewhere, HTTP/1.1 framing."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from monitor.lab import Impairment, Lab
from tests.lab.clients import http_get, read_http

HQ = "127.20.0.1"


async def test_status_path_answers_200_json(lab: Lab, ports: dict[str, int]) -> None:
    """GET of the status path is 200 with the point's id and Vietnamese name in UTF-8 JSON."""
    status, headers, body = await http_get(HQ, ports["http"], "/status")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["server"].startswith("confmon-lab/")
    assert "date" in headers
    assert json.loads(body) == {"point": "hq", "name": "Quận Ba Đình", "status": "ok"}
    assert "Quận Ba Đình".encode() in body  # not \u-escaped


async def test_other_paths_and_methods(lab: Lab, ports: dict[str, int]) -> None:
    """Another path is 404 JSON, POST on the status path 405, a query string is ignored, HEAD has no body."""
    status, _, body = await http_get(HQ, ports["http"], "/nope")
    assert status == 404 and json.loads(body)["error"] == "not found"
    status, headers, _ = await http_get(HQ, ports["http"], "/status", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, body = await http_get(HQ, ports["http"], "/status?probe=1")
    assert status == 200 and json.loads(body)["point"] == "hq"
    status, _, rest = await http_get(HQ, ports["http"], "/status", method="HEAD")
    assert status == 200 and rest == b""


async def test_aiohttp_client_reads_it(lab: Lab, ports: dict[str, int]) -> None:
    """A real HTTP client (aiohttp) gets the JSON, on another district's address too."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.20.0.4:{ports['http']}/status") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"point": "other", "name": "Huyện Ba Vì", "status": "ok"}


async def test_keep_alive_and_pipelining(lab: Lab, ports: dict[str, int]) -> None:
    """Three pipelined requests on one connection are answered in order; Connection: close ends it."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(HQ, ports["http"])
        try:
            writer.write(
                b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            answers = [await read_http(reader) for _ in range(3)]
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()
    assert [a[0] for a in answers] == [200, 404, 200]
    assert [a[1]["connection"] for a in answers] == ["keep-alive", "keep-alive", "close"]


async def test_http_status_override(lab: Lab, ports: dict[str, int]) -> None:
    """An http_status impairment answers the status page with that code and status "error"."""
    lab.set_impairment("hq", Impairment(http_status=503))
    status, _, body = await http_get(HQ, ports["http"], "/status")
    assert status == 503 and json.loads(body)["status"] == "error"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /status HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"BROKEN\r\n\r\n", 400),
        (b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST /status HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    ],
)
async def test_bad_requests_get_an_error_then_close(
    lab: Lab, ports: dict[str, int], request_bytes: bytes, status: int
) -> None:
    """Oversized heads, garbage, chunked and huge bodies get their 4xx/5xx and the connection closes."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(HQ, ports["http"])
        try:
            writer.write(request_bytes)
            answer = await read_http(reader)
            assert answer[0] == status and answer[1]["connection"] == "close"
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()


async def test_point_without_http_has_no_listener(lab: Lab, ports: dict[str, int]) -> None:
    """A commune whose profile has no http probe refuses connections on the HTTP port."""
    with pytest.raises(ConnectionRefusedError):
        await http_get("127.20.0.2", ports["http"], "/status")
