"""The API's connections, below aiohttp's request handling: a cap, timeouts, and errors said once.

Why: aiohttp's server, as it comes, accepts every connection the process can
open and keeps an idle one for an hour. 1,100 idle connections to a monitor
under ``ulimit -n 1024`` took every descriptor: ``/healthz`` stopped answering,
probes failed with "Too many open files" and 450 points went falsely down, and
each malformed request logged a full traceback. Here:

- **A cap, counted per descriptor** (from ``accept()`` to close): at most
  ``max_connections`` at once. At the cap the oldest *idle* connection (waiting
  for a request: it sent none yet, or its last one is answered) is closed to
  admit the new one, and failing that the one slowest to send its request body
  (arriving for over ``slow_body`` seconds); only when every connection is busy
  otherwise is the new one refused
  (a JSON 503 written on its way out). A flood of idle connections therefore
  cannot lock out ``/healthz``, and the API never holds more than
  ``max_connections + 2`` descriptors (the listening socket, and for a moment
  the newcomer beside the connection closed for it): the rest stay with
  probing (see :mod:`monitor.limits`).
- **Timeouts**: a connection must send a complete request head within
  ``header`` seconds of connecting, or it is closed; an idle keep-alive
  connection is closed after ``idle`` seconds (aiohttp's keep-alive timer);
  a response the client stops reading (the send buffer stays full) is
  abandoned after ``write`` seconds, so a stalled reader cannot hold a
  connection, an SSE stream included; an unread request body is drained for at
  most ``linger`` seconds. Request bodies are bounded by the API's middleware.
- **accept() out of descriptors** (EMFILE, ENFILE, ENOBUFS, ENOMEM): accepting
  pauses for a second and is logged once a minute with a count, never per try.
- **Malformed requests** (a bad request line, method or header, a header over
  8 KiB, a bad ``Content-Length``) get a JSON 400 and at most one log line per
  10 s for all of them, with a count of the others; an error inside a handler
  is a JSON 500 and the same kind of single line, never a traceback.

The socket is bound by :func:`bind` before the monitor starts (a bad address
fails before anything is probed) and served from :meth:`ApiServer.start`, once
the monitor is running.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import resource
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from monitor.errors import ConfmonError, UsageError
from monitor.text import printable, quoted
from monitor.threads import bounded

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "ApiServer",
    "BodyReader",
    "RateLimitedLog",
    "ServerStats",
    "Timeouts",
    "bind",
]

log = logging.getLogger("confmon.api")

DEFAULT_MAX_CONNECTIONS = 256


#: how long resolving a ``--listen`` host name may take
@runtime_checkable
class BodyReader(Protocol):
    """A connection that says when it started reading a request body (see
    :attr:`Timeouts.slow_body`)."""

    body_since: float | None


RESOLVE_TIMEOUT = 5.0
#: connections the kernel queues before this process accepts them
BACKLOG = 128
#: connections accepted per wake-up of the loop (the others wait for the next one)
ACCEPT_BATCH = 32
#: pause after accept() failed for want of descriptors or memory
ACCEPT_RETRY = 1.0
#: at most one log line per this many seconds for each kind of trouble
LOG_INTERVAL = 10.0

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_REFUSAL_BODY = json.dumps({"error": "too many connections; try again shortly"}).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 5\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


@dataclass(frozen=True)
class Timeouts:
    """The connection timeouts, in seconds (see the module docstring)."""

    header: float = 10.0
    idle: float = 60.0
    write: float = 30.0
    linger: float = 2.0
    #: at the cap, a connection whose request body has been arriving for longer is closed
    #: to admit a newcomer when none is idle (a slow-body flood cannot lock /healthz out)
    slow_body: float = 1.0


@dataclass
class ServerStats:
    """What the server did with connections, counted since it started."""

    accepted: int = 0
    evicted: int = 0
    refused: int = 0
    header_timeouts: int = 0
    write_timeouts: int = 0
    accept_errors: int = 0
    bad_requests: int = 0
    internal_errors: int = 0


class RateLimitedLog:
    """One log line per ``interval`` seconds for one kind of trouble; the rest are counted.

    The first occurrence is logged at once; those that follow within ``interval`` are
    counted, and one line at the end of the interval gives their number and the last one.
    Call it from the event loop.
    """

    def __init__(
        self, logger: logging.Logger, level: int, kind: str, interval: float = LOG_INTERVAL
    ) -> None:
        self._logger = logger
        self._level = level
        self.kind = kind
        self.interval = interval
        self._suppressed = 0
        self._last = ""
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, message: str) -> None:
        if self._timer is None:
            self._logger.log(self._level, "%s", message)
            self._open_window()
        else:
            self._suppressed += 1
            self._last = message

    def _open_window(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: nothing to wait with, so every line is logged
        self._timer = loop.call_later(self.interval, self._window_ended)

    def _window_ended(self) -> None:
        self._timer = None
        if self._suppressed:
            self._say_suppressed()
            self._open_window()

    def _say_suppressed(self) -> None:
        self._logger.log(
            self._level,
            "%d more %s in the last %g s (one line per %g s); the last: %s",
            self._suppressed,
            self.kind,
            self.interval,
            self.interval,
            self._last,
        )
        self._suppressed = 0

    def close(self) -> None:
        """Say what is still counted, and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._suppressed:
            self._say_suppressed()


def _describe(exc: BaseException | None) -> str:
    """An exception as one line: its type, message and where it was raised."""
    if exc is None:
        return "no exception"
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
    return printable(f"{type(exc).__name__}: {exc}{where}", 300)


def _first_line(text: str) -> str:
    return printable(text.strip().splitlines()[0].rstrip(":") if text.strip() else text, 200)


class _Slot:
    """One accepted descriptor, released once (by the connection's close, or a failed hand-over)."""

    __slots__ = ("released",)

    def __init__(self) -> None:
        self.released = False


class _Connection(RequestHandler):
    """aiohttp's request handler for one connection, with the cap's bookkeeping and the timers."""

    def __init__(self, owner: ApiServer, slot: _Slot, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._owner = owner
        self._slot = slot
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self.evicting = False
        #: when the request being handled started reading its body (None: it is not)
        self.body_since: float | None = None

    # --- the cap ----------------------------------------------------------------------

    def reading_body_since(self, before: float) -> bool:
        """Reading a request body since before ``before`` (loop time), not being closed."""
        since = self.body_since
        return (
            not self.evicting
            and self.transport is not None
            and since is not None
            and since < before
        )

    @property
    def idle(self) -> bool:
        """Waiting for a request (none sent yet, or the last one answered), not being closed."""
        waiter = self._waiter
        return (
            not self.evicting
            and self.transport is not None
            and waiter is not None
            and not waiter.done()
            and not self._messages
        )

    def evict(self) -> None:
        """Close at once to make room (an idle connection, or one slow to send its body)."""
        self.evicting = True
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._owner._joined(self)
        self._head_timer = self._loop.call_later(self._owner.timeouts.header, self._head_due)

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._head_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._stall_timer = None
        self._owner._left(self, self._slot)
        super().connection_lost(exc)

    # --- timers -----------------------------------------------------------------------

    def _head_due(self) -> None:
        self._head_timer = None
        if self._request_count == 0 and self.transport is not None:
            self._owner.stats.header_timeouts += 1
            self.force_close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self._owner.timeouts.write, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.transport is not None:
            self._owner.stats.write_timeouts += 1
            self.transport.abort()

    # --- errors: one line, rate-limited, and a JSON answer ------------------------------

    async def _handle_request(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        # aiohttp answers an Expect header other than 100-continue itself, before any
        # middleware, in plain text (and with a 500 when the value is not ASCII): answered
        # here as every bad request is, in JSON and one rate-limited line
        expect = request.headers.get("Expect")
        if expect is not None and expect.strip().lower() != "100-continue":
            resp = self.handle_error(
                request, 417, message=f"unknown Expect {quoted(expect, 40)} (only 100-continue)"
            )
            return await self.finish_response(request, resp, start_time)
        return await super()._handle_request(request, start_time, request_handler)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        owner = self._owner
        if status >= 500:
            owner.stats.internal_errors += 1
            owner.internal_errors(
                f"{status} answering {printable(request.method, 20)} {quoted(request.path)}: "
                f"{_describe(exc)}"
            )
            text = "the request timed out" if status == 504 else "internal error"
        else:
            if message is None and isinstance(exc, HttpProcessingError):
                message = exc.message
            reason = _first_line(message or HTTPStatus(status).phrase)
            owner.stats.bad_requests += 1
            owner.bad_requests(f"bad HTTP request from {request.remote}: {reason}")
            text = f"bad request: {reason}"
        if request.writer.output_size > 0:
            # the head is out already: nothing more can be said on this connection
            raise ConnectionResetError("the response has started; closing the connection")
        resp = web.Response(
            status=status,
            text=json.dumps({"error": text}, ensure_ascii=False),
            content_type="application/json",
        )
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        try:
            what = str(args[0]) % args[1:] if args else "error"
        except (TypeError, ValueError):
            what = str(args[0]) if args else "error"
        exc = kw.get("exc_info")
        self._owner.stats.internal_errors += 1
        self._owner.internal_errors(
            f"{printable(what, 200)}: {_describe(exc if isinstance(exc, BaseException) else None)}"
        )


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _resolve(host: str, port: int, limit: float) -> list[tuple[Any, ...]]:
    where = quoted(_where(host, port), 120)
    flags = socket.AI_PASSIVE
    try:  # an address needs no resolver
        return socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=flags | socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeError):
        pass

    def lookup() -> list[tuple[Any, ...]]:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)

    try:
        return await bounded(lookup, limit, "confmon-resolve-listen")
    except TimeoutError:
        raise UsageError(
            f"cannot listen on {where}: the name did not resolve within {limit:g} s; "
            "give an IP address (see --listen)"
        ) from None
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(
            f"cannot listen on {where}: the name does not resolve ({printable(why, 100)}); "
            "see --listen"
        ) from None


def _bind_error(where: str, exc: OSError) -> ConfmonError:
    if exc.errno == errno.EADDRINUSE:
        return ConfmonError(
            f"cannot listen on {where}: the address is in use (another confmon, or another "
            "program; see --listen)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(
            f"cannot listen on {where}: not an address of this machine (see --listen)"
        )
    if exc.errno == errno.EACCES:
        return ConfmonError(
            f"cannot listen on {where}: permission denied (ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE)"
        )
    return ConfmonError(f"cannot listen on {where}: {printable(exc.strerror or str(exc), 200)}")


async def bind(host: str, port: int, limit: float = RESOLVE_TIMEOUT) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (not listening yet).

    A name is resolved on a thread of its own, for at most ``limit`` seconds. Errors are
    one line: :class:`UsageError` (exit 2) for a name that does not resolve or an address
    not on this machine, :class:`ConfmonError` (exit 1) for one in use or not permitted.
    """
    where = quoted(_where(host, port), 120)
    infos = await _resolve(host, port, limit)
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, _type, proto, _name, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, socket.SOCK_STREAM, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise _bind_error(where, exc) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise UsageError(f"cannot listen on {where}: the name has no address (see --listen)")
    return sockets


class ApiServer:
    """An aiohttp application served on bound sockets, under a connection cap.

    ``ApiServer(app, sockets, max_connections=...)``, then ``await start()`` to accept,
    ``await close()`` to stop (live responses get the runner's shutdown timeout).
    ``max_connections`` may be lowered while it runs (takes effect for new connections).
    """

    def __init__(
        self,
        app: web.Application,
        sockets: list[socket.socket],
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeouts: Timeouts | None = None,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.app = app
        self.sockets = sockets
        self.max_connections = max_connections
        self.timeouts = timeouts or Timeouts()
        self.stats = ServerStats()
        self._handler_args: dict[str, Any] = {
            "access_log": None,
            "keepalive_timeout": self.timeouts.idle,
            "lingering_time": self.timeouts.linger,
        }
        self._runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **self._handler_args)
        self._connections: dict[_Connection, None] = {}
        self._open = 0
        self._connecting: set[asyncio.Task[None]] = set()
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._listening: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bad_requests = RateLimitedLog(log, logging.WARNING, "bad HTTP requests")
        self.internal_errors = RateLimitedLog(log, logging.ERROR, "API errors")
        self.refusals = RateLimitedLog(log, logging.WARNING, "refused API connections")
        self.accept_errors = RateLimitedLog(
            log, logging.ERROR, "failed accepts of API connections", interval=60.0
        )

    @property
    def connections(self) -> int:
        """Descriptors the API holds for connections now (accepted, not yet closed)."""
        return self._open

    @property
    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for s in self.sockets]

    async def start(self) -> None:
        """Start accepting connections on the sockets."""
        await self._runner.setup()
        self._loop = loop = asyncio.get_running_loop()
        for sock in self.sockets:
            sock.setblocking(False)
            sock.listen(BACKLOG)
            loop.add_reader(sock.fileno(), self._on_readable, sock)
            self._listening.append(sock)

    async def close(self) -> None:
        """Stop accepting, close the listening sockets, then every connection."""
        loop = self._loop
        for sock in self._listening:
            if loop is not None:
                loop.remove_reader(sock.fileno())
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        self._listening.clear()
        for sock in self.sockets:
            sock.close()
        for task in list(self._connecting):
            task.cancel()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        try:
            await self._runner.cleanup()
        finally:
            for said in (
                self.bad_requests,
                self.internal_errors,
                self.refusals,
                self.accept_errors,
            ):
                said.close()

    # --- accepting --------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(sock, exc)
                return
            if self._open < self.max_connections:
                self._admit(conn)
                continue
            # at the cap: the oldest idle connections make room (as many as it takes, should
            # the cap have been lowered); none idle, and the newcomer is refused
            excess = self._open + 1 - self.max_connections
            victims = [c for c in self._connections if c.idle][:excess]
            if len(victims) < excess:
                # then those slowest to send their request body (a slow-body flood must
                # not lock /healthz out for the length of the body timeout)
                assert self._loop is not None
                slow = self._loop.time() - self.timeouts.slow_body
                victims += sorted(
                    (c for c in self._connections if c.reading_body_since(slow)),
                    key=lambda c: c.body_since or 0.0,
                )[: excess - len(victims)]
            if not victims:
                self._refuse(conn)
                continue
            for victim in victims:
                self.stats.evicted += 1
                victim.evict()
            self._admit(conn)
            # the victims' descriptors are freed before the loop's next round: accept no
            # more until then, so the API holds at most max_connections + 1 at any moment
            return

    def _admit(self, conn: socket.socket) -> None:
        assert self._loop is not None
        self.stats.accepted += 1
        self._open += 1
        slot = _Slot()
        conn.setblocking(False)
        task = self._loop.create_task(self._hand_over(conn, slot))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _hand_over(self, conn: socket.socket, slot: _Slot) -> None:
        assert self._loop is not None
        server = self._runner.server
        try:
            if server is None:
                raise ConnectionAbortedError("the server is stopping")
            factory: Callable[[], _Connection] = lambda: _Connection(  # noqa: E731
                self, slot, server, loop=self._loop, **self._handler_args
            )
            await self._loop.connect_accepted_socket(factory, conn)
        except BaseException:  # cancelled by close(), or the peer left at once
            conn.close()
            self._release(slot)

    def _refuse(self, conn: socket.socket) -> None:
        self.stats.refused += 1
        try:
            conn.setblocking(False)
            conn.send(_REFUSAL)
        except OSError:
            pass
        finally:
            conn.close()
        self.refusals(
            f"refused an API connection: all {self.max_connections} connections are busy "
            "(--max-connections)"
        )

    def _accept_failed(self, sock: socket.socket, exc: OSError) -> None:
        """Pause accepting for a moment: the error would repeat at once (Linux keeps the
        socket readable), and a loop of failing accepts would burn the CPU and the log."""
        self.stats.accept_errors += 1
        why = printable(exc.strerror or str(exc), 100)
        if exc.errno in _OUT_OF_RESOURCES:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            why += f" (the open-file limit is {soft}; see docs/operations.md, Limits and hardening)"
        self.accept_errors(
            f"cannot accept API connections: {why}; trying again every {ACCEPT_RETRY:g} s"
        )
        loop = self._loop
        if loop is None:
            return
        fd = sock.fileno()
        loop.remove_reader(fd)
        self._retries[fd] = loop.call_later(ACCEPT_RETRY, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._retries.pop(fd, None)
        if self._loop is not None and sock in self._listening:
            self._loop.add_reader(fd, self._on_readable, sock)

    # --- bookkeeping (called by the connections) --------------------------------------

    def _joined(self, conn: _Connection) -> None:
        self._connections[conn] = None

    def _left(self, conn: _Connection, slot: _Slot) -> None:
        self._connections.pop(conn, None)
        self._release(slot)

    def _release(self, slot: _Slot) -> None:
        if not slot.released:
            slot.released = True
            self._open -= 1
