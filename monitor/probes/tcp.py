"""TCP connect probe: how long a three-way handshake to ``host:port`` takes.

What a caller may rely on:

* ``probe(target, settings, ctx)`` never raises for a network failure; it returns a
  :class:`~monitor.probes.base.ProbeResult` named ``"tcp"`` with ``ok=False`` and one of
  these ``error`` reasons: ``"cannot resolve <host>: ..."``, ``"connection refused"``,
  ``"host unreachable"``, ``"network unreachable"``, ``"timeout after <t>s (<phase>)"``,
  or the operating system's own words for anything rarer.
* ``settings.timeout`` bounds the whole probe, name resolution included. A name that
  resolves to several addresses is tried address by address, in resolver order, inside
  that one deadline; the first successful connect wins.
* Phases: ``resolve`` then ``connect`` (its ``detail`` names the address used).
  ``rtt`` is the connect time; ``details`` holds ``address`` and ``port``.
* The socket is closed before the probe returns, also when the probe is cancelled.
  Nothing is sent: connect and close, so the peer sees an ordinary FIN.

:func:`resolve` and :func:`describe_oserror` are shared with the other
socket-level probes (``sip``), so that "cannot resolve" and "refused" read the
same everywhere.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time

from monitor.core.results import Phase, ProbeResult
from monitor.inventory.model import TcpSettings
from monitor.probes.base import ProbeContext, now

__all__ = ["Address", "describe_oserror", "probe", "resolve"]

Address = tuple[int, tuple[str, int] | tuple[str, int, int, int]]
"""An address family and the socket address to connect to."""

_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted (firewall?)",
}


def describe_oserror(exc: OSError) -> str:
    """A short, stable reason for a socket error (``"connection refused"``, ...)."""
    if exc.errno is not None and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


async def resolve(host: str, port: int, socktype: int) -> list[Address]:
    """The addresses of ``host`` in resolver order; raises :class:`socket.gaierror`.

    IP literals are answered without the resolver, and names in the reserved
    ``.invalid`` domain fail without a query. The default executor runs
    ``getaddrinfo`` on a small thread pool, and 450 probes of literal
    addresses must not queue behind one slow DNS lookup. A timeout around this
    call stops the wait, not the resolver thread (``getaddrinfo`` cannot be
    interrupted); the thread finishes on its own.
    """
    name = host.rstrip(".").lower()
    if name == "invalid" or name.endswith(".invalid"):
        # RFC 6761 §6.4: never resolvable, so never worth a query to a resolver
        raise socket.gaierror(socket.EAI_NONAME, "reserved name (RFC 6761), never resolved")
    try:
        # the common case, a dotted quad, in C: inet_pton accepts exactly the canonical
        # forms ipaddress does (no leading zeros), ~20x faster, and this runs per probe
        socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        pass
    else:
        return [(socket.AF_INET, (host, port))]
    if "%" not in host:  # scoped IPv6 needs getaddrinfo to map the zone to an index
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if ip.version == 4:
                return [(socket.AF_INET, (str(ip), port))]
            return [(socket.AF_INET6, (str(ip), port, 0, 0))]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socktype)
    seen: list[Address] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        addr: Address = (int(family), sockaddr)  # type: ignore[assignment]
        if family in (socket.AF_INET, socket.AF_INET6) and addr not in seen:
            seen.append(addr)
    if not seen:
        raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
    return seen


async def _connect(family: int, sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    finally:
        # Closing at once after the handshake is the whole point of a connect probe; the
        # finally also covers cancellation and the deadline firing mid-connect.
        sock.close()


async def probe(target: str, settings: TcpSettings, ctx: ProbeContext) -> ProbeResult:
    """Connect to ``target:settings.port`` within ``settings.timeout``; see the module docstring."""
    del ctx  # a connect probe needs no shared resources
    at = now()
    started = time.monotonic()
    phases: list[Phase] = []
    stage, stage_started = "resolve", started
    address: str | None = None
    rtt: float | None = None
    error: str | None = None

    def finish(ok: bool, detail: str = "") -> float:
        nonlocal stage_started
        elapsed = time.monotonic() - stage_started
        phases.append(Phase(stage, ok, elapsed, detail))
        stage_started = time.monotonic()
        return elapsed

    deadline = asyncio.timeout(settings.timeout)
    try:
        async with deadline:
            try:
                addresses = await resolve(target, settings.port, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                error = f"cannot resolve {target}: {exc.strerror or exc}"
                finish(False, error)
            else:
                finish(True, ", ".join(a[1][0] for a in addresses))
                stage = "connect"
                last: OSError | None = None
                for family, sockaddr in addresses:
                    address = sockaddr[0]
                    try:
                        await _connect(family, sockaddr)
                    except OSError as exc:
                        last = exc
                        continue
                    rtt = finish(True, address)
                    break
                else:
                    assert last is not None
                    error = describe_oserror(last)
                    finish(False, f"{address}: {error}")
    except TimeoutError:
        if not deadline.expired():
            raise  # not our deadline: a bug somewhere below, do not disguise it
        error = f"timeout after {settings.timeout:g}s ({stage})"
        finish(False, "timeout")

    details: dict[str, object] = {"port": settings.port}
    if address is not None:
        details["address"] = address
    return ProbeResult(
        probe="tcp",
        target=target,
        ok=error is None,
        at=at,
        duration=time.monotonic() - started,
        rtt=rtt,
        error=error,
        phases=tuple(phases),
        details=details,
    )
