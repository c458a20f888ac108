"""One simulated point at run time, and the base of its stream (TCP) responders.

A :class:`Site` is what every responder of a point shares: the point, its own
impairment (for the status overrides) and the composed :class:`~monitor.lab.shaping.Path`
its replies travel. The lab swaps ``own`` and ``path`` when an impairment
changes; responders read them per request, so a change applies to the very next
reply.

:class:`StreamResponder` holds what SIP over TCP and HTTP have in common: a
bounded input buffer, replies in order through the shaper, an idle timeout
(one timer per connection, re-armed lazily rather than on every byte), and a
lab-wide cap on open connections so that a client leaking connections cannot
use up the lab's file descriptors.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from monitor.inventory import Point
from monitor.lab.impairment import Impairment
from monitor.lab.shaping import Path, Shaper, StreamClock

__all__ = ["Runtime", "Site", "StreamResponder"]


class Runtime:
    """What all sites of one lab share."""

    def __init__(
        self, shaper: Shaper, server: str, *, max_connections: int, idle_timeout: float
    ) -> None:
        self.shaper = shaper
        self.server = server  # Server: header value, e.g. "confmon-lab/0.1.0"
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections: set[StreamResponder] = set()
        self.refused = 0  # connections closed at once because of max_connections


class Site:
    """A point as its responders see it."""

    __slots__ = ("http_path", "own", "path", "point", "runtime")

    def __init__(self, point: Point, runtime: Runtime, http_path: str = "/") -> None:
        self.point = point
        self.runtime = runtime
        self.http_path = http_path
        self.own = Impairment()
        self.path: Path | None = None

    def send(self, send: Any, *args: Any) -> bool:
        """Send a datagram reply through this point's path."""
        return self.runtime.shaper.datagram(self.path, send, *args)


class DatagramResponder(asyncio.DatagramProtocol):
    """The UDP side of one point's service: replies go out through the site's shaping.

    Subclasses implement ``datagram_received`` and answer with
    ``self.site.send(self._sendto, reply, addr)``.
    """

    __slots__ = ("site", "transport")

    def __init__(self, site: Site) -> None:
        self.site = site
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: Python 3.11's selector datagram transport does not subclass it
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about an earlier reply: that client is gone, nothing to do

    def _sendto(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class StreamResponder(asyncio.Protocol):
    """Base of a TCP responder: subclasses implement :meth:`process` on :attr:`buffer`."""

    #: largest unparsed input kept; a client sending more is cut off
    max_buffer = 128 * 1024

    def __init__(self, site: Site) -> None:
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.clock = StreamClock()
        self._pending = 0  # replies scheduled and not written yet
        self._eof = False
        self._last_active = 0.0
        self._idle: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        runtime = self.site.runtime
        if len(runtime.connections) >= runtime.max_connections:
            runtime.refused += 1
            transport.abort()
            return
        self.transport = transport
        runtime.connections.add(self)
        loop = asyncio.get_running_loop()
        self._last_active = loop.time()
        self._idle = loop.call_at(self._last_active + runtime.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self._eof:
            return
        self._last_active = asyncio.get_running_loop().time()
        if len(self.buffer) + len(data) > self.max_buffer:
            self.abort()
            return
        self.buffer += data
        self.process()

    def eof_received(self) -> bool:
        self._eof = True
        # keep the connection open for the write side while delayed replies are still due
        return self._pending > 0

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.runtime.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.transport = None

    # --- for subclasses ---------------------------------------------------------------------

    def process(self) -> None:
        """Consume complete requests from :attr:`buffer` and :meth:`reply` to them."""
        raise NotImplementedError

    def reply(self, data: bytes, *, close: bool = False) -> None:
        """Send ``data`` through the point's path, after earlier replies; then close if asked."""
        if self.site.runtime.shaper.stream(self.site.path, self.clock, self._write, data, close):
            self._pending += 1

    def abort(self) -> None:
        """Drop the connection now (bad or oversized input)."""
        self.buffer.clear()
        if self.transport is not None:
            self.transport.abort()

    def _write(self, data: bytes, close: bool) -> None:
        self._pending -= 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if close or (self._eof and self._pending == 0):
            transport.close()

    def _check_idle(self) -> None:
        self._idle = None
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_active + self.site.runtime.idle_timeout
        if self._pending == 0 and loop.time() >= due:
            self.transport.close()
        else:
            self._idle = loop.call_at(max(due, loop.time() + 1.0), self._check_idle)
