"""ICMP echo probe (``"icmp"``): bursts of echo requests through one engine per process.

What a caller may rely on:

* ``probe(target, settings, ctx)`` sends ``settings.count`` echo requests (default 5),
  ``settings.spacing`` apart (default 20 ms), through the process's :class:`IcmpEngine`
  (``await engine(ctx)``) and returns an ``"icmp"`` :class:`~monitor.probes.base.ProbeResult`.
* ``ok`` means **at least one reply came back**: a point answering 1 echo of 5 is
  reachable; its ``loss`` (not ``ok``) is what makes it degraded.
* ``rtt`` is the mean RTT of the replies, ``rtt_min``/``rtt_max`` their extremes,
  ``jitter`` the mean absolute difference of consecutive RTTs (the replies received, in
  send order; ``None`` with fewer than two replies), ``loss`` = requests without a reply /
  ``count``. A reply slower than ``settings.timeout`` counts as lost.
* One deadline for the whole probe, name resolution included:
  ``(count - 1) * spacing + timeout``. The probe returns by then (give or take how late
  the event loop runs), whatever happened. Replies the kernel received before the
  deadline count even if the loop reads them later; requests that could not be sent by
  then (send buffer full) count as lost.
* A network failure is a result (``ok=False``) with one of these ``error`` reasons:
  ``"cannot resolve <host>: ..."``, ``"no reply to <n> echo requests"``,
  ``"cannot send echo request: <reason>"``, ``"IPv6 is not available: <reason>"``.
  The one exception is a missing permission: :meth:`IcmpEngine.open` (hence
  :func:`engine`) raises :class:`~monitor.errors.IcmpNotPermitted` saying what to grant.
* Phases: ``resolve`` (detail: the address used), then ``echo`` (detail: sent and
  received). ``details``: ``address``, ``sent``, ``received``, ``rtts`` (one entry per
  request in send order, ``None`` when lost), ``ttl`` (of the last reply, ``None`` if the
  kernel did not say) and ``socket`` (``"raw"`` or ``"dgram"``).
* RTTs run from just before ``sendto`` to the kernel's receive timestamp
  (``SO_TIMESTAMPNS``) where the kernel gives one: a busy event loop (a dashboard repaint,
  a burst of HTTP probes) then delays when a reply is *read*, not the RTT and jitter
  reported.
* Cancelling a probe cancels its pending sends and forgets its outstanding requests.
* A name in the ``.invalid`` domain fails at once without asking a resolver (RFC 6761
  §6.4): tests use such names, and they must not leak DNS queries.

Why hand-written: icmplib (and aioping) open one socket per target. Every raw ICMP socket
receives a copy of *every* ICMP packet reaching the host, so n per-target sockets turn n
replies into n² wake-ups and parses (icmplib issue #59: 10,000 hosts took 19.9 s with
``async_multiping``; liboping PR #11 fixed the same thing in C). The engine does what
fping does: one socket per address family for all targets, and replies matched to
requests by identifier and sequence number in a dict of outstanding requests.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import heapq
import ipaddress
import itertools
import math
import os
import random
import secrets
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Annotated, Final

from pydantic import Field

from monitor.core.results import Phase, ProbeResult
from monitor.errors import IcmpNotPermitted
from monitor.inventory.types import Duration, Strict
from monitor.probes.base import ProbeContext, now
from monitor.probes.net import (
    LINUX_GENERIC,
    TIMESTAMP_SPACE,
    Address,
    arrival_time,
    describe_oserror,
    enable_receive_timestamps,
    resolve,
    set_buffer,
)
from monitor.probes.spec import ProbeSpec

__all__ = ["MAX_SIZE", "SPEC", "IcmpEngine", "IcmpSettings", "engine", "probe"]


class IcmpSettings(Strict):
    """A burst of echo requests."""

    count: Annotated[int, Field(ge=1, le=100)] = 5
    spacing: Duration = 0.020
    timeout: Duration = 1.0
    size: Annotated[int, Field(ge=0, le=1472)] = 56


MAX_SIZE: Final = 65_507 - 8
"""Largest payload (bytes after the 8-byte ICMP header) :meth:`IcmpEngine.ping` accepts."""

_ECHO_REQUEST: Final[dict[int, int]] = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY: Final[dict[int, int]] = {socket.AF_INET: 0, socket.AF_INET6: 129}

# Linux socket options the socket module does not export: the asm-generic numbers, used
# only where net.LINUX_GENERIC says they apply.
_SOL_RAW: Final = 255
_ICMP_FILTER: Final = 1
_ICMP6_FILTER: Final = 1
_IP_RECVTTL: Final = 12

# A burst of 10,000 targets answers faster than a busy loop reads; the replies wait in
# the socket's receive queue (about 1 KiB of kernel memory each on loopback).
_RCVBUF: Final = 32 << 20
_SNDBUF: Final = 4 << 20

# Key space of outstanding requests. A raw socket sends under _SLOTS identifiers of its
# own (16 x 65,536 sequence numbers = 1,048,576 keys): 10,000 targets x 5 echoes in
# flight use 5 % of it, so a key is reused only long after its request expired.
_SLOTS: Final = 16
_KEY_MASK: Final = _SLOTS * 65_536 - 1

_HEADER: Final = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_REQUEST: Final = struct.Struct("!BBHHHII")  # ... then nonce and serial: our mark
_MARK: Final = struct.Struct("!II")
_MARK_SIZE: Final = _MARK.size
_ID_SEQ: Final = struct.Struct("!HH")
_INT: Final = struct.Struct("@i")
# Ancillary items that carry the reply's TTL / hop limit: {type: level}.
_TTL_ITEMS: Final[dict[int, int]] = {
    socket.IP_TTL: socket.IPPROTO_IP,
    socket.IPV6_HOPLIMIT: socket.IPPROTO_IPV6,
}
_ANCILLARY: Final = TIMESTAMP_SPACE + socket.CMSG_SPACE(_INT.size) + 64

# Replies read per wake-up before other callbacks get a turn. Reading is cheap and a
# reply read late only waits (its RTT comes from the kernel's stamp), but a queue left
# to grow behind thousands of due sends can overflow the receive buffer: read a lot.
_RECV_BATCH: Final = 65_536
_ENOBUFS_RETRY: Final = 0.002  # no readiness event tells when ENOBUFS clears: poll


def _fold(total: int) -> int:
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


def _sum16(data: bytes) -> int:
    """Ones' complement sum of 16-bit big-endian words (RFC 1071), not yet inverted."""
    if len(data) % 2:
        data += b"\0"
    return _fold(sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)))


def _padding(length: int) -> bytes:
    # A varying pattern rather than zeros, so a compressing link cannot flatter the RTT.
    return bytes((0x10 + i) & 0xFF for i in range(length))


class _Burst:
    """One ``ping`` call: its requests, their send times and what came back."""

    __slots__ = (
        "address",
        "count",
        "deadline",
        "done",
        "finished",
        "keys",
        "received",
        "rtts",
        "send_error",
        "sent",
        "serials",
        "settled",
        "size",
        "sockaddr",
        "timeout",
        "transmitted",
        "ttl",
    )

    def __init__(
        self,
        sockaddr: tuple[str, int] | tuple[str, int, int, int],
        count: int,
        size: int,
        timeout: float,
        deadline: float,
        done: asyncio.Future[None],
    ) -> None:
        self.sockaddr = sockaddr
        self.address = sockaddr[0].partition("%")[0]
        self.count = count
        self.size = size
        self.timeout = timeout
        self.deadline = deadline
        self.done = done
        self.sent = [0.0] * count  # monotonic time just before sendto
        self.rtts: list[float | None] = [None] * count
        self.keys = [-1] * count
        self.serials = [0] * count
        self.transmitted = 0
        self.received = 0
        self.settled = 0  # requests answered, timed out late, or failed to send
        self.ttl: int | None = None
        self.send_error: str | None = None
        self.finished = False

    def settle(self) -> None:
        self.settled += 1
        if self.settled >= self.count and not self.done.done():
            self.done.set_result(None)


class _IcmpSocket:
    """The socket of one address family, shared by every target of that family.

    Matching. A raw socket picks ``_SLOTS`` random identifiers and writes them into the
    ICMP header itself; a reply's (identifier, sequence) gives its key, and a reply under
    an identifier not ours (another process's ping: raw sockets see every ICMP packet)
    is dropped on the first dict lookup. A datagram ("ping") socket cannot choose: the
    kernel overwrites the identifier with the socket's port and delivers only replies
    carrying it, so the key is the sequence number extended by the serial we put in the
    payload. Every payload of 8 bytes or more starts with (engine nonce, 32-bit serial);
    a reply must echo both, which rejects a stale reply that arrives after its key was
    reused, and a stranger's packet that happens to use one of our identifiers.

    Filtering. On a raw socket the kernel itself drops everything but echo replies
    (``ICMP_FILTER`` / ``ICMP6_FILTER``): on 127.0.0.0/8 a raw socket also receives our
    own echo *requests*, which would otherwise double the packets to read.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        family: int,
        raw: bool,
        sock: socket.socket,
    ) -> None:
        self.loop = loop
        self.family = family
        self.raw = raw
        self.sock = sock
        self.fd = sock.fileno()
        self.outstanding: dict[int, tuple[_Burst, int]] = {}
        self.nonce = secrets.randbits(32)
        self.serial = secrets.randbits(32)
        self.idents: tuple[int, ...] = (
            tuple(random.sample(range(1, 65_536), _SLOTS)) if raw else (0,) * _SLOTS
        )
        self.slot_of = {ident: slot for slot, ident in enumerate(self.idents)}
        self.request_type = _ECHO_REQUEST[family]
        self.reply_type = _ECHO_REPLY[family]
        # Only raw IPv4 needs our checksum: the kernel fills it in for ICMPv6 and for
        # datagram sockets. It is summed incrementally from a per-size template.
        self.checksum_by_us = raw and family == socket.AF_INET
        self.header_sum = _fold(
            (self.request_type << 8) + (self.nonce >> 16) + (self.nonce & 0xFFFF)
        )
        self.paddings: dict[int, tuple[bytes, int]] = {}
        self.buffer = bytearray(65_536)
        self.buffers = [self.buffer]
        self.backlog: collections.deque[tuple[_Burst, int, bytes]] = collections.deque()
        self.writer_armed = False
        self.retry: asyncio.TimerHandle | None = None
        self.lanes: dict[float, collections.deque[tuple[float, _Burst, int]]] = {}
        self.expiries: list[tuple[float, int, _Burst]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0.0
        self.closed = False
        loop.add_reader(self.fd, self._on_readable)

    # -- sending ---------------------------------------------------------------------

    def start(self, burst: _Burst, spacing: float) -> None:
        """Send the first request now, schedule the others ``spacing`` apart, and the end."""
        self.send(burst, 0)
        first = self.loop.time()
        lanes = self.lanes
        for index in range(1, burst.count):
            offset = index * spacing
            lane = lanes.get(offset)
            if lane is None:
                lane = lanes[offset] = collections.deque()
            lane.append((first + offset, burst, index))
        heapq.heappush(self.expiries, (burst.deadline, id(burst), burst))
        due = min(first + spacing if burst.count > 1 else math.inf, burst.deadline)
        if self.timer is None or due < self.timer_due:
            self._rearm(due)

    # The schedule is one timer per socket, not a TimerHandle per echo: 10,000 targets x
    # 5 echoes made asyncio's heap of handles (ordered by a Python-level __lt__) the
    # engine's largest cost. Sends wait in lanes, one FIFO per offset from the burst's
    # first send (index x spacing): bursts start in time order, so every lane is sorted
    # by due time and costs O(1) per echo. Deadlines, one per burst, are a heap because
    # name resolution makes bursts start out of their deadline order.

    def _rearm(self, due: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_due = due
        self.timer = self.loop.call_at(due, self._run_schedule)

    def _run_schedule(self) -> None:
        self.timer = None
        limit = self.loop.time() + 1e-6  # asyncio may run a timer a hair before its time
        lanes = self.lanes
        for offset, lane in list(lanes.items()):
            while lane and lane[0][0] <= limit:
                _due, burst, index = lane.popleft()
                if not burst.finished:
                    self.send(burst, index)
            if not lane:
                del lanes[offset]
        expiries = self.expiries
        if expiries and expiries[0][0] <= limit:
            # Replies the kernel already holds arrived in time: read them before the
            # bursts that end now call the rest lost.
            self._on_readable()
            while expiries and expiries[0][0] <= limit:
                burst = heapq.heappop(expiries)[2]
                if not burst.done.done():
                    burst.done.set_result(None)
        if self.closed:
            return
        due = min((lane[0][0] for lane in lanes.values()), default=math.inf)
        if expiries:
            due = min(due, expiries[0][0])
        if due < math.inf:
            self._rearm(due)

    def send(self, burst: _Burst, index: int) -> None:
        if burst.finished or self.closed:
            return
        serial, key = self._allocate(burst.size)
        burst.keys[index] = key
        burst.serials[index] = serial
        self.outstanding[key] = (burst, index)
        packet = self._packet(burst.size, serial)
        if self.backlog:  # keep send order: queue behind what waits for buffer space
            self.backlog.append((burst, index, packet))
            return
        # The common case inline (this runs once per echo request); _transmit has the rest.
        burst.sent[index] = time.monotonic()
        try:
            self.sock.sendto(packet, burst.sockaddr)
        except OSError as exc:
            if not self._send_failed(burst, index, exc):
                self.backlog.append((burst, index, packet))
            return
        burst.transmitted += 1

    def _allocate(self, size: int) -> tuple[int, int]:
        outstanding = self.outstanding
        header_only = not self.raw and size < _MARK_SIZE
        for _ in range(_KEY_MASK + 1):
            self.serial = serial = (self.serial + 1) & 0xFFFF_FFFF
            key = serial & 0xFFFF if header_only else serial & _KEY_MASK
            if key not in outstanding:
                return serial, key
        raise RuntimeError("no free ICMP sequence number: over a million echo requests in flight")

    def _packet(self, size: int, serial: int) -> bytes:
        seq = serial & 0xFFFF
        ident = self.idents[(serial >> 16) & (_SLOTS - 1)]
        if size >= _MARK_SIZE:
            padding = self.paddings.get(size)
            if padding is None:
                tail = _padding(size - _MARK_SIZE)
                padding = self.paddings[size] = (tail, _sum16(tail))
            checksum = 0
            if self.checksum_by_us:
                total = self.header_sum + ident + seq + (serial >> 16) + (serial & 0xFFFF)
                checksum = ~_fold(total + padding[1]) & 0xFFFF
            return (
                _REQUEST.pack(self.request_type, 0, checksum, ident, seq, self.nonce, serial)
                + padding[0]
            )
        packet = _HEADER.pack(self.request_type, 0, 0, ident, seq) + _padding(size)
        if self.checksum_by_us:
            checksum = ~_sum16(packet) & 0xFFFF
            packet = packet[:2] + checksum.to_bytes(2, "big") + packet[4:]
        return packet

    def _transmit(self, burst: _Burst, index: int, packet: bytes) -> bool:
        """Try to send; False means "no buffer space now, keep it queued"."""
        burst.sent[index] = time.monotonic()
        try:
            self.sock.sendto(packet, burst.sockaddr)
        except OSError as exc:
            return self._send_failed(burst, index, exc)
        burst.transmitted += 1
        return True

    def _send_failed(self, burst: _Burst, index: int, exc: OSError) -> bool:
        """Wait for buffer space (False: keep the request queued) or fail the request."""
        if isinstance(exc, BlockingIOError | InterruptedError):
            self._arm(writable=True)
            return False
        if exc.errno == errno.ENOBUFS:
            self._arm(writable=False)
            return False
        self._fail(burst, index, describe_oserror(exc))
        return True

    def _arm(self, *, writable: bool) -> None:
        if writable:
            if not self.writer_armed:
                self.writer_armed = True
                self.loop.add_writer(self.fd, self._flush)
        elif self.retry is None:
            self.retry = self.loop.call_later(_ENOBUFS_RETRY, self._flush)

    def _disarm(self) -> None:
        if self.writer_armed:
            self.writer_armed = False
            self.loop.remove_writer(self.fd)
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None

    def _flush(self) -> None:
        self._disarm()
        backlog = self.backlog
        now_ = self.loop.time()
        while backlog:
            burst, index, packet = backlog[0]
            if burst.finished:
                backlog.popleft()
            elif now_ >= burst.deadline:
                backlog.popleft()
                self._fail(burst, index, "send buffer full")
            elif self._transmit(burst, index, packet):
                backlog.popleft()
            else:
                return  # re-armed by _transmit

    def _fail(self, burst: _Burst, index: int, reason: str) -> None:
        entry = self.outstanding.get(burst.keys[index])
        if entry is not None and entry[0] is burst:
            del self.outstanding[burst.keys[index]]
        burst.send_error = reason
        burst.settle()

    # -- receiving -------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self.sock
        buffer = self.buffer
        buffers = self.buffers
        outstanding = self.outstanding
        slot_of = self.slot_of
        raw = self.raw
        ip_header = raw and self.family == socket.AF_INET  # raw IPv4 reads the IP header
        reply_type = self.reply_type
        nonce = self.nonce
        monotonic = time.monotonic
        for _ in range(_RECV_BATCH):
            try:
                size, ancillary, _flags, source = sock.recvmsg_into(buffers, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # A datagram socket reports an ICMP error (e.g. host unreachable) on the
                # next receive. It names no request, so that request simply times out.
                continue
            received_at = monotonic()
            offset = 0
            ttl: int | None = None
            if ip_header:
                offset = (buffer[0] & 0x0F) << 2
                ttl = buffer[8]
            if size < offset + 8 or buffer[offset] != reply_type:
                continue
            ident, seq = _ID_SEQ.unpack_from(buffer, offset + 4)
            marked = size >= offset + 8 + _MARK_SIZE
            if raw:
                slot = slot_of.get(ident)
                if slot is None:
                    continue  # another process's ping
                key = slot << 16 | seq
            elif marked:
                their_nonce, serial = _MARK.unpack_from(buffer, offset + 8)
                key = serial & _KEY_MASK if their_nonce == nonce else seq
            else:
                key = seq
            entry = outstanding.get(key)
            if entry is None:
                continue
            burst, index = entry
            if source[0] != burst.address and source[0].partition("%")[0] != burst.address:
                continue
            if burst.size >= _MARK_SIZE and (
                not marked or _MARK.unpack_from(buffer, offset + 8) != (nonce, burst.serials[index])
            ):
                continue
            del outstanding[key]
            arrived = arrival_time(ancillary, received_at)  # the kernel's stamp, if any
            for level, kind, data in ancillary:
                if _TTL_ITEMS.get(kind) == level and len(data) >= 4:
                    ttl = _INT.unpack_from(data)[0]
            rtt = arrived - burst.sent[index]
            if rtt < 0.0:  # a wall-clock step: fall back to when we read the reply
                rtt = received_at - burst.sent[index]
            if ttl is not None:
                burst.ttl = ttl
            if rtt <= burst.timeout:
                burst.rtts[index] = rtt
                burst.received += 1
            burst.settle()

    # -- lifetime --------------------------------------------------------------------

    def forget(self, burst: _Burst) -> None:
        """Cancel the burst's pending sends and drop its outstanding requests."""
        burst.finished = True  # its schedule entries are skipped when they come due
        if self.backlog:
            kept = collections.deque(e for e in self.backlog if e[0] is not burst)
            if len(kept) < len(self.backlog):  # some never left: say why they are lost
                burst.send_error = burst.send_error or "send buffer full"
                self.backlog = kept
                if not kept:
                    self._disarm()
        outstanding = self.outstanding
        for key in burst.keys:
            if key >= 0:
                entry = outstanding.get(key)
                if entry is not None and entry[0] is burst:
                    del outstanding[key]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        self._disarm()
        if self.timer is not None:
            self.timer.cancel()
        # Every burst still running has its deadline in the heap.
        for _due, _id, burst in self.expiries:
            if not burst.done.done():
                burst.send_error = burst.send_error or "ICMP engine closed"
                burst.done.set_result(None)
        self.lanes.clear()
        self.expiries.clear()
        self.outstanding.clear()
        self.backlog.clear()
        self.sock.close()


def _open_socket(family: int, raw: bool) -> socket.socket:
    """A non-blocking ICMP socket with big buffers, echo-reply filter, TTL and timestamps."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    sock = socket.socket(family, socket.SOCK_RAW if raw else socket.SOCK_DGRAM, proto)
    try:
        sock.setblocking(False)
        set_buffer(sock, socket.SO_RCVBUF, _RCVBUF)
        set_buffer(sock, socket.SO_SNDBUF, _SNDBUF)
        if raw and family == socket.AF_INET:
            # struct icmp_filter: a bit set drops that ICMP type. Keep echo replies only.
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("@I", 0xFFFF_FFFF ^ 1 << 0))
        elif raw:
            # struct icmp6_filter: 256 bits, a bit set blocks that type. Pass 129 only.
            words = [0xFFFF_FFFF] * 8
            words[129 >> 5] ^= 1 << (129 & 31)
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("@8I", *words))
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        elif not raw and LINUX_GENERIC:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)  # raw IPv4 reads the IP header
        # Without stamps (or where the kernel refuses) RTTs end when the loop reads the
        # reply: arrival_time falls back to the read time.
        enable_receive_timestamps(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def _permission_message(modes: tuple[bool, ...]) -> str:
    python = os.path.realpath(sys.executable)
    grant_raw = f"grant raw sockets with `setcap cap_net_raw+ep {python}` (or run as root)"
    try:
        current = " ".join(Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except OSError:
        current = "unknown"
    grant_dgram = (
        'allow unprivileged ICMP with `sysctl -w net.ipv4.ping_group_range="0 2147483647"`'
        f' (now "{current}", your group is {os.getgid()})'
    )
    if modes == (True,):
        return f"raw ICMP sockets are not permitted: {grant_raw}"
    if modes == (False,):
        return f"unprivileged ICMP sockets are not permitted: {grant_dgram}"
    return f"ICMP is not permitted: {grant_raw}, or {grant_dgram}"


class _Unresolved(Exception):
    pass


class IcmpEngine:
    """Sends echo bursts to any number of targets over one socket per address family.

    Open it with ``await IcmpEngine.open()`` inside the event loop it will serve (it
    registers its sockets with that loop) and close it with ``await engine.close()`` or
    ``async with``. ``privileged=True`` insists on a raw socket (root or
    ``CAP_NET_RAW``), ``False`` on an unprivileged datagram ICMP socket (allowed by
    ``net.ipv4.ping_group_range``), ``None`` tries raw first, then datagram. The IPv6
    socket is opened, in the same mode, on the first IPv6 target.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, raw: bool) -> None:
        self._loop = loop
        self._raw = raw
        self._sockets: dict[int, _IcmpSocket] = {}

    @classmethod
    async def open(cls, privileged: bool | None = None) -> IcmpEngine:
        """An engine with its IPv4 socket open; raises IcmpNotPermitted naming what to grant."""
        loop = asyncio.get_running_loop()
        modes: tuple[bool, ...] = (True, False) if privileged is None else (privileged,)
        for raw in modes:
            try:
                sock = _open_socket(socket.AF_INET, raw)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
                    raise
                continue
            engine = cls(loop, raw)
            engine._sockets[socket.AF_INET] = _IcmpSocket(loop, socket.AF_INET, raw, sock)
            return engine
        raise IcmpNotPermitted(_permission_message(modes))

    @property
    def privileged(self) -> bool:
        """True when the engine uses raw sockets, False for datagram ("ping") sockets."""
        return self._raw

    @property
    def in_flight(self) -> int:
        """Echo requests sent (or queued) and still waiting for their reply."""
        return sum(len(s.outstanding) for s in self._sockets.values())

    async def close(self) -> None:
        """Close the sockets; bursts still running end at once with what they have."""
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    async def __aenter__(self) -> IcmpEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _socket(self, family: int) -> _IcmpSocket:
        sock = self._sockets.get(family)
        if sock is None:
            if socket.AF_INET not in self._sockets:
                raise RuntimeError("the ICMP engine is closed")
            opened = _open_socket(family, self._raw)
            sock = self._sockets[family] = _IcmpSocket(self._loop, family, self._raw, opened)
        return sock

    async def ping(
        self,
        host: str,
        *,
        count: int = 5,
        spacing: float = 0.020,
        timeout: float = 1.0,  # noqa: ASYNC109 (each echo's reply timeout, not a call bound)
        size: int = 56,
    ) -> ProbeResult:
        """Send ``count`` echo requests of ``size`` payload bytes to ``host``; see the module doc."""
        if count < 1 or spacing < 0 or timeout <= 0 or not 0 <= size <= MAX_SIZE:
            raise ValueError(f"bad ICMP burst: {count=} {spacing=} {timeout=} {size=}")
        loop = self._loop
        at = now()
        started = loop.time()
        deadline = started + (count - 1) * spacing + timeout

        def failed(phases: list[Phase], error: str) -> ProbeResult:
            return ProbeResult(
                probe="icmp",
                target=host,
                ok=False,
                at=at,
                duration=loop.time() - started,
                loss=1.0,
                error=error,
                phases=tuple(phases),
                details={"sent": 0, "received": 0},
            )

        try:
            # An IPv4 literal (the usual inventory entry) needs no coroutine, no timer.
            family, sockaddr = _ipv4_literal(host) or await _resolve(host, deadline)
        except _Unresolved as exc:
            reason = f"cannot resolve {host}: {exc}"
            return failed([Phase("resolve", False, loop.time() - started, reason)], reason)
        resolved = loop.time()
        phases = [Phase("resolve", True, resolved - started, sockaddr[0])]
        try:
            sock = self._socket(family)
        except OSError as exc:
            reason = f"IPv6 is not available: {describe_oserror(exc)}"
            return failed([*phases, Phase("echo", False, 0.0, reason)], reason)

        burst = _Burst(sockaddr, count, size, timeout, deadline, loop.create_future())
        try:
            sock.start(burst, spacing)
            await burst.done  # set by the last reply, or by the socket's schedule at the deadline
        finally:
            sock.forget(burst)

        rtts = [r for r in burst.rtts if r is not None]
        received = len(rtts)
        error: str | None = None
        if not rtts:
            if burst.transmitted == 0 and burst.send_error is not None:
                error = f"cannot send echo request: {burst.send_error}"
            else:
                error = f"no reply to {count} echo request{'s' if count != 1 else ''}"
        jitter = (
            sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (received - 1)
            if received >= 2
            else None
        )
        detail = f"{burst.transmitted} sent, {received} received"
        if burst.send_error is not None:
            detail += f" ({burst.send_error})"
        phases.append(Phase("echo", received > 0, loop.time() - resolved, detail))
        return ProbeResult(
            probe="icmp",
            target=host,
            ok=received > 0,
            at=at,
            duration=loop.time() - started,
            rtt=sum(rtts) / received if rtts else None,
            rtt_min=min(rtts) if rtts else None,
            rtt_max=max(rtts) if rtts else None,
            jitter=jitter,
            loss=(count - received) / count,
            error=error,
            phases=tuple(phases),
            details={
                "address": burst.address,
                "sent": burst.transmitted,
                "received": received,
                "rtts": tuple(burst.rtts),
                "ttl": burst.ttl,
                "socket": "raw" if self._raw else "dgram",
            },
        )


def _ipv4_literal(host: str) -> Address | None:
    try:
        packed = socket.inet_pton(socket.AF_INET, host)  # dotted quad only, as the kernel prints
    except OSError:
        return None
    return socket.AF_INET, (socket.inet_ntop(socket.AF_INET, packed), 0)


async def _resolve(host: str, deadline: float) -> Address:
    """The first address of ``host`` (resolver order) within the deadline."""
    try:
        async with asyncio.timeout_at(deadline):
            addresses = await resolve(host, 0, socket.SOCK_DGRAM)
    except TimeoutError:
        raise _Unresolved("timed out") from None
    except socket.gaierror as exc:
        raise _Unresolved(str(exc.strerror or exc).lower()) from None
    except UnicodeError:  # the IDNA codec rejects empty or over-long labels
        raise _Unresolved("not a valid host name") from None
    family, sockaddr = addresses[0]
    if family == socket.AF_INET6:
        mapped = ipaddress.IPv6Address(sockaddr[0].partition("%")[0]).ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d is an IPv4 host; ICMPv6 cannot reach it
            return socket.AF_INET, (str(mapped), 0)
    return family, sockaddr


async def engine(ctx: ProbeContext) -> IcmpEngine:
    """The context's ICMP engine, opened on first use and closed with the context.

    Raises :class:`~monitor.errors.IcmpNotPermitted`, saying what to grant, when this
    process may open no ICMP socket; a later call tries again.
    """
    return await ctx.shared("icmp", IcmpEngine.open)


async def probe(target: str, settings: IcmpSettings, ctx: ProbeContext) -> ProbeResult:
    """Ping ``target`` with a burst as ``settings`` says; see the module docstring."""
    pinger = await engine(ctx)
    return await pinger.ping(
        target,
        count=settings.count,
        spacing=settings.spacing,
        timeout=settings.timeout,
        size=settings.size,
    )


def deadline(settings: IcmpSettings) -> float:
    """The probe's one deadline: ``(count - 1) * spacing + timeout``."""
    return (settings.count - 1) * settings.spacing + settings.timeout


SPEC = ProbeSpec(
    name="icmp",
    settings=IcmpSettings,
    probe=probe,
    deadline=deadline,
    measures=("rtt", "jitter", "loss"),
    can_reach=True,
    takes_port=False,
)
