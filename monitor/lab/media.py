"""The lab's media reflector: every UDP datagram goes back, unchanged, to where it came from.

This is the far end the media probe measures: RTP-sized packets paced like a
voice stream, echoed so the probe can compute round-trip time, RFC 3550 jitter
and loss. Impairments apply per datagram (see :mod:`monitor.lab.shaping`): each
echo is lost, delayed and jittered independently, so a stream of 50 packets
with 5 % loss loses about 2.5 of them, as a real lossy uplink would.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from monitor.lab.site import Site

__all__ = ["EchoResponder"]


class EchoResponder(asyncio.DatagramProtocol):
    """UDP echo for one point."""

    __slots__ = ("site", "transport")

    def __init__(self, site: Site) -> None:
        self.site = site
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: Python 3.11's selector datagram transport does not subclass it
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.site.send(self._sendto, data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an earlier echo: the sender closed its socket

    def _sendto(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)
