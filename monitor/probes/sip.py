"""SIP OPTIONS probe: the keepalive that video endpoints, MCUs and SBCs answer.

What a caller may rely on:

* ``probe(target, settings, ctx)`` sends one ``OPTIONS sip:<host>:<port>`` request
  (RFC 3261 §11; the request is built by :func:`build_options`) over
  ``settings.transport`` (``udp`` or ``tcp``) and returns a ``"sip"``
  :class:`~monitor.probes.base.ProbeResult`. A network failure is a result with
  ``ok=False`` and a short ``error``, never an exception. ``settings.timeout`` bounds the
  whole probe, name resolution included. A host name is resolved and its first address
  used; the Request-URI keeps the name. (No RFC 3263 NAPTR/SRV lookups: an inventory
  names each point's host and port.)
* **Which answers count as alive.** With ``settings.alive_codes`` unset, any *final*
  response (status >= 200) is alive: a 404, 403 or 405 still proves that a SIP stack
  received, parsed and answered the request. With a list, only those codes are alive and
  any other final response is a failure (``error`` = ``"404 Not Found (alive: 200)"``). A
  provisional code (1xx) listed in ``alive_codes`` ends the probe as soon as it arrives.
* **503 Service Unavailable** is alive by default (the stack answered; it refuses service,
  typically overload or maintenance) but is never silent: ``details["notes"]`` carries
  ``"503 Service Unavailable: ..."`` (and ``Retry-After`` when sent), and
  ``details["status"]`` is 503. Every other non-2xx final response counted as alive gets a
  note too. Use ``alive_codes: [200]`` to make such answers failures.
* **RTT.** ``rtt`` is the time from the *first* transmission to the arrival of the final
  response, retransmission waits included. With retransmissions, which copy was answered
  is unknowable (retransmissions are byte-identical by RFC, the same ambiguity TCP meets
  and Karn's algorithm sidesteps), and measuring from the last copy would make a link
  slower than T1 look fast. The first-send figure never understates; ``details``
  also has ``rtt_last_send`` (from the last copy sent before the answer: a lower bound),
  equal to ``rtt`` when nothing was retransmitted. Over UDP the arrival is the kernel's
  receive timestamp (``SO_TIMESTAMPNS``, carried to the monotonic clock as the ICMP
  engine does), so a busy event loop does not show as network delay; where the kernel
  gives no stamp, the arrival is when the loop read the datagram.
* **UDP** goes through the process's :class:`SipEngine` (one per
  :class:`~monitor.probes.base.ProbeContext`): one non-blocking datagram socket per
  address family and local address, shared by every SIP probe like the ICMP engine's,
  read with ``loop.add_reader`` and ``recvmsg`` (no asyncio transport). The socket is not
  connected: a response is matched to its transaction by its top Via branch, then Call-ID
  and CSeq, not by the address it came from (a clustered SBC may answer from another
  one). ``IP_RECVERR`` queues each ICMP error with the start of the request that caused
  it; the branch quoted there names the probe, which then fails at once with ``"port
  unreachable"`` (or ``"host unreachable"``) instead of waiting out the deadline. A
  send the kernel refuses for want of buffer space (``EAGAIN``, ``ENOBUFS``) is not
  counted as sent and is tried again when Timer E next fires; the probe never blocks.
  Retransmission follows the
  RFC 3261 §17.1.2.2 *non-INVITE* client transaction (Timer E, not the INVITE Timer A):
  resend after T1 = 0.5 s, doubling the interval up to T2 = 4 s (sends at 0, 0.5, 1.5,
  3.5, 7.5, 11.5 s, ...); once a provisional (1xx) response has arrived (Proceeding state)
  the running Timer E is left to fire and every later interval is T2. Timer F (64*T1) is
  replaced by the probe's deadline.
* **TCP** connects, sends once (a reliable transport never retransmits), and reads
  responses framed by ``Content-Length`` from the stream, at most 64 KiB in all.
* Responses whose Call-ID, CSeq (``1 OPTIONS``) or top Via branch differ from the
  request's, and datagrams that do not parse as a SIP response, are ignored; those from
  the address probed are counted in ``details["strays"]`` (the engine counts the rest).
* Phases: ``resolve``, (tcp: ``connect``), ``send``, ``response``. ``details``:
  ``transport``, ``address``, ``port``, ``local``, ``status``, ``reason``, ``server``,
  ``user_agent``, ``retransmissions``, ``provisional`` (1xx codes seen, in order),
  ``strays``, ``rtt_last_send``, ``notes``.
* A TCP probe closes its socket before it returns, also when it is cancelled; the UDP
  engine's sockets close with the context.

Why hand-written: the Python SIP stacks (PJSIP's pjsua2 bindings, the unmaintained
aiosip) are full user agents with their own transport and dialog management. A keepalive
needs one request, one matching rule and a tolerant response parser; owning those keeps
the deadline in the probe's hands and lets 10,000 probes share one socket, which a stack
with its own transport per user agent cannot. :func:`parse_response` is a pure function that never raises on any input.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import re
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from pydantic import Field

from monitor import __version__
from monitor.core.results import Phase, ProbeResult
from monitor.inventory.types import Duration, Port, Strict
from monitor.probes.base import ProbeContext, now
from monitor.probes.net import (
    TIMESTAMP_SPACE,
    arrival_time,
    describe_oserror,
    enable_receive_timestamps,
    literal,
    resolve,
    set_buffer,
)
from monitor.probes.spec import ProbeSpec, timeout_deadline

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SPEC",
    "T1",
    "T2",
    "SipEngine",
    "SipResponse",
    "SipSettings",
    "build_options",
    "engine",
    "parse_response",
    "probe",
    "split_message",
]


class SipSettings(Strict):
    """SIP OPTIONS keepalive."""

    transport: Literal["udp", "tcp"] = "udp"
    port: Port = 5060
    timeout: Duration = 1.0
    alive_codes: list[Annotated[int, Field(ge=100, le=699)]] | None = None


T1 = 0.5
"""RFC 3261 round-trip time estimate: the first retransmission interval (seconds)."""
T2 = 4.0
"""RFC 3261 cap on the retransmission interval of non-INVITE requests (seconds)."""
MAX_RESPONSE_BYTES = 64 * 1024
"""The most a TCP probe reads; a SIP response to OPTIONS is normally under 2 KiB."""
_MAX_DETAIL = 200  # header values copied into details are cut here (a Server header is tiny)

# RFC 3261 §7.3.3 and the IANA registry: the compact forms a response may use.
_COMPACT = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_STATUS_LINE = re.compile(r"SIP/(\d{1,3}\.\d{1,3})[ \t]+(\d{3})(?:[ \t]+(.*))?", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?$", re.I | re.M)
_CSEQ = re.compile(r"(\d{1,10})[ \t]+([A-Za-z]+)")
_BRANCH = re.compile(r";[ \t]*branch[ \t]*=[ \t]*([^;, \t]+)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SOCKTYPE = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
_ANCILLARY: Final = TIMESTAMP_SPACE + 64
_MAX_DATAGRAM: Final = 65535


def _canonical(name: str) -> str:
    lower = name.strip().lower()
    return _COMPACT.get(lower, lower)


#: header names as written -> their canonical form, or "" for a name that is not a token;
#: a response has a handful of names and they repeat across responses (bounded)
_NAMES: dict[str, str] = {}
_NAMES_KEPT: Final = 4096


def _header_name(raw: str) -> str:
    name = _NAMES.get(raw)
    if name is None:
        stripped = raw.strip()
        name = _canonical(stripped) if _TOKEN.fullmatch(stripped) else ""
        if len(_NAMES) < _NAMES_KEPT:
            _NAMES[raw] = name
    return name


@dataclass(frozen=True, slots=True)
class SipResponse:
    """A parsed SIP response. Header names are lower-case long forms (``v`` -> ``via``)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    version: str = "2.0"

    def header(self, name: str) -> str | None:
        """The first value of a header (any case, compact or long name), or ``None``."""
        wanted = _header_name(name) or _canonical(name)
        for key, value in self.headers:  # a plain loop: no generator per lookup (6 per probe)
            if key == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in message order."""
        wanted = _canonical(name)
        return [value for key, value in self.headers if key == wanted]

    @property
    def top_via_branch(self) -> str | None:
        """The ``branch`` parameter of the topmost Via (first header, first element)."""
        via = self.header("via")
        if via is None:
            return None
        match = _BRANCH.search(via.split(",", 1)[0])
        return match.group(1) if match else None

    @property
    def cseq(self) -> tuple[int, str] | None:
        """The CSeq number and method, or ``None`` when absent or malformed."""
        value = self.header("cseq")
        match = _CSEQ.fullmatch(value.strip()) if value is not None else None
        return (int(match.group(1)), match.group(2).upper()) if match else None


def _blank_line(data: bytes) -> tuple[int, int] | None:
    """Where the first blank line is in ``data`` (two line ends, each CRLF or a bare LF):
    (start, end), or None.

    Two ``find`` calls in C rather than a regular expression, which tried a match at
    every byte of the head (two fifths of the response parser's time).
    """
    crlf, lf = data.find(b"\n\r\n"), data.find(b"\n\n")
    at = min(crlf, lf) if crlf >= 0 and lf >= 0 else max(crlf, lf)
    if at < 0:
        return None
    end = at + (3 if data[at + 1] == 0x0D else 2)
    return (at - 1 if at and data[at - 1] == 0x0D else at), end


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    blank = _blank_line(data)
    if blank is None:
        return data, b""  # a datagram without the final blank line: lenient, no body
    return data[: blank[0]], data[blank[1] :]


def _content_length(head: bytes) -> int | None:
    match = _CONTENT_LENGTH.search(head)
    return int(match.group(1)) if match else None


def parse_response(data: bytes) -> SipResponse | None:
    """A SIP response from raw bytes, or ``None`` if they are not one. Never raises.

    Tolerant where real stacks are sloppy: LF-only line ends, leading CRLF keepalives,
    a missing reason phrase, folded header lines (RFC 3261 §7.3.1), compact header names,
    header names in any case, lines without a colon (skipped), invalid UTF-8 (replaced).
    The body is cut to ``Content-Length`` when that header is valid.
    """
    head, body = _split_head(data.lstrip(b"\r\n"))
    lines = head.decode("utf-8", errors="replace").split("\n")
    status = _STATUS_LINE.fullmatch(lines[0].rstrip("\r").strip())
    if status is None:
        return None
    code = int(status.group(2))
    if not 100 <= code <= 699:
        return None
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if headers:  # a folded line continues the previous header's value
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        if colon and (canonical := _header_name(name)):
            headers.append((canonical, value.strip()))
    length = next(
        (
            int(value)
            for name, value in headers
            if name == "content-length" and value.isascii() and value.isdigit() and len(value) <= 9
        ),
        None,
    )
    return SipResponse(
        status=code,
        reason=(status.group(3) or "").strip(),
        headers=tuple(headers),
        body=body if length is None else body[:length],
        version=status.group(1),
    )


def split_message(buffer: bytes) -> tuple[bytes, bytes] | None:
    """The first complete message in a stream buffer and the bytes after it.

    ``None`` means more bytes are needed. Leading CRLFs (RFC 5626 keepalives) are
    skipped. A message without ``Content-Length`` is taken to have no body (the header is
    mandatory on streams, RFC 3261 §18.3). Never raises.
    """
    data = buffer.lstrip(b"\r\n")
    blank = _blank_line(data)
    if blank is None:
        return None
    end = blank[1] + (_content_length(data[: blank[0]]) or 0)
    if len(data) < end:
        return None
    return data[:end], data[end:]


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # IPv6 references are bracketed (§19.1.1)


def build_options(
    *,
    transport: Literal["udp", "tcp"],
    host: str,
    port: int,
    local_ip: str,
    local_port: int,
    branch: str,
    tag: str,
    call_id: str,
) -> bytes:
    """The OPTIONS request, CRLF-terminated, with the headers RFC 3261 §8.1.1 requires."""
    local = _uri_host(local_ip)
    target = f"sip:{_uri_host(host)}:{port}"
    contact = f"<sip:confmon@{local}:{local_port}{';transport=tcp' if transport == 'tcp' else ''}>"
    lines = [
        f"OPTIONS {target} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {local}:{local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:confmon@{local}>;tag={tag}",
        f"To: <{target}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: {contact}",
        "Accept: application/sdp",
        f"User-Agent: confmon/{__version__}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(slots=True)
class _Exchange:
    """What one probe saw, filled in as it goes; turned into the result at the end."""

    transport: Literal["udp", "tcp"]
    call_id: str = ""
    branch: str = ""
    local: str | None = None
    sent: list[float] = field(default_factory=list)  # monotonic time of each transmission
    provisional: list[int] = field(default_factory=list)
    strays: int = 0
    final: SipResponse | None = None
    received: float | None = None

    def request(self, settings: SipSettings, host: str, sockname: tuple[object, ...]) -> bytes:
        local_ip, local_port = str(sockname[0]), int(str(sockname[1]))
        self.local = f"{_uri_host(local_ip)}:{local_port}"
        # 80 random bits for the branch, 96 for the Call-ID, 48 for the tag: one read of the
        # system's random source for the three
        token = secrets.token_hex(28)
        self.branch = "z9hG4bK" + token[:20]  # RFC 3261 magic cookie prefix
        self.call_id = f"{token[20:44]}@{_uri_host(local_ip)}"
        return build_options(
            transport=self.transport,
            host=host,
            port=settings.port,
            local_ip=local_ip,
            local_port=local_port,
            branch=self.branch,
            tag=token[44:],
            call_id=self.call_id,
        )

    def accept(self, data: bytes, ends: frozenset[int] | None, arrived: float) -> bool:
        """Take one message that arrived at ``arrived`` (monotonic); True if it ends the probe."""
        response = parse_response(data)
        if response is None:
            self.strays += 1
            return False
        return self.accept_response(response, ends, arrived)

    def accept_response(
        self, response: SipResponse, ends: frozenset[int] | None, arrived: float
    ) -> bool:
        """:meth:`accept` for a message parsed already."""
        if (
            response.header("call-id") != self.call_id
            or response.cseq != (1, "OPTIONS")
            or response.top_via_branch != self.branch
        ):
            self.strays += 1
            return False
        if response.status < 200 and (ends is None or response.status not in ends):
            self.provisional.append(response.status)
            return False
        self.final, self.received = response, arrived
        return True


class _Expired(Exception):
    """The probe's deadline passed while its UDP transaction waited for the answer."""


class _UdpTransaction:
    """The RFC 3261 §17.1.2.2 non-INVITE client transaction, minus Timer K.

    Timer E drives retransmission; :attr:`done` resolves on the ending response or fails
    with the ICMP error (port or host unreachable) that makes waiting pointless, or with
    :class:`_Expired` at ``expires`` (loop time: the probe's deadline, in place of Timer
    F). One timer serves both: it is armed for the next retransmission or the deadline,
    whichever comes first, so a probe needs no timeout scope of its own. Its
    datagrams go out and come back through the engine's shared :class:`_Port`, which
    hands it the responses carrying its branch. :meth:`stop` leaves the port and
    disarms the timer; idempotent.
    """

    def __init__(
        self,
        port: _Port,
        exchange: _Exchange,
        ends: frozenset[int] | None,
        target: tuple[object, ...],
        expires: float = math.inf,
    ) -> None:
        self._loop = port.loop
        self._expires = expires
        self._port = port
        self.target = target
        self._exchange = exchange
        self._ends = ends
        self._request = b""
        self._interval = T1
        self._timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = self._loop.create_future()

    def start(self, request: bytes) -> None:
        """Join the port under the request's branch, send it and arm Timer E at T1."""
        self._request = request
        self._port.pending[self._exchange.branch] = self
        self._port.peers[self.target[:2]] = self
        self._send()
        if not self.done.done():
            self._arm(T1)

    def _arm(self, interval: float) -> None:
        """Timer E ``interval`` from now, or the deadline if that comes first."""
        due = self._loop.time() + interval
        if due < self._expires:
            self._timer = self._loop.call_at(due, self._timer_e)
        else:
            self._timer = self._loop.call_at(self._expires, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.fail(_Expired())

    def _send(self, again: bool = True) -> None:
        sent_at = time.monotonic()  # taken before the send: the RTT never understates
        try:
            self._port.sock.sendto(self._request, self.target)
        except (BlockingIOError, InterruptedError):
            return  # send buffer full: not sent, Timer E tries again
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return  # the same, from the device queue
            if exc.errno in _REPORTED and again:
                # the socket's pending error, of an earlier datagram (often another
                # probe's), came back instead of this send: the error queue says whose
                self._port.read_errors()
                if not self.done.done():
                    self._send(again=False)
                return
            if exc.errno == errno.ECONNREFUSED:
                return  # never this send's own (only a reply can refuse): Timer E retries
            self.fail(exc)  # no route to the target: said by the send itself
            return
        self._exchange.sent.append(sent_at)

    def _timer_e(self) -> None:
        self._timer = None
        if self.done.done():
            return
        self._send()
        # Trying: MIN(2*interval, T2). Proceeding (a 1xx arrived): T2 (RFC 3261 §17.1.2.2).
        self._interval = T2 if self._exchange.provisional else min(2 * self._interval, T2)
        if not self.done.done():
            self._arm(self._interval)

    def on_response(self, response: SipResponse, arrived: float) -> None:
        if self.done.done():
            # cancelled (the probe's deadline): its task leaves the port at its next step,
            # and a response read before that has no one to go to
            return
        exchange = self._exchange
        if not exchange.sent or arrived < exchange.sent[0]:
            arrived = time.monotonic()  # a wall-clock step: fall back to the read time
        if exchange.accept_response(response, self._ends, arrived):
            self.stop()
            self.done.set_result(None)

    def fail(self, exc: Exception) -> None:
        self.stop()
        if not self.done.done():
            self.done.set_exception(exc)

    def stray(self) -> None:
        """A datagram from the address probed that is not an answer to this request."""
        self._exchange.strays += 1

    def stop(self) -> None:
        port = self._port
        if port.pending.get(self._exchange.branch) is self:
            del port.pending[self._exchange.branch]
        if port.peers.get(self.target[:2]) is self:
            del port.peers[self.target[:2]]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: errors a send or a read returns for an ICMP error queued earlier (on a shared socket,
#: usually another probe's): the error queue says whose it is
_REPORTED: Final = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
#: the ``ee_errno`` of ``struct sock_extended_err`` (the first field, a u32)
_EXTENDED_ERR: Final = struct.Struct("=I")
#: where the branch is in one of our requests (its Via; an ICMP error quotes the request)
_REQUEST_BRANCH: Final = re.compile(rb";branch=(z9hG4bK[0-9a-f]+)")
#: responses read in one readiness callback before the loop serves the others
_READS_PER_WAKE: Final = 256


class _Port:
    """One non-blocking UDP socket for every SIP transaction from one local address.

    Not connected: RFC 3261 matches a response to its transaction by the Via branch
    (then Call-ID and CSeq, :meth:`_Exchange.accept_response`), not by the address it
    came from, and a multi-homed or clustered SBC may answer from another address.
    ``IP_RECVERR`` queues each ICMP error (port or host unreachable) with the start of
    the datagram that caused it; the branch in it names the transaction to fail at once
    instead of waiting out its deadline.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, family: int, local_ip: str) -> None:
        self.loop = loop
        self.family = family
        self.pending: dict[str, _UdpTransaction] = {}
        #: the latest transaction to each (address, port): strays from there are its
        self.peers: dict[tuple[object, ...], _UdpTransaction] = {}
        self.strays = 0
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # without stamps (or where the kernel refuses) the arrival is the loop's read
            # time: arrival_time falls back to it
            enable_receive_timestamps(sock)
            set_buffer(sock, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((local_ip, 0))
            sock.setsockopt(*_RECVERR[family], 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.name: tuple[object, ...] = sock.getsockname()
        self._fd = sock.fileno()
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        sock, pending = self.sock, self.pending
        for n in range(_READS_PER_WAKE):
            try:
                data, ancillary, _flags, source = sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                if n == 0:
                    self.read_errors()  # woken by an ICMP error alone
                return
            except OSError:
                self.read_errors()  # an ICMP error is queued: the error queue says whose
                continue
            arrived = arrival_time(ancillary, time.monotonic())  # the kernel's stamp, if any
            response = parse_response(data)
            branch = response.top_via_branch if response is not None else None
            transaction = pending.get(branch) if branch is not None else None
            if response is not None and transaction is not None:
                transaction.on_response(response, arrived)
                continue
            peer = self.peers.get(tuple(source)[:2])
            if peer is not None:
                peer.stray()
            else:
                self.strays += 1

    def read_errors(self) -> None:
        """Fail the transactions the queued ICMP errors are about."""
        level, kind = _RECVERR[self.family]
        while True:
            try:
                data, ancillary, _flags, dest = self.sock.recvmsg(
                    _MAX_DATAGRAM, 512, socket.MSG_ERRQUEUE
                )
            except OSError:  # BlockingIOError: the queue is empty
                return
            code = next(
                (
                    _EXTENDED_ERR.unpack_from(d)[0]
                    for lv, kd, d in ancillary
                    if lv == level and kd == kind and len(d) >= _EXTENDED_ERR.size
                ),
                0,
            )
            if not code:
                continue
            match = _REQUEST_BRANCH.search(data)
            transaction = self.pending.get(match.group(1).decode()) if match else None
            victims = (
                [transaction]
                if transaction is not None
                # the quote did not reach the Via: every transaction to that destination
                else [t for t in self.pending.values() if t.target[:2] == tuple(dest)[:2]]
            )
            for t in victims:
                t.fail(OSError(code, os.strerror(code)))

    def close(self) -> None:
        for transaction in list(self.pending.values()):
            transaction.fail(ConnectionAbortedError("the SIP engine closed"))
        self.loop.remove_reader(self._fd)
        self.sock.close()


class SipEngine:
    """The UDP side of every SIP probe of a process: one :class:`_Port` per address family
    and local address, opened on first use, shared through the :class:`ProbeContext`.

    A socket per probe cost a descriptor, a bind, three socket options and a reader
    registration every probe, and 10,000 descriptors at 10,000 points; the engine pays
    those once. The local address for the Via header is the one the kernel routes
    each target from, asked once per target and kept :data:`_ROUTE_TTL` seconds.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._ports: dict[tuple[int, str], _Port] = {}
        self._routes: dict[tuple[int, str], tuple[str, float]] = {}

    @classmethod
    async def open(cls) -> SipEngine:
        return cls()

    @property
    def strays(self) -> int:
        """Datagrams that matched no transaction (late answers, other traffic)."""
        return sum(p.strays for p in self._ports.values())

    def port_for(self, family: int, sockaddr: tuple[object, ...]) -> _Port:
        """The port that sends to ``sockaddr``; raises :class:`OSError` (no route)."""
        key = (family, str(sockaddr[0]))
        now_ = time.monotonic()
        route = self._routes.get(key)
        if route is None or now_ - route[1] > _ROUTE_TTL:
            if len(self._routes) > _ROUTES_KEPT:
                self._routes.clear()
            route = self._routes[key] = (_local_address(family, sockaddr), now_)
        port = self._ports.get((family, route[0]))
        if port is None:
            port = self._ports[(family, route[0])] = _Port(self.loop, family, route[0])
        return port

    async def close(self) -> None:
        for port in self._ports.values():
            port.close()
        self._ports.clear()


async def engine(ctx: ProbeContext) -> SipEngine:
    """The process's SIP engine (one per :class:`ProbeContext`)."""
    return await ctx.shared("sip", SipEngine.open)


#: how long the local address found for a target is used before it is asked again
_ROUTE_TTL: Final = 60.0
_ROUTES_KEPT: Final = 100_000
#: a burst of answers waits in the shared socket's queue (about 1 KiB of kernel memory each)
_RCVBUF: Final = 8 << 20


class _Failure(Exception):
    """A probe failure with its reason; raised inside the probe, turned into a result."""


class _Steps:
    """Records phases: each :meth:`next` closes the running phase as passed."""

    def __init__(self, first: str) -> None:
        self.name = first
        self.started = time.monotonic()
        self.detail = ""
        self.phases: list[Phase] = []

    def next(self, name: str, detail: str = "") -> None:
        self.close(True)
        self.name, self.detail = name, detail

    def close(self, ok: bool, detail: str | None = None) -> None:
        end = time.monotonic()
        text = self.detail if detail is None else detail
        self.phases.append(Phase(self.name, ok, end - self.started, text))
        self.started = end


#: (level, option) asking the kernel to report ICMP errors on an unconnected socket
_RECVERR: Final[dict[int, tuple[int, int]]] = {
    socket.AF_INET: (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)),
    socket.AF_INET6: (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25)),
}


def _local_address(family: int, sockaddr: tuple[object, ...]) -> str:
    """The local address the kernel routes to ``sockaddr`` from (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(sockaddr)
        return str(probe.getsockname()[0])


async def _udp(
    exchange: _Exchange,
    settings: SipSettings,
    host: str,
    family: int,
    sockaddr: tuple[object, ...],
    step: _Steps,
    sip: SipEngine,
    expires: float,
) -> None:
    ends = frozenset(settings.alive_codes) if settings.alive_codes is not None else None
    try:
        port = sip.port_for(family, sockaddr)
    except OSError as exc:
        raise _Failure(describe_oserror(exc)) from None
    transaction = _UdpTransaction(port, exchange, ends, sockaddr, expires)
    try:
        transaction.start(exchange.request(settings, host, port.name))
        step.next("response", f"udp {exchange.local} -> {_uri_host(str(sockaddr[0]))}")
        try:
            await transaction.done
        except ConnectionRefusedError:
            raise _Failure("port unreachable") from None
        except OSError as exc:
            raise _Failure(describe_oserror(exc)) from None
    finally:
        transaction.stop()


async def _tcp(
    exchange: _Exchange,
    settings: SipSettings,
    host: str,
    family: int,
    sockaddr: tuple[object, ...],
    step: _Steps,
) -> None:
    loop = asyncio.get_running_loop()
    ends = frozenset(settings.alive_codes) if settings.alive_codes is not None else None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            raise _Failure(describe_oserror(exc)) from None
        request = exchange.request(settings, host, sock.getsockname())
        step.next("send", _uri_host(str(sockaddr[0])))
        exchange.sent.append(time.monotonic())
        try:
            await loop.sock_sendall(sock, request)
        except OSError as exc:
            raise _Failure(describe_oserror(exc)) from None
        step.next("response", f"tcp {exchange.local}")
        buffer, total = b"", 0
        while True:
            try:
                chunk = await loop.sock_recv(sock, MAX_RESPONSE_BYTES)
            except OSError as exc:
                raise _Failure(describe_oserror(exc)) from None
            if not chunk:
                raise _Failure("connection closed before a final response")
            total += len(chunk)
            buffer += chunk
            while (framed := split_message(buffer)) is not None:
                message, buffer = framed
                if exchange.accept(message, ends, time.monotonic()):
                    return
            if total > MAX_RESPONSE_BYTES:
                raise _Failure(f"no final response in the first {MAX_RESPONSE_BYTES // 1024} KiB")
    finally:
        sock.close()


def _clip(value: str | None) -> str | None:
    return None if value is None else _CONTROL.sub(" ", value)[:_MAX_DETAIL]


async def probe(target: str, settings: SipSettings, ctx: ProbeContext) -> ProbeResult:
    """Send one OPTIONS to ``target:settings.port``; see the module docstring."""
    sip = await engine(ctx) if settings.transport == "udp" else None
    at = now()
    started = time.monotonic()
    exchange = _Exchange(settings.transport)
    step = _Steps("resolve")
    address: str | None = None
    error: str | None = None
    warning: str | None = None
    # One deadline for the whole probe. A UDP transaction keeps it with its own timer; a
    # timeout scope is opened only around what has no timer of its own (asking a
    # resolver for a name, the TCP exchange).
    expires = asyncio.get_running_loop().time() + settings.timeout
    scope: asyncio.Timeout | None = None
    try:
        address_of = literal(target, settings.port)
        if address_of is None:
            scope = asyncio.timeout_at(expires)
            try:
                async with scope:
                    address_of = (
                        await resolve(target, settings.port, _SOCKTYPE[settings.transport])
                    )[0]
            except socket.gaierror as exc:
                raise _Failure(f"cannot resolve {target}: {exc.strerror or exc}") from None
        family, sockaddr = address_of
        address = str(sockaddr[0])
        if settings.transport == "udp":
            step.next("send", address)
            assert sip is not None
            await _udp(exchange, settings, target, family, sockaddr, step, sip, expires)
        else:
            step.next("connect", address)
            scope = asyncio.timeout_at(expires)
            async with scope:
                await _tcp(exchange, settings, target, family, sockaddr, step)
    except _Failure as exc:
        error = str(exc)
        step.close(False, error)
    except (_Expired, TimeoutError) as exc:
        if isinstance(exc, TimeoutError) and (scope is None or not scope.expired()):
            raise  # not our deadline: a bug below, do not disguise it as a timeout
        error = f"timeout after {settings.timeout:g}s ({step.name})"
        if step.name == "response":
            error = f"no response within {settings.timeout:g}s ({len(exchange.sent)} sent)"
        step.close(False, "timeout")

    details: dict[str, object] = {
        "transport": settings.transport,
        "port": settings.port,
        "retransmissions": max(0, len(exchange.sent) - 1),
        "provisional": list(exchange.provisional),
        "strays": exchange.strays,
    }
    if address is not None:
        details["address"] = address
    if exchange.local is not None:
        details["local"] = exchange.local
    rtt: float | None = None
    final = exchange.final
    if final is not None and exchange.received is not None:
        rtt = exchange.received - exchange.sent[0]
        last_send = max(t for t in exchange.sent if t <= exchange.received)
        notes: list[str] = []
        details.update(
            status=final.status,
            reason=_clip(final.reason),
            server=_clip(final.header("server")),
            user_agent=_clip(final.header("user-agent")),
            rtt_last_send=exchange.received - last_send,
            notes=notes,
        )
        summary = f"{final.status} {_clip(final.reason)}".strip()
        alive = settings.alive_codes is None or final.status in settings.alive_codes
        if not alive:
            allowed = ", ".join(str(c) for c in settings.alive_codes or ()) or "none"
            error = f"{summary} (alive: {allowed})"
        elif final.status == 503:
            notes.append(f"{summary}: the SIP stack answered but refuses service (overload?)")
            warning = summary
        elif final.status >= 300:
            notes.append(f"{summary}: counted alive, a SIP stack answered")
        retry_after = final.header("retry-after")
        if retry_after is not None:
            details["retry_after"] = _clip(retry_after)
            notes.append(f"Retry-After: {_clip(retry_after)}")
        step.close(alive, summary)

    return ProbeResult(
        probe="sip",
        target=target,
        ok=error is None,
        at=at,
        duration=time.monotonic() - started,
        rtt=rtt,
        error=error,
        warning=warning,
        phases=tuple(step.phases),
        details=details,
    )


SPEC = ProbeSpec(
    name="sip",
    settings=SipSettings,
    probe=probe,
    deadline=timeout_deadline,
    measures=("rtt",),
    can_reach=True,
)
