"""`confmon probe TYPE TARGET`: one probe against a real peer, every phase printed."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest

from monitor.inventory.synthetic import synthetic_inventory
from monitor.lab.lab import Lab


async def confmon(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    inv = synthetic_inventory(
        2,
        first_host="127.33.0.1",
        districts=2,
        profile={"sip": {}, "media": {}, "http": {"port": 18080, "path": "/status"}},
    )
    async with Lab(inv, seed=1) as running:
        yield running


async def test_sip_probe_prints_phases_and_exits_0(lab: Lab) -> None:
    """A SIP OPTIONS probe of a lab point succeeds and lists resolve, send and response."""
    code, out, _ = await confmon("probe", "sip", "127.33.0.1:5060")
    assert code == 0, out
    assert out.startswith("sip 127.33.0.1: OK in ")
    for phase in ("resolve", "send", "response"):
        assert phase in out
    assert "status: 200" in out


async def test_media_probe_json(lab: Lab) -> None:
    """--json gives the whole result: RTT, jitter, loss and MOS of the media path."""
    code, out, _ = await confmon("probe", "media", "127.33.0.2:7078", "-o", "packets=20", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["loss"] == 0.0 and data["mos"] > 4.0
    assert data["details"]["received"] == 20


async def test_http_probe_takes_a_url(lab: Lab) -> None:
    """An http:// URL sets scheme, port and path."""
    code, out, _ = await confmon("probe", "http", "http://127.33.0.1:18080/status")
    assert code == 0, out
    assert "first_byte" in out


async def test_failed_probe_exits_1() -> None:
    """A refused TCP connect is a failure: exit 1 and the reason on the first line."""
    code, out, _ = await confmon("probe", "tcp", "127.0.0.1:1")
    assert code == 1
    assert "FAILED" in out.splitlines()[0] and "connection refused" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["probe", "sip", "127.0.0.1", "-o", "timeout=soon"],
            "-o timeout: 'soon' is not a duration",
        ),
        (
            ["probe", "media", "127.0.0.1", "-o", "colour=red"],
            "-o colour: unknown setting; media takes:",
        ),
        (["probe", "tcp", "127.0.0.1"], "tcp needs a port"),
        (["probe", "icmp", "10.0.0.300"], "'10.0.0.300' is not an IP address or host name"),
        (["probe", "gopher", "127.0.0.1"], "invalid choice: 'gopher'"),
    ],
)
async def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    """Bad settings, targets or probe names: one line on stderr, exit 2."""
    code, out, err = await confmon(*args)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err
