"""The lab's media reflector echoes every datagram back unchanged to its source."""

from __future__ import annotations

import os

from monitor.lab import Lab
from tests.lab.clients import udp_client


async def test_echo_returns_datagrams_unchanged(lab: Lab, ports: dict[str, int]) -> None:
    """Datagrams of every size up to 1472 bytes, binary included, come back byte for byte."""
    client = await udp_client()
    try:
        payloads = [b"\x00", os.urandom(172), os.urandom(1472), b"\r\n\r\n"]
        for payload in payloads:
            client.send(payload, ("127.20.0.2", ports["media"]))
            data, _ = await client.recv()
            assert data == payload
    finally:
        client.close()


async def test_echo_goes_back_to_each_source(lab: Lab, ports: dict[str, int]) -> None:
    """Two senders each get their own echoes and nothing of the other's."""
    a, b = await udp_client(), await udp_client()
    try:
        a.send(b"from a", ("127.20.0.4", ports["media"]))
        b.send(b"from b", ("127.20.0.4", ports["media"]))
        assert (await a.recv())[0] == b"from a"
        assert (await b.recv())[0] == b"from b"
        assert await a.nothing(0.2) and await b.nothing(0.01)
    finally:
        a.close()
        b.close()
