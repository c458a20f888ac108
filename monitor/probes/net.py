"""Socket helpers shared by the socket-level probes (icmp, tcp, sip, media, http's lookups).

What a caller may rely on:

* :func:`resolve` gives a host's addresses in resolver order, answers IP literals
  without the resolver and fails ``.invalid`` names without a query, so that every
  probe resolves alike; :func:`describe_oserror` gives the short reason a probe puts
  in its ``error`` (``"connection refused"``, ``"host unreachable"``, ...), so that
  the same failure reads the same in every probe.
* Kernel receive timestamps: :func:`enable_receive_timestamps` asks the kernel to
  stamp every datagram a socket receives (``SO_TIMESTAMPNS``), and
  :func:`arrival_time` turns the ancillary data of a ``recvmsg`` and the monotonic
  time the datagram was read into the monotonic time it arrived. Where there is no
  stamp (another platform, a kernel that refused, a stamp from the future after a
  clock step) the arrival is the read time, so a caller never needs to know which.
  A socket read this way must pass at least :data:`TIMESTAMP_SPACE` bytes of
  ancillary buffer to ``recvmsg``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import platform
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import Final

__all__ = [
    "LINUX_GENERIC",
    "SO_TIMESTAMPNS",
    "TIMESTAMP_SPACE",
    "Address",
    "arrival_time",
    "describe_oserror",
    "enable_receive_timestamps",
    "kernel_stamp_ns",
    "literal",
    "resolve",
    "set_buffer",
]

Address = tuple[int, tuple[str, int] | tuple[str, int, int, int]]
"""An address family and the socket address to connect to."""

# Linux socket options the socket module does not export. The numbers are the
# asm-generic ones (x86-64, arm64, riscv, ...); MIPS, SPARC, Alpha and PA-RISC renumber
# SOL_SOCKET options, so there the probes go without them rather than set a wrong one.
LINUX_GENERIC: Final = sys.platform == "linux" and not platform.machine().startswith(
    ("mips", "sparc", "alpha", "parisc")
)
"""True where Linux's asm-generic socket option numbers (:data:`SO_TIMESTAMPNS`, ...) apply."""
SO_TIMESTAMPNS: Final = 35
"""``SOL_SOCKET`` option (and ancillary item type) of nanosecond receive timestamps."""

_TIMESPEC: Final = struct.Struct("@qq")
TIMESTAMP_SPACE: Final = socket.CMSG_SPACE(_TIMESPEC.size)
"""Ancillary buffer bytes one receive timestamp takes (add it to the ``recvmsg`` buffer size)."""

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


def literal(host: str, port: int) -> Address | None:
    """``host`` as an address when it is an IP literal (no resolver needed), else None.

    A scoped IPv6 address (``fe80::1%eth0``) is not answered here: getaddrinfo maps its
    zone to an interface index.
    """
    try:
        # the common case, a dotted quad, in C: inet_pton accepts exactly the canonical
        # forms ipaddress does (no leading zeros), ~20x faster, and this runs per probe
        socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        pass
    else:
        return (socket.AF_INET, (host, port))
    if "%" not in host:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if ip.version == 4:
                return (socket.AF_INET, (str(ip), port))
            return (socket.AF_INET6, (str(ip), port, 0, 0))
    return None


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
    address = literal(host, port)
    if address is not None:
        return [address]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socktype)
    seen: list[Address] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        addr: Address = (int(family), sockaddr)  # type: ignore[assignment]
        if family in (socket.AF_INET, socket.AF_INET6) and addr not in seen:
            seen.append(addr)
    if not seen:
        raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
    return seen


#: the FORCE variants of SO_SNDBUF and SO_RCVBUF (Linux; root or CAP_NET_ADMIN)
_FORCE: Final = {socket.SO_SNDBUF: 32, socket.SO_RCVBUF: 33}


def set_buffer(sock: socket.socket, option: int, size: int) -> None:
    """Set ``sock``'s send or receive buffer (``SO_SNDBUF``/``SO_RCVBUF``) to ``size`` bytes.

    The FORCE variants may exceed net.core.[rw]mem_max; without the privilege they need,
    the kernel silently caps the plain option at that maximum, which is the best an
    unprivileged process can get.
    """
    if LINUX_GENERIC:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _FORCE[option], size)
            return
        except OSError:
            pass
    sock.setsockopt(socket.SOL_SOCKET, option, size)


def enable_receive_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram ``sock`` receives; False where it will not.

    Without stamps :func:`arrival_time` falls back to the read time, which it notices
    by the missing ancillary item: callers need not check the answer.
    """
    if not LINUX_GENERIC:
        return False
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return True
    return False


def kernel_stamp_ns(ancillary: Iterable[tuple[int, int, bytes]]) -> int | None:
    """The kernel's receive stamp of a datagram (wall clock, nanoseconds), or None.

    For a probe that stamps its packets with the wall clock too (:func:`time.time_ns`),
    the difference is exact whenever the thread reads it: no carrying over between
    clocks, which a thread that loses the CPU between two clock reads would distort.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return None


def arrival_time(ancillary: Iterable[tuple[int, int, bytes]], read_at: float) -> float:
    """When a datagram arrived (monotonic seconds), from ``recvmsg``'s ancillary data.

    ``read_at`` is :func:`time.monotonic` taken right after the read. The kernel's
    stamp is wall-clock time; it is carried over to the monotonic clock by its age, so
    only a clock step inside that (short) age can distort it. Without a stamp, or with
    one that is not in the past, the answer is ``read_at``.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            stamp: float = seconds + nanoseconds * 1e-9
            age = time.time() - stamp
            if age > 0.0:
                return read_at - age
    return read_at
