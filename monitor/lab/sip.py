"""The lab's SIP responder: answers OPTIONS over UDP and TCP as a user agent server would.

What a caller (a SIP probe) may rely on, per RFC 3261 §8.2.6 and §18:

- ``OPTIONS`` gets ``SIP/2.0 200 OK`` (or the point's ``sip_status`` override)
  with every ``Via`` copied in order, ``From``, ``To``, ``Call-ID`` and ``CSeq``
  copied, a ``tag`` added to ``To`` when the request had none (derived from the
  Call-ID, so a retransmission gets the same tag), ``Server: confmon-lab/<version>``,
  ``Allow: OPTIONS`` and ``Content-Length: 0``.
- The top ``Via`` gets ``received=<source address>`` when its sent-by host differs
  from the source or ``rport`` was asked for, and an empty ``rport`` is filled with
  the source port (RFC 3581). Replies always go back to the packet's source
  address and port (symmetric, as rport makes them): the probe measures the path
  it sent on, and a lab has no NAT to traverse.
- ``ACK`` and responses are never answered; ``CANCEL`` gets 481 (there is no
  transaction to cancel); any other method 405 with ``Allow: OPTIONS``. A request
  missing ``Via``/``From``/``To``/``Call-ID``/``CSeq`` or whose ``CSeq`` method
  differs gets 400 with the reason in the phrase; one without a ``Via`` is dropped
  (there is nowhere to send it).
- Over TCP one connection may carry many requests, framed by ``Content-Length``
  (mandatory on streams, §18.3: a request without it gets 400 and the connection
  is closed). Headers are bounded to 16 KiB and bodies to 64 KiB (513, then
  close); a double-CRLF keepalive gets the single-CRLF pong of RFC 5626 §4.4.1.
- Bytes of copied header values are returned exactly as received.

Compact header forms (``v``, ``f``, ``t``, ``i``, ``l``) are understood; replies
use the full names.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from monitor.lab.site import DatagramResponder, Site, StreamResponder

__all__ = ["SipRequest", "SipTcpResponder", "SipUdpResponder", "answer", "parse_request"]

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "l": "content-length",
    "m": "contact",
    "c": "content-type",
    "k": "supported",
}
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    483: "Too Many Hops",
    486: "Busy Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}
_CLASS_REASONS = {2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error", 6: "Global Failure"}
_LINE_BREAK = re.compile(rb"\r?\n")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")


class SipParseError(ValueError):
    """Bytes that are not a SIP request."""


@dataclass(frozen=True, slots=True)
class SipRequest:
    """A parsed request: method, Request-URI and headers (lower-case full names, in order)."""

    method: str
    uri: str
    headers: tuple[tuple[str, str], ...]

    def first(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case full name), or None."""
        return next((value for key, value in self.headers if key == name), None)

    def values(self, name: str) -> list[str]:
        """Every header line named ``name``, in order."""
        return [value for key, value in self.headers if key == name]


def _decode(raw: bytes) -> str:
    # surrogateescape keeps any byte: copied headers go back exactly as they came
    return raw.decode("utf-8", "surrogateescape")


def parse_head(head: bytes) -> SipRequest | None:
    """Parse a start line and headers (no body); None for a response, error for garbage."""
    lines = _LINE_BREAK.split(head)
    start = _decode(lines[0]).strip()
    if start.startswith("SIP/"):
        return None  # a response: a UAS never answers those
    parts = start.split(" ")
    if len(parts) != 3 or parts[2].upper() != "SIP/2.0" or not _TOKEN.match(parts[0]):
        raise SipParseError(f"bad request line {start[:80]!r}")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        if not raw:
            continue
        line = _decode(raw)
        if line[0] in " \t":  # folded continuation of the previous header (RFC 3261 §7.3.1)
            if not headers:
                raise SipParseError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise SipParseError(f"bad header line {line[:80]!r}")
        headers.append((_COMPACT.get(name, name), value.strip()))
    return SipRequest(parts[0], parts[1], tuple(headers))


def parse_request(datagram: bytes) -> SipRequest | None:
    """Parse a whole message as received over UDP (the body, if any, is ignored)."""
    data = datagram.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    return parse_head(data if end < 0 else data[:end])


def _reason(status: int) -> str:
    return _REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")


def _host_of(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")] if "]" in hostport else hostport[1:]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def stamp_via(value: str, host: str, port: int) -> str:
    """The top Via value with ``received``/``rport`` set for a request from ``host:port``."""
    first, comma, rest = value.partition(",")
    sent, *params = first.split(";")
    sent_by = sent.split()
    via_host = _host_of(sent_by[-1]) if len(sent_by) >= 2 else ""
    rport = False
    kept: list[str] = []
    for param in params:
        name, _, val = param.partition("=")
        key = name.strip().lower()
        if key == "received":
            continue  # replaced below
        if key == "rport":
            rport = True
            if not val.strip():
                param = f"rport={port}"
        kept.append(param)
    if rport or not _same_host(via_host, host):
        kept.append(f"received={host}")
    return ";".join([sent, *kept]) + comma + rest


def _has_tag(value: str) -> bool:
    # header parameters follow the closing '>' of a name-addr, or the first ';' of a bare URI
    tail = value[value.rfind(">") + 1 :] if ">" in value else value.partition(";")[2]
    return any(p.strip().lower().startswith("tag=") for p in tail.split(";"))


def _tag(site: Site, call_id: str) -> str:
    return hashlib.blake2s(f"{site.point.id}\0{call_id}".encode(), digest_size=6).hexdigest()


def build_response(
    request: SipRequest,
    status: int,
    *,
    source: tuple[str, int],
    to_tag: str,
    server: str,
    reason: str | None = None,
) -> bytes:
    """The response to ``request``, headers copied as RFC 3261 §8.2.6 says."""
    lines = [f"SIP/2.0 {status} {reason or _reason(status)}"]
    first = True
    for via in request.values("via"):
        lines.append(f"Via: {stamp_via(via, *source) if first else via}")
        first = False
    for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
        value = request.first(key)
        if value is None:
            continue
        if key == "to" and status != 100 and not _has_tag(value):
            value = f"{value};tag={to_tag}"
        lines.append(f"{name}: {value}")
    lines.append(f"Server: {server}")
    if status == 405 or request.method == "OPTIONS":
        lines.append("Allow: OPTIONS")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def answer(
    site: Site, request: SipRequest, source: tuple[str, int], *, problem: str | None = None
) -> bytes | None:
    """The bytes to send back for ``request`` from ``source``, or None when nothing is sent."""
    if request.method == "ACK" or not request.values("via"):
        return None
    missing = [name for name in _REQUIRED if request.first(name) is None]
    cseq = (request.first("cseq") or "").split()
    reason: str | None = None
    if problem is not None:
        status, reason = 400, f"Bad Request ({problem})"
    elif missing:
        status, reason = 400, f"Bad Request (missing {', '.join(missing)})"
    elif len(cseq) != 2 or not cseq[0].isdigit() or cseq[1] != request.method:
        status, reason = 400, "Bad Request (CSeq does not match the request)"
    elif request.method == "OPTIONS":
        status = site.own.sip_status or 200
    elif request.method == "CANCEL":
        status = 481
    else:
        status = 405
    return build_response(
        request,
        status,
        source=source,
        to_tag=_tag(site, request.first("call-id") or ""),
        server=site.runtime.server,
        reason=reason,
    )


class SipUdpResponder(DatagramResponder):
    """SIP over UDP for one point: one datagram, one request, one reply."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            request = parse_request(data)
        except SipParseError:
            return  # garbage over UDP: nobody to tell
        if request is None:
            return
        reply = answer(self.site, request, (addr[0], addr[1]))
        if reply is not None:
            self.site.send(self._sendto, reply, addr)


class SipTcpResponder(StreamResponder):
    """SIP over TCP for one point: many requests per connection, framed by Content-Length."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self._peer: tuple[str, int] = ("", 0)
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self._peer = (peer[0], peer[1])

    def process(self) -> None:
        buf = self.buffer
        while buf and not self._done:
            if buf.startswith(b"\r\n\r\n"):  # RFC 5626 keepalive ping -> pong
                del buf[:4]
                self.reply(b"\r\n")
                continue
            if buf.startswith(b"\r\n"):
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    return  # maybe a ping still arriving
                del buf[:2]  # RFC 3261 §7.5: CRLFs between messages are ignored
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD:
                if len(buf) > MAX_HEAD or end > MAX_HEAD:
                    self.abort()
                return
            try:
                request = parse_head(bytes(buf[:end]))
            except SipParseError:
                self.abort()
                return
            if request is None:  # a response on our connection: skip it with its body
                length = _content_length(_headers_of(bytes(buf[:end])))
                if length is None or length > MAX_BODY:
                    self.abort()
                    return
                if len(buf) < end + 4 + length:
                    return
                del buf[: end + 4 + length]
                continue
            length = _content_length(request.headers)
            if length is None or length > MAX_BODY:
                problem = "missing or bad Content-Length" if length is None else None
                reply = (
                    answer(self.site, request, self._peer, problem=problem)
                    if problem
                    else _too_large(self.site, request, self._peer)
                )
                self._finish(reply)
                return
            if len(buf) < end + 4 + length:
                return
            del buf[: end + 4 + length]
            reply = answer(self.site, request, self._peer)
            if reply is not None:
                self.reply(reply)

    def _finish(self, reply: bytes | None) -> None:
        """Answer the last request this connection gets, then close it."""
        self._done = True
        self.buffer.clear()
        if reply is not None:
            self.reply(reply, close=True)
        elif self.transport is not None:
            self.transport.close()


def _headers_of(head: bytes) -> tuple[tuple[str, str], ...]:
    out = []
    for raw in _LINE_BREAK.split(head)[1:]:
        name, _, value = _decode(raw).partition(":")
        name = name.strip().lower()
        out.append((_COMPACT.get(name, name), value.strip()))
    return tuple(out)


def _content_length(headers: tuple[tuple[str, str], ...]) -> int | None:
    values = {value for key, value in headers if key == "content-length"}
    if len(values) != 1:
        return None
    value = values.pop()
    return int(value) if value.isdigit() else None


def _too_large(site: Site, request: SipRequest, peer: tuple[str, int]) -> bytes | None:
    if not request.values("via"):
        return None
    return build_response(
        request,
        513,
        source=peer,
        to_tag=_tag(site, request.first("call-id") or ""),
        server=site.runtime.server,
    )
