"""The lab's media reflector: every UDP datagram goes back, unchanged, to where it came from.

This is the far end the media probe measures: RTP-sized packets paced like a
voice stream, echoed so the probe can compute round-trip time, RFC 3550 jitter
and loss. Impairments apply per datagram (see :mod:`monitor.lab.shaping`): each
echo is lost, delayed and jittered independently, so a stream of 50 packets
with 5 % loss loses about 2.5 of them, as a real lossy uplink would.
"""

from __future__ import annotations

from typing import Any

from monitor.lab.site import DatagramResponder

__all__ = ["EchoResponder"]


class EchoResponder(DatagramResponder):
    """UDP echo for one point."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.site.send(self._sendto, data, addr)
