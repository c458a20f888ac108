"""The lab's control API, over real HTTP: impairments set, read and cleared from another client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.errors import ConfmonError
from monitor.lab import Lab
from monitor.lab.control import ControlServer
from tests.lab.test_impairments import echo_rtts


@pytest.fixture
async def control(lab: Lab) -> AsyncIterator[str]:
    """The control API of the test lab, on a free port; yields its base URL."""
    async with ControlServer(lab, port=0) as server:
        yield server.url


async def test_round_trip(lab: Lab, control: str, ports: dict[str, int]) -> None:
    """PUT, GET, PATCH and DELETE over HTTP change what the lab does, and read back."""
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{control}/impairments/hq", json={"down": True}) as r:
            assert r.status == 200 and (await r.json())["down"] is True
        assert await echo_rtts("127.20.0.1", ports["media"], 5) == {}
        async with http.patch(
            f"{control}/impairments/hq", json={"down": False, "delay": "40ms"}
        ) as r:
            assert r.status == 200
        async with http.patch(f"{control}/impairments/hq", json={"loss": "5%"}) as r:
            assert await r.json() == {
                "delay": 0.04,
                "jitter": 0.0,
                "distribution": "uniform",
                "loss": 0.05,
                "down": False,
                "sip_status": None,
                "http_status": None,
            }
        async with http.get(f"{control}/impairments") as r:
            assert list(await r.json()) == ["hq"]
        async with http.put(f"{control}/impairments/hq.a", json={"jitter": 0.01}) as r:
            assert (await r.json())["delay"] == 0.0  # PUT replaces: fields left out are healthy
        async with http.delete(f"{control}/impairments/hq") as r:
            assert r.status == 204
        async with http.get(f"{control}/impairments/hq") as r:
            assert (await r.json())["delay"] == 0.0
        async with http.delete(f"{control}/impairments") as r:
            assert r.status == 204
        assert lab.impairments() == {}
        assert len(await echo_rtts("127.20.0.1", ports["media"], 5)) == 5
        async with http.get(f"{control}/stats") as r:
            assert (await r.json())["points"] == 4


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("PUT", "/impairments/hq", b'{"delay": "4', 400, "not JSON"),
        ("PUT", "/impairments/hq", b'{"delay": "soon"}', 400, "delay: 'soon' is not a duration"),
        ("PUT", "/impairments/hq", b'{"lag": 1}', 400, "unknown key 'lag'"),
        ("PUT", "/impairments/hq", b"[1, 2]", 400, "expected a JSON object"),
        ("PUT", "/impairments/hq", b'{"loss": 2}', 400, "out of range"),
        ("PUT", "/impairments/otter", b"{}", 404, "did you mean 'other'?"),
        ("GET", "/nothing", b"", 404, "Not Found"),
        ("POST", "/impairments", b"{}", 405, "Method Not Allowed"),
    ],
)
async def test_errors_are_json(
    lab: Lab, control: str, method: str, path: str, body: bytes, status: int, needle: str
) -> None:
    """Bad JSON, bad values, unknown points and routes answer a JSON error with the right status."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, control + path, data=body) as r,
    ):
        assert r.status == status
        assert needle in (await r.json())["error"]
    assert lab.impairments() == {}


def test_control_refuses_non_loopback(lab: Lab) -> None:
    """The control API has no authentication, so it will not listen beyond loopback."""
    with pytest.raises(ConfmonError, match="only on loopback"):
        ControlServer(lab, host="0.0.0.0")


async def test_busy_control_port_is_one_line(lab: Lab, control: str) -> None:
    """A control port already in use is a ConfmonError that says which option to change."""
    port = int(control.rsplit(":", 1)[1])
    with pytest.raises(ConfmonError, match="--control-port") as exc:
        await ControlServer(lab, port=port).start()
    assert "\n" not in str(exc.value)
