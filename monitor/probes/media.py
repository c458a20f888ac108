"""Media path probe: a paced RTP stream to an echo reflector, measured like a call would feel it.

``probe(target, settings, ctx)`` sends ``settings.packets`` real RTP packets
(RFC 3550: V=2, PT 0 = PCMU, random SSRC, random first sequence number and
timestamp, timestamp advancing at the 8 kHz G.711 clock) of ``settings.size``
bytes, one every ``settings.pacing`` seconds, from one connected UDP socket to
``target:settings.port``, where a reflector sends every datagram back unchanged.

Each payload starts with a 16-byte probe tag: an 8-byte random nonce of this
probe run and the send time (wall-clock nanoseconds, the clock of the kernel's
receive stamps). An echo counts only if
its SSRC and nonce are this run's and its sequence number is one we sent, so
stray datagrams (another probe's late echoes, garbage) are ignored and counted
in ``details["stray"]``; datagrams from other addresses never reach a connected
socket. RTT is arrival time minus the carried send time, both on the wall clock.
The arrival time is the kernel's receive timestamp (``SO_TIMESTAMPNS``, as for
ICMP and SIP), read with ``recvmsg`` on a plain non-blocking socket: an event
loop busy elsewhere delays when an echo is *read*, not its RTT or the jitter.
(A step of the wall clock during the two seconds of a run would distort that
run; NTP slews instead of stepping once a clock is in sync.)
The rest of the payload is PCMU silence (0xFF), so the packet looks like G.711.

What a caller may rely on:

* Pacing follows an absolute schedule (``start + i * pacing``): timer lateness
  is caught up, never faster than twice the packet rate, so it does not
  accumulate. A stall longer than one interval and 50 ms re-anchors the
  schedule instead of catching up. Consecutive packets are never closer than
  ``pacing / 2``: there is no burst. (Jitter is computed from the actual send
  times, so catching up does not distort it.)
* No packet is started once less than half of ``settings.timeout`` remains
  before the deadline, so every packet sent has time to come back; ``sent``
  may then be below ``packets`` (only after stalls), and loss counts only
  packets sent.
* ``rtt``, ``rtt_min``, ``rtt_max``: over the first copy of every echoed packet.
* ``jitter``: RFC 3550 interarrival jitter (§6.4.1, algorithm of §A.8),
  ``J += (|D(i-1, i)| - J) / 16`` in seconds, over the echoed stream in arrival
  order, with the carried send times standing for RTP timestamps. It therefore
  measures the variation of the round trip, as the receiving end of the echo sees it.
  Duplicates are left out (they are copies, not new media).
* ``loss``: ratio of sent packets with no echo by the receive deadline (last
  send + ``settings.timeout``), by the kernel's receive time: an echo that arrived
  in time counts even if a busy loop reads it later. ``details``: ``sent``, ``received``, ``lost``,
  ``reordered`` (echoes arriving with a sequence number below the highest seen),
  ``duplicates``, ``stray``, ``unreachable`` (ICMP port-unreachable reports),
  ``r_factor``, ``packets``, ``size``.
* ``mos``: :func:`monitor.probes.emodel.mos` with latency = RTT / 2 (a one-way
  estimate that assumes a symmetric path), jitter and loss; ``None`` when
  nothing came back.
* ``ok`` is True when at least one echo came back; otherwise ``error`` is
  ``"no echo from host:port"``, or ``"port unreachable: host:port"`` when the
  kernel reported ICMP port unreachable (three reports with no echo end the
  probe at once: a dead port fails in tens of milliseconds, while one stray
  ICMP error does not end a working stream).
* Phases: ``send`` (first to last packet sent) and ``receive`` (from the last
  send until every echo arrived or the deadline).
* The whole probe is bounded by ``(packets - 1) * pacing + timeout``; its
  socket is closed on every path, cancellation included.

Written by hand because no asyncio library sends paced RTP with a per-run tag;
the measurement is a few dozen lines of arithmetic on arrival times.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from monitor.core.results import Phase, ProbeResult
from monitor.inventory.types import Duration, Port, Strict
from monitor.probes import emodel
from monitor.probes.base import ProbeContext, aligned, now
from monitor.probes.net import TIMESTAMP_SPACE, enable_receive_timestamps, kernel_stamp_ns, resolve
from monitor.probes.spec import ProbeSpec

__all__ = ["MIN_SIZE", "PROBE_NAME", "SPEC", "TAG_SIZE", "MediaSettings", "probe"]

PROBE_NAME = "media"


class MediaSettings(Strict):
    """A paced stream of RTP-sized UDP packets to an echo reflector."""

    port: Port = 7078
    packets: Annotated[int, Field(ge=1, le=10_000)] = 50
    # 12-byte RTP header + 16-byte probe tag (nonce, send time) is the smallest packet.
    size: Annotated[int, Field(ge=28, le=1472)] = 172
    pacing: Duration = 0.020
    every: Duration = 30.0
    timeout: Duration = 1.0


# RTP fixed header (RFC 3550 §5.1): V/P/X/CC, M/PT, sequence, timestamp, SSRC.
_RTP = struct.Struct("!BBHII")
# Our probe tag at the start of the payload: run nonce, send time (wall-clock ns).
_TAG = struct.Struct("!8sQ")
TAG_SIZE = _TAG.size
MIN_SIZE = _RTP.size + _TAG.size
_RTP_V2 = 0x80
_PT_PCMU = 0
_PCMU_SILENCE = 0xFF
_CLOCK_HZ = 8000
# ICMP port-unreachable reports, with no echo at all, that prove the port dead.
_UNREACHABLE_LIMIT = 3
# Lateness (seconds) beyond which the schedule is re-anchored rather than caught up.
_STALL = 0.050
_MAX_DATAGRAM = 2048  # larger than any echo of ours (size <= 1472): the rest is stray
_ANCILLARY = TIMESTAMP_SPACE + 64


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class _Stats:
    """What the receiver has seen so far of this run's echoes."""

    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    stray: int = 0
    unreachable: int = 0
    highest: int = -1
    rtt_sum_ns: int = 0
    rtt_min_ns: int | None = None
    rtt_max_ns: int | None = None
    jitter_ns: float = 0.0
    last_transit_ns: int | None = None
    other_error: str | None = None
    seen: bytearray = field(default_factory=bytearray)


class _EchoReceiver:
    """Matches echoes to this run and keeps the running statistics."""

    def __init__(self, *, ssrc: int, seq0: int, nonce: bytes, packets: int) -> None:
        self.ssrc = ssrc
        self.seq0 = seq0
        self.nonce = nonce
        self.sent = 0
        self.sending_done = False
        self.stats = _Stats(seen=bytearray(packets))
        #: echoes the kernel received after this (wall-clock ns) are too late to count
        self.until_ns = 2**63
        # Set when waiting longer cannot change the outcome: all echoed, or port dead.
        self.finished = asyncio.Event()

    def on_readable(self, sock: socket.socket) -> None:
        """Read every datagram waiting on ``sock`` (the loop's reader callback)."""
        while True:
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError as exc:  # ICMP port unreachable, reported on read
                self.error_received(exc)
                continue
            except OSError as exc:
                self.error_received(exc)
                return
            stamp = kernel_stamp_ns(ancillary)
            self.datagram_received(data, time.time_ns() if stamp is None else stamp)

    def datagram_received(self, data: bytes, arrived: int) -> None:
        """One datagram, received at ``arrived`` (wall-clock nanoseconds)."""
        st = self.stats
        if len(data) < MIN_SIZE:
            st.stray += 1
            return
        first, pt, seq, _ts, ssrc = _RTP.unpack_from(data)
        nonce, sent_ns = _TAG.unpack_from(data, _RTP.size)
        index = (seq - self.seq0) & 0xFFFF
        if (
            first & 0xC0 != _RTP_V2
            or pt & 0x7F != _PT_PCMU
            or ssrc != self.ssrc
            or nonce != self.nonce
            or index >= self.sent
            or sent_ns > arrived
            or arrived > self.until_ns
        ):
            st.stray += 1
            return
        if st.seen[index]:
            st.duplicates += 1
            return
        st.seen[index] = 1
        st.received += 1
        if index < st.highest:
            st.reordered += 1
        else:
            st.highest = index
        transit = arrived - sent_ns  # the round trip: both ends use this process's clock
        st.rtt_sum_ns += transit
        st.rtt_min_ns = transit if st.rtt_min_ns is None else min(st.rtt_min_ns, transit)
        st.rtt_max_ns = transit if st.rtt_max_ns is None else max(st.rtt_max_ns, transit)
        # RFC 3550 A.8: D = (R_i - R_j) - (S_i - S_j) = transit_i - transit_j.
        if st.last_transit_ns is not None:
            st.jitter_ns += (abs(transit - st.last_transit_ns) - st.jitter_ns) / 16.0
        st.last_transit_ns = transit
        if self.sending_done and st.received >= self.sent:
            self.finished.set()

    def error_received(self, exc: Exception) -> None:
        st = self.stats
        if isinstance(exc, ConnectionRefusedError):
            st.unreachable += 1
            if st.unreachable >= _UNREACHABLE_LIMIT and st.received == 0:
                self.finished.set()
        else:
            st.other_error = str(exc) or type(exc).__name__


def _packet(i: int, *, rx: _EchoReceiver, ts0: int, step: int, filler: bytes) -> bytes:
    header = _RTP.pack(
        _RTP_V2,
        _PT_PCMU,
        (rx.seq0 + i) & 0xFFFF,
        (ts0 + i * step) & 0xFFFFFFFF,
        rx.ssrc,
    )
    return header + _TAG.pack(rx.nonce, time.time_ns()) + filler


async def probe(target: str, settings: MediaSettings, ctx: ProbeContext) -> ProbeResult:
    """Stream RTP to the reflector at ``target:settings.port`` and measure the echoes."""
    del ctx  # the media probe needs no shared resource: one socket per run is the measurement
    if settings.size < MIN_SIZE:
        raise ValueError(f"media packet size must be at least {MIN_SIZE} bytes")
    loop = asyncio.get_running_loop()
    at = now()
    started = loop.time()
    deadline = started + (settings.packets - 1) * settings.pacing + settings.timeout
    where = _endpoint(target, settings.port)
    rx = _EchoReceiver(
        ssrc=secrets.randbits(32),
        seq0=secrets.randbits(16),
        nonce=secrets.token_bytes(8),
        packets=settings.packets,
    )

    def failed(reason: str) -> ProbeResult:
        return ProbeResult(
            probe=PROBE_NAME,
            target=target,
            ok=False,
            at=at,
            duration=loop.time() - started,
            loss=None,
            error=reason,
            phases=(Phase("send", False, None, reason),),
            details={"packets": settings.packets, "size": settings.size, "sent": 0},
        )

    sock: socket.socket | None = None
    reading = False
    try:
        try:
            async with asyncio.timeout_at(deadline):
                family, sockaddr = (await resolve(target, settings.port, socket.SOCK_DGRAM))[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            enable_receive_timestamps(sock)
            # connect() on a datagram socket sends nothing: it picks the route and makes
            # the kernel drop datagrams from other addresses and report ICMP errors
            sock.connect(sockaddr)
            loop.add_reader(sock.fileno(), rx.on_readable, sock)
            reading = True
        except TimeoutError:
            return failed(f"timeout resolving {target}")
        except socket.gaierror as exc:
            return failed(f"cannot resolve {target}: {exc.strerror or exc}")
        except OSError as exc:
            return failed(f"cannot open socket to {where}: {exc.strerror or exc}")

        ts0 = secrets.randbits(32)
        step = max(1, round(settings.pacing * _CLOCK_HZ))
        filler = bytes([_PCMU_SILENCE]) * (settings.size - MIN_SIZE)
        # Never start a packet that could not get half its timeout to come back.
        send_until = deadline - settings.timeout / 2
        first_send: float | None = None
        last_send = -math.inf
        # Scheduler hiccups of a few ms on a busy host are caught up; longer gaps are stalls.
        stall = max(settings.pacing, _STALL)
        # on the pacing grid, so concurrent streams send in the same loop wake-up
        anchor = aligned(loop.time(), settings.pacing)
        for i in range(settings.packets):
            due = anchor + i * settings.pacing
            # Catch up on timer lateness, but never faster than twice the packet rate.
            wait = max(due, last_send + settings.pacing / 2) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            current = loop.time()
            if current - due > stall:
                # Stalled (busy loop, suspended VM): shift the rest of the schedule instead of
                # catching up, which would double the packet rate for as long as the stall was.
                anchor += current - due
            if rx.finished.is_set() or current >= send_until:
                break
            rx.sent = i + 1
            try:
                sock.send(_packet(i, rx=rx, ts0=ts0, step=step, filler=filler))
            except (BlockingIOError, InterruptedError):
                pass  # the send buffer is full: that packet is lost, as on a congested host
            except ConnectionRefusedError as exc:  # an ICMP error from an earlier packet
                rx.error_received(exc)
            except OSError as exc:
                rx.error_received(exc)
            last_send = loop.time()
            if first_send is None:
                first_send = last_send
        rx.sending_done = True
        if rx.stats.received >= rx.sent:
            rx.finished.set()
        if first_send is None:  # nothing sent (deadline already gone): time the phases from now
            first_send = last_send = loop.time()
        receive_deadline = min(last_send + settings.timeout, deadline)
        rx.until_ns = time.time_ns() + int((receive_deadline - loop.time()) * 1e9)
        try:
            async with asyncio.timeout_at(receive_deadline):
                await rx.finished.wait()
        except TimeoutError:
            # the deadline is the normal end of a lossy run; echoes that the kernel received
            # in time but the loop had not read yet (a busy loop) still count
            rx.on_readable(sock)
        ended = loop.time()
    finally:
        if sock is not None:
            if reading:
                loop.remove_reader(sock.fileno())
            sock.close()

    return _result(
        target=target,
        settings=settings,
        rx=rx,
        at=at,
        duration=ended - started,
        send_seconds=last_send - first_send,
        receive_seconds=ended - last_send,
        where=where,
    )


def _result(
    *,
    target: str,
    settings: MediaSettings,
    rx: _EchoReceiver,
    at: float,
    duration: float,
    send_seconds: float,
    receive_seconds: float,
    where: str,
) -> ProbeResult:
    st = rx.stats
    sent = rx.sent
    lost = sent - st.received
    loss = lost / sent if sent else 1.0
    dead = st.received == 0 and st.unreachable >= _UNREACHABLE_LIMIT
    details: dict[str, object] = {
        "sent": sent,
        "received": st.received,
        "lost": lost,
        "reordered": st.reordered,
        "duplicates": st.duplicates,
        "stray": st.stray,
        "unreachable": st.unreachable,
        "r_factor": None,
        "packets": settings.packets,
        "size": settings.size,
    }
    send_detail = f"{sent}/{settings.packets} packets"
    if dead:
        send_detail += " (stopped: port unreachable)"
    phases = (
        Phase("send", sent == settings.packets, send_seconds, send_detail),
        Phase("receive", st.received > 0, receive_seconds, f"{st.received}/{sent} echoed"),
    )
    if st.received == 0:
        if st.unreachable:
            error = f"port unreachable: {where}"
        elif st.other_error:
            error = f"no echo from {where} ({st.other_error})"
        else:
            error = f"no echo from {where}"
        return ProbeResult(
            probe=PROBE_NAME,
            target=target,
            ok=False,
            at=at,
            duration=duration,
            loss=loss,
            error=error,
            phases=phases,
            details=details,
        )

    assert st.rtt_min_ns is not None and st.rtt_max_ns is not None
    rtt = st.rtt_sum_ns / st.received / 1e9
    jitter = st.jitter_ns / 1e9
    r = emodel.r_factor(rtt * 1000.0 / 2.0, jitter * 1000.0, loss * 100.0)
    details["r_factor"] = round(r, 2)
    return ProbeResult(
        probe=PROBE_NAME,
        target=target,
        ok=True,
        at=at,
        duration=duration,
        rtt=rtt,
        rtt_min=st.rtt_min_ns / 1e9,
        rtt_max=st.rtt_max_ns / 1e9,
        jitter=jitter,
        loss=loss,
        mos=emodel.mos_from_r(r),
        phases=phases,
        details=details,
    )


def deadline(settings: MediaSettings) -> float:
    """The probe's one deadline: ``(packets - 1) * pacing + timeout``."""
    return (settings.packets - 1) * settings.pacing + settings.timeout


def period(settings: MediaSettings) -> float:
    """A stream is a call's worth of packets: it runs every ``settings.every``, not every cycle."""
    return settings.every


SPEC = ProbeSpec(
    name=PROBE_NAME,
    settings=MediaSettings,
    probe=probe,
    deadline=deadline,
    measures=("rtt", "jitter", "loss", "mos"),
    period=period,
)
