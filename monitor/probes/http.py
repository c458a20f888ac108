"""HTTP(S) probe: one GET of a point's status page, timed phase by phase, with certificate expiry.

``probe(target, settings, ctx)`` requests ``{scheme}://{host}:{port}{path}``
(port 80/443 by scheme unless set; IPv6 addresses in brackets) through the
context's shared aiohttp session (``await session(ctx)``). Redirects are not
followed: a 30x is a status like any other. The settings model and the spec are in
:mod:`monitor.probes.httpspec` (importable without aiohttp) and re-exported here.

What a caller may rely on:

* ``ok`` is True when the status is in ``settings.status`` (empty: 200-399),
  ``settings.body_regex`` (if any) is found in the first :data:`MATCH_LIMIT`
  (256 KiB) of the body (decoded with the response charset, else UTF-8, bad
  bytes replaced), and for
  HTTPS the certificate has at least ``settings.cert_min_days`` days left.
  Otherwise ``error`` says which, in one line (``"status 500 (expected
  200-399)"``, ``"connection refused"``, ``"certificate verification failed:
  self-signed certificate"``, ``"timeout after 2 s in first_byte"`` ...).
* Phases, in order, each the time since the previous one ended: ``resolve``
  (0 with detail ``address literal`` or ``cached`` when no lookup ran),
  ``connect`` (TCP), ``tls`` (HTTPS only), ``request`` (headers written),
  ``first_byte`` (until the response headers arrived) and ``body``. A failed
  probe lists the phases it completed and the one it failed in.
* ``rtt`` is the time to first byte: from the start of the request until the
  response headers arrived, as curl's ``time_starttransfer`` counts it.
* ``details``: ``status``, ``url`` (the final URL), ``bytes`` (body bytes read,
  at most 1 MiB), ``truncated``, ``server`` (the Server header) and, for
  HTTPS, ``cert_days_left`` (float days until notAfter; negative once expired)
  and ``cert_not_after`` (ISO 8601, UTC), absent only if the certificate could
  not be obtained (see below).
* The body regex is matched by RE2 (:mod:`monitor.probes.pattern`), in time
  linear in the body, on a thread of its own: no pattern and no body can stall
  the event loop (``(a+)+$`` once blocked it for 97.8 s under Python's ``re``).
* One deadline, ``settings.timeout``, covers everything from DNS to the last
  body byte and the match. Cancellation propagates; aiohttp releases the connection.

How the timings are taken: aiohttp's client tracing (:data:`TRACE_CONFIG`,
attached to the shared session by :func:`session`) marks DNS,
connection creation, headers sent; the probe itself marks headers received
and body end. aiohttp opens the TCP connection and runs the TLS handshake in
one step with no trace signal between them, so the probe passes its own
``ssl.SSLContext`` subclass whose ``wrap_bio`` (called by asyncio exactly when
the handshake begins) notes the time and keeps the ``SSLObject``; a context
variable ties that call to this probe's request. The same ``SSLObject`` gives
the peer certificate in DER form: ``getpeercert()`` returns an empty dict
when verification is off, and a 40-line DER walk to ``notAfter`` (RFC 5280)
saves a dependency on ``cryptography`` for one field. Should the hook not run
(an event loop that does not use ``SSLContext.wrap_bio``), TLS is reported as
included in ``connect`` and the certificate is taken from the response's
transport, which aiohttp keeps only while the body is still being received.
"""

from __future__ import annotations

import asyncio
import codecs
import contextvars
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from monitor.core.results import Phase, ProbeResult
from monitor.probes.base import ProbeContext, now
from monitor.probes.httpspec import SPEC, HttpSettings
from monitor.probes.net import resolve
from monitor.probes.pattern import compile_pattern, search_off_loop

__all__ = [
    "BODY_LIMIT",
    "MATCH_LIMIT",
    "PROBE_NAME",
    "SPEC",
    "TRACE_CONFIG",
    "HttpSettings",
    "Resolver",
    "build_url",
    "certificate_not_after",
    "probe",
    "session",
]

PROBE_NAME = "http"
BODY_LIMIT = 1 << 20
"""Bytes of the body read (``details["bytes"]``); the rest is not downloaded."""
MATCH_LIMIT = 256 << 10
"""Bytes of the body ``body_regex`` is matched against: a status page is far smaller,
and RE2's time, linear in the text, stays bounded for any pattern."""


@dataclass(slots=True)
class _Timing:
    """Monotonic marks of one request; ``None`` until reached."""

    start: float
    dns_start: float | None = None
    dns_end: float | None = None
    dns_cached: float | None = None
    conn_start: float | None = None
    conn_reused: float | None = None
    tls_start: float | None = None
    conn_end: float | None = None
    headers_sent: float | None = None
    headers_received: float | None = None
    body_done: float | None = None
    ssl_object: ssl.SSLObject | None = None


_CURRENT: contextvars.ContextVar[_Timing | None] = contextvars.ContextVar(
    "confmon_http_timing", default=None
)


# --- tracing -------------------------------------------------------------------------------

_TraceCallback = Callable[[aiohttp.ClientSession, SimpleNamespace, Any], Awaitable[None]]


def _marker(field: str) -> _TraceCallback:
    """A trace callback that sets ``field`` of this request's timing, once."""

    async def mark(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        timing = getattr(ctx, "trace_request_ctx", None)
        # Other users of the shared session pass their own (or no) request context.
        if isinstance(timing, _Timing) and getattr(timing, field) is None:
            setattr(timing, field, time.monotonic())

    return mark


TRACE_CONFIG = aiohttp.TraceConfig()
"""Attach to the session the probe uses (``ClientSession(trace_configs=[TRACE_CONFIG])``)."""
TRACE_CONFIG.on_dns_resolvehost_start.append(_marker("dns_start"))
TRACE_CONFIG.on_dns_resolvehost_end.append(_marker("dns_end"))
TRACE_CONFIG.on_dns_cache_hit.append(_marker("dns_cached"))
TRACE_CONFIG.on_connection_create_start.append(_marker("conn_start"))
TRACE_CONFIG.on_connection_create_end.append(_marker("conn_end"))
TRACE_CONFIG.on_connection_reuseconn.append(_marker("conn_reused"))
TRACE_CONFIG.on_request_headers_sent.append(_marker("headers_sent"))


# --- TLS -----------------------------------------------------------------------------------


class _TimedSSLContext(ssl.SSLContext):
    """An SSLContext that records, for the probe running in this context, when TLS began."""

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        timing = _CURRENT.get()
        if timing is not None and timing.tls_start is None:
            timing.tls_start = time.monotonic()
            timing.ssl_object = obj
        return obj


def _make_context(verify: bool) -> ssl.SSLContext:
    context = _TimedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)  # reads the CA store: not on the loop
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


_contexts: dict[bool, ssl.SSLContext] = {}


async def _ssl_context(verify: bool) -> ssl.SSLContext:
    """The shared TLS client context; built once, in a thread, because it reads files."""
    context = _contexts.get(verify)
    if context is None:
        context = _contexts.setdefault(verify, await asyncio.to_thread(_make_context, verify))
    return context


def _der_item(der: bytes, pos: int) -> tuple[int, int, int]:
    """Tag, value start and value end of the DER item at ``pos``."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def certificate_not_after(der: bytes) -> datetime:
    """The ``notAfter`` time (UTC) of a DER-encoded X.509 certificate; ``ValueError`` if malformed.

    Walks Certificate -> tbsCertificate -> [version], serialNumber, signature,
    issuer -> validity (RFC 5280 §4.1), which is all the structure it needs.
    """
    sequence, integer, utc_time, generalized_time = 0x30, 0x02, 0x17, 0x18
    try:
        tag, cert_start, _ = _der_item(der, 0)
        if tag != sequence:
            raise ValueError("not a certificate")
        tag, pos, _ = _der_item(der, cert_start)
        if tag != sequence:
            raise ValueError("no tbsCertificate")
        tag, _, end = _der_item(der, pos)
        if tag == 0xA0:  # explicit [0] version, absent in v1 certificates
            pos = end
        for expected in (integer, sequence, sequence):  # serialNumber, signature, issuer
            tag, _, pos = _der_item(der, pos)
            if tag != expected:
                raise ValueError("unexpected tbsCertificate layout")
        tag, validity, _ = _der_item(der, pos)
        if tag != sequence:
            raise ValueError("no validity")
        _, _, after_not_before = _der_item(der, validity)
        tag, start, end = _der_item(der, after_not_before)
        text = der[start:end].decode("ascii")
    except (IndexError, UnicodeDecodeError):
        raise ValueError("malformed certificate") from None
    if tag == utc_time and len(text) == 13:
        # RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != generalized_time or len(text) != 15:
        raise ValueError("unsupported notAfter encoding")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


# --- the probe -----------------------------------------------------------------------------


class Resolver(AbstractResolver):
    """aiohttp's name lookups through :func:`monitor.probes.net.resolve`, like every other probe.

    Address literals skip the resolver's thread pool and ``.invalid`` names fail
    without a query (RFC 6761), as they do for the other probes.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await resolve(host, port, socket.SOCK_STREAM)
        return [
            ResolveResult(
                hostname=host,
                host=str(sockaddr[0]),
                port=int(sockaddr[1]),
                family=fam,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for fam, sockaddr in found
            if family in (socket.AF_UNSPEC, fam)
        ]

    async def close(self) -> None:
        return None


async def _open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(limit=256, force_close=True, resolver=Resolver()),
        trust_env=False,
        trace_configs=[TRACE_CONFIG],  # phase timings
    )


async def session(ctx: ProbeContext) -> aiohttp.ClientSession:
    """The context's shared aiohttp session, opened on first use and closed with the context.

    No cookies are kept and no proxy is taken from the environment; lookups go
    through :class:`Resolver` and :data:`TRACE_CONFIG` times the phases.
    """
    return await ctx.shared("http", _open_session)


def build_url(host: str, settings: HttpSettings) -> str:
    """``{scheme}://{host}:{port}{path}`` with IPv6 addresses in brackets."""
    port = settings.port or (443 if settings.scheme == "https" else 80)
    netloc = f"[{host}]" if ":" in host else host
    return f"{settings.scheme}://{netloc}:{port}{settings.path}"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _phases(timing: _Timing, *, https: bool, literal: bool, failure: str | None) -> list[Phase]:
    """Phases reached, each timed from the end of the previous one; a failure ends the list."""
    resolve_detail = ""
    resolve_end = timing.dns_end
    if timing.dns_start is None:
        if literal and timing.conn_start is not None:
            resolve_end, resolve_detail = timing.conn_start, "address literal"
        elif timing.dns_cached is not None:
            resolve_end, resolve_detail = timing.dns_cached, "cached"
        elif timing.conn_reused is not None:
            resolve_end, resolve_detail = timing.conn_reused, "connection reused"
    connect_end = timing.tls_start if https else timing.conn_end
    tls_detail = ""
    if https and timing.tls_start is None and timing.conn_end is not None:
        # Our context's hook did not run (another event loop implementation): TCP and TLS
        # can then only be timed together.
        connect_end, tls_detail = timing.conn_end, "included in connect"
    if timing.conn_reused is not None and timing.conn_end is None:
        connect_end = timing.conn_reused
    marks: list[tuple[str, float | None, str]] = [
        ("resolve", resolve_end, resolve_detail),
        ("connect", connect_end, ""),
    ]
    if https:
        marks.append(("tls", timing.conn_end or timing.conn_reused, tls_detail))
    marks += [
        ("request", timing.headers_sent, ""),
        ("first_byte", timing.headers_received, ""),
        ("body", timing.body_done, ""),
    ]
    previous = timing.conn_start if timing.conn_start is not None else timing.start
    phases: list[Phase] = []
    for name, end, detail in marks:
        if end is None:
            if failure is not None:
                phases.append(Phase(name, False, None, failure))
            break
        phases.append(Phase(name, True, max(0.0, end - previous), detail))
        previous = end
    return phases


async def _read_body(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """At most :data:`BODY_LIMIT` bytes of the body, and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size < BODY_LIMIT:
        chunk = await resp.content.read(BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    truncated = size >= BODY_LIMIT and not resp.content.at_eof()
    return b"".join(chunks), truncated


def _decode(body: bytes, charset: str | None) -> str:
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    return body.decode(codec, errors="replace")


def _expected(settings: HttpSettings) -> str:
    return ", ".join(map(str, settings.status)) if settings.status else "200-399"


def _connector_reason(exc: aiohttp.ClientConnectorError, host: str) -> str:
    """One short line for a failure to open the connection."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        message = getattr(cert_error, "verify_message", None) or str(cert_error)
        return f"certificate verification failed: {message}"
    os_error = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {getattr(os_error, 'reason', None) or os_error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(os_error, socket.gaierror):
        return f"cannot resolve {host}: {os_error.strerror or os_error}"
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {os_error.strerror or os_error}"


def _peer_certificate(timing: _Timing, resp: aiohttp.ClientResponse) -> bytes | None:
    """The server's certificate (DER), from the TLS object seen at handshake or the transport."""
    ssl_object = timing.ssl_object
    if ssl_object is None and resp.connection is not None and resp.connection.transport:
        # Fallback when our context's hook did not run (another event loop implementation).
        ssl_object = resp.connection.transport.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):
        return ssl_object.getpeercert(binary_form=True)
    return None


def _check_certificate(der: bytes, min_days: int, details: dict[str, object]) -> str | None:
    """Record the certificate's days left in ``details``; the failure reason if too few."""
    try:
        not_after = certificate_not_after(der)
    except ValueError as exc:
        return f"cannot read the certificate's expiry: {exc}"
    days_left = (not_after.timestamp() - time.time()) / 86400.0
    details.update(cert_days_left=round(days_left, 3), cert_not_after=not_after.isoformat())
    if days_left < 0:
        return f"certificate expired {-days_left:.1f} days ago"
    if days_left < min_days:
        return f"certificate expires in {days_left:.1f} days (minimum {min_days})"
    return None


async def _match_body(
    settings: HttpSettings, body: bytes, charset: str | None, started: float
) -> str | None:
    """Why the body fails ``body_regex`` (None if it matches), within the probe's deadline."""
    assert settings.body_regex is not None
    pattern = compile_pattern(settings.body_regex)  # validated with the settings: compiles
    text = _decode(body[:MATCH_LIMIT], charset)
    left = settings.timeout - (time.monotonic() - started)
    try:
        async with asyncio.timeout(max(0.001, left)):
            found = await search_off_loop(pattern, text)
    except TimeoutError:
        return f"timeout after {settings.timeout:g} s in body_regex"
    return None if found else f"body does not match /{settings.body_regex}/"


async def probe(target: str, settings: HttpSettings, ctx: ProbeContext) -> ProbeResult:
    """GET the status page of ``target`` and check status, body, certificate and timings."""
    https = settings.scheme == "https"
    url = build_url(target, settings)
    at = now()
    started = time.monotonic()
    timing = _Timing(start=started)
    status: int | None = None
    details: dict[str, object] = {"url": url}
    body = b""
    text_charset: str | None = None
    der: bytes | None = None
    error: str | None = None
    timed_out = False
    token = _CURRENT.set(timing)
    try:
        async with asyncio.timeout(settings.timeout):
            client = await session(ctx)
            ssl_arg: ssl.SSLContext | bool = (
                await _ssl_context(settings.tls_verify) if https else True
            )
            timing.start = time.monotonic()
            async with client.get(
                url,
                allow_redirects=False,
                ssl=ssl_arg,
                timeout=aiohttp.ClientTimeout(
                    total=max(0.001, settings.timeout - (timing.start - started))
                ),
                trace_request_ctx=timing,
            ) as resp:
                timing.headers_received = time.monotonic()
                if https:
                    der = _peer_certificate(timing, resp)
                status = resp.status
                details.update(status=status, url=str(resp.url), server=resp.headers.get("Server"))
                text_charset = resp.charset
                body, truncated = await _read_body(resp)
                timing.body_done = time.monotonic()
                details.update(bytes=len(body), truncated=truncated)
    except TimeoutError:
        timed_out = True
    except aiohttp.ClientConnectorError as exc:
        error = _connector_reason(exc, target)
    except aiohttp.ServerDisconnectedError:
        error = "server disconnected"
    except aiohttp.ClientResponseError as exc:
        error = f"bad response: {exc.message}"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        _CURRENT.reset(token)
    ended = time.monotonic()

    literal = _is_address(target)
    if timed_out:
        reached = _phases(timing, https=https, literal=literal, failure="timeout")
        where = reached[-1].name if reached and not reached[-1].ok else "body"
        error = f"timeout after {settings.timeout:g} s in {where}"
    phases = _phases(timing, https=https, literal=literal, failure=error)

    if error is None and status is not None:
        allowed = status in settings.status if settings.status else 200 <= status <= 399
        if not allowed:
            error = f"status {status} (expected {_expected(settings)})"
        elif settings.body_regex is not None:
            error = await _match_body(settings, body, text_charset, started)
            ended = time.monotonic()
    if der is not None:
        cert_error = _check_certificate(der, settings.cert_min_days, details)
        error = error or cert_error

    rtt = timing.headers_received - timing.start if timing.headers_received is not None else None
    return ProbeResult(
        probe=PROBE_NAME,
        target=target,
        ok=error is None,
        at=at,
        duration=ended - started,
        rtt=rtt,
        error=error,
        phases=tuple(phases),
        details=details,
    )
