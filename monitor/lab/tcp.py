"""The lab's plain TCP port, for a profile's ``tcp`` probe (a connect check).

It accepts connections and discards what they send; a connection ends when the
client closes it or stays idle. Impairments cannot delay or drop a TCP handshake
from user space (the kernel completes it before the lab sees the connection),
so while the point is ``down`` the lab closes this listener instead: connects
are refused. That is the one place where ``down`` answers at all (with a RST)
rather than staying silent; it is the closest user space gets, and a connect
check must not pass on a point that is down.
"""

from __future__ import annotations

from monitor.lab.site import StreamResponder

__all__ = ["TcpResponder"]


class TcpResponder(StreamResponder):
    """A connection to a point's plain TCP port."""

    def process(self) -> None:
        self.buffer.clear()
