"""The media probe against a real UDP echo reflector on loopback, clean and impaired.

The reflector lives in this file: it echoes every datagram back unchanged and
can add user-space impairment (delay, random jitter, loss, duplication,
reordering) with ``loop.call_later``, seeded so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import pytest

from monitor.core.results import ProbeResult
from monitor.inventory.model import MediaSettings
from monitor.probes import media
from monitor.probes.base import ProbeContext
from tests.helpers import free_port

RTP = struct.Struct("!BBHII")
TAG = struct.Struct("!8sQ")


@dataclass(frozen=True)
class Impairment:
    """What the reflector does to the echoes (times in seconds)."""

    delay: float = 0.0
    jitter: float = 0.0  # uniform in [-jitter, +jitter], per packet
    loss: float = 0.0
    duplicate_every: int = 0  # echo every n-th datagram twice, back to back
    reorder_every: int = 0  # hold back every n-th datagram by reorder_hold
    reorder_hold: float = 0.2
    stray: bool = False  # also send garbage, forged-nonce copies and copies from another port
    seed: int = 1


class Reflector(asyncio.DatagramProtocol):
    """A UDP echo reflector with optional impairment."""

    def __init__(self, imp: Impairment) -> None:
        self.imp = imp
        self.rng = random.Random(imp.seed)
        self.transport: asyncio.DatagramTransport | None = None
        self.other: socket.socket | None = None
        self.received: list[bytes] = []
        self.handles: list[asyncio.TimerHandle] = []

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        index = len(self.received)
        self.received.append(data)
        imp = self.imp
        if imp.stray:
            forged = bytearray(data)
            forged[RTP.size] ^= 0xFF  # flip the first nonce byte
            self.transport.sendto(b"not rtp", addr)
            self.transport.sendto(bytes(forged), addr)
            if self.other is None:
                self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # Same bytes from another port: a connected socket must never see it.
            self.other.sendto(data, addr)
        if imp.loss and self.rng.random() < imp.loss:
            return
        delay = imp.delay + (self.rng.uniform(-imp.jitter, imp.jitter) if imp.jitter else 0.0)
        if imp.reorder_every and index % imp.reorder_every == imp.reorder_every - 1:
            delay += imp.reorder_hold
        self._echo_later(delay, data, addr)
        if imp.duplicate_every and index % imp.duplicate_every == 0:
            self._echo_later(delay, data, addr)  # same moment: FIFO keeps it before later echoes

    def _echo_later(self, delay: float, data: bytes, addr: tuple[str, int]) -> None:
        if delay <= 0:
            self._echo(data, addr)
        else:
            loop = asyncio.get_running_loop()
            self.handles.append(loop.call_later(delay, self._echo, data, addr))

    def _echo(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def send_times(self) -> list[int]:
        """The send timestamps (wall-clock ns) carried by the datagrams received, in order."""
        return [TAG.unpack_from(d, RTP.size)[1] for d in self.received]

    def close(self) -> None:
        for handle in self.handles:
            handle.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.other is not None:
            self.other.close()


StartReflector = Callable[..., Awaitable[Reflector]]


@pytest.fixture
async def reflector() -> AsyncIterator[StartReflector]:
    """Start reflectors on 127.0.0.1 (free port each); all are closed afterwards."""
    started: list[Reflector] = []

    async def start(imp: Impairment, host: str = "127.0.0.1") -> Reflector:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: Reflector(imp), local_addr=(host, 0))
        started.append(proto)
        return proto

    yield start
    for proto in started:
        proto.close()


async def run(port: int, **settings: float) -> ProbeResult:
    async with ProbeContext() as ctx:
        return await media.probe("127.0.0.1", MediaSettings(port=port, **settings), ctx)


async def test_clean_path_measures_near_perfect_call(reflector: StartReflector) -> None:
    """A clean loopback path: no loss, sub-10 ms mean RTT, small jitter and MOS about 4.4."""
    refl = await reflector(Impairment())
    result = await run(refl.port)
    assert result.ok, result.error
    assert result.probe == "media" and result.error is None
    assert result.details["sent"] == result.details["received"] == 50
    assert result.loss == 0.0
    assert result.details["lost"] == result.details["duplicates"] == 0
    assert result.details["reordered"] == result.details["stray"] == 0
    assert result.rtt is not None and result.rtt_min is not None and result.rtt_max is not None
    assert 0 < result.rtt_min <= result.rtt <= result.rtt_max
    # Generous: a loaded 2-core host may hold a single echo for tens of ms.
    assert result.rtt < 0.010 and result.rtt_max < 0.2
    assert result.jitter is not None and 0 <= result.jitter < 0.010
    assert result.mos is not None and 4.3 <= result.mos <= 4.41
    assert [p.name for p in result.phases] == ["send", "receive"]
    assert all(p.ok for p in result.phases)
    # 49 intervals of 20 ms on an absolute schedule (a late first packet shortens the span
    # by its lateness); then the probe stops as soon as every echo is back.
    send = result.phases[0].seconds
    assert send is not None and 0.93 <= send < 1.2
    assert result.duration < 1.2 + 0.5


async def test_packets_are_real_rtp_pcmu(reflector: StartReflector) -> None:
    """Every datagram is a 172-byte RTP v2 PCMU packet: one SSRC, +1 sequence, +160 timestamp."""
    refl = await reflector(Impairment())
    await run(refl.port, packets=10)
    headers = [RTP.unpack_from(d) for d in refl.received]
    assert len(headers) == 10
    assert all(len(d) == 172 for d in refl.received)
    assert {(h[0], h[1]) for h in headers} == {(0x80, 0)}  # V=2, no padding/ext/CSRC; M=0, PT=0
    assert len({h[4] for h in headers}) == 1
    for prev, cur in itertools.pairwise(headers):
        assert cur[2] == (prev[2] + 1) & 0xFFFF
        assert cur[3] == (prev[3] + 160) & 0xFFFFFFFF
    assert len({TAG.unpack_from(d, RTP.size)[0] for d in refl.received}) == 1
    assert all(set(d[RTP.size + TAG.size :]) == {0xFF} for d in refl.received)


async def test_impaired_path_statistics(reflector: StartReflector) -> None:
    """40 ms ± 10 ms delay and 5 % loss over 1,000 packets: RTT, loss, jitter and MOS follow."""
    refl = await reflector(Impairment(delay=0.040, jitter=0.010, loss=0.05, seed=7))
    result = await run(refl.port, packets=1000, pacing=0.002, timeout=0.3)
    assert result.ok, result.error
    assert result.rtt is not None and result.rtt_min is not None and result.rtt_max is not None
    assert 0.032 <= result.rtt <= 0.048
    # The reflector never echoes before delay - jitter; timers and load only add.
    assert result.rtt_min >= 0.030 and result.rtt_max >= 0.045
    assert result.loss is not None and 0.02 <= result.loss <= 0.09
    # A loaded machine may stretch the schedule past the deadline: loss counts packets sent.
    sent = result.details["sent"]
    assert isinstance(sent, int) and sent >= 500
    assert result.details["lost"] == sent - result.details["received"]
    # Uniform ±10 ms per packet: mean |D| between arrivals is about 6-7 ms (simulated 5.7-7.4).
    assert result.jitter is not None and 0.003 <= result.jitter <= 0.012
    # Jitter four times the pacing reorders a large share of the stream.
    assert result.details["reordered"] > 100
    assert result.mos is not None and 3.6 <= result.mos <= 4.2
    clean = await run((await reflector(Impairment())).port, packets=50, pacing=0.002)
    assert clean.mos is not None and result.mos < clean.mos - 0.2


async def test_duplicates_are_counted_once(reflector: StartReflector) -> None:
    """Every 5th datagram echoed twice: 20 duplicates, no loss, no double-counted RTT."""
    refl = await reflector(Impairment(duplicate_every=5))
    result = await run(refl.port, packets=100, pacing=0.005)
    assert result.ok
    assert result.details["duplicates"] == 20
    assert result.details["received"] == 100 and result.loss == 0.0
    assert result.details["reordered"] == 0


async def test_reordering_is_counted(reflector: StartReflector) -> None:
    """Every 10th echo held back 200 ms arrives behind later ones: 9 reordered (not the last)."""
    refl = await reflector(Impairment(reorder_every=10, reorder_hold=0.2))
    result = await run(refl.port, packets=100, pacing=0.005)
    assert result.ok
    assert result.details["reordered"] == 9
    assert result.details["received"] == 100 and result.details["duplicates"] == 0
    assert result.rtt_max is not None and result.rtt_max >= 0.2


async def test_stray_datagrams_are_ignored(reflector: StartReflector) -> None:
    """Garbage and forged-nonce datagrams are counted as stray; another port's never arrive."""
    refl = await reflector(Impairment(stray=True))
    result = await run(refl.port, packets=30, pacing=0.005)
    assert result.ok
    assert result.details["received"] == 30
    assert result.details["duplicates"] == 0  # the copies from the other port were not seen
    assert result.details["stray"] == 60
    assert result.loss == 0.0


async def test_silent_reflector_fails_with_no_echo(reflector: StartReflector) -> None:
    """A reflector that drops everything: failure 'no echo', loss 1, within the deadline."""
    refl = await reflector(Impairment(loss=1.0))
    result = await run(refl.port, packets=10, pacing=0.01, timeout=0.3)
    assert not result.ok
    assert result.error == f"no echo from 127.0.0.1:{refl.port}"
    assert result.loss == 1.0 and result.mos is None and result.rtt is None
    assert result.details["sent"] == 10 and result.details["received"] == 0
    assert not result.phases[1].ok
    assert 0.09 + 0.3 - 0.02 <= result.duration <= 0.09 + 0.3 + 0.3


async def test_ipv6_reflector(reflector: StartReflector) -> None:
    """The probe works over ::1 and names the endpoint in brackets when it fails."""
    refl = await reflector(Impairment(), host="::1")
    async with ProbeContext() as ctx:
        result = await media.probe("::1", MediaSettings(port=refl.port, packets=5), ctx)
        assert result.ok and result.details["received"] == 5, result.error
        dead = free_port(socket.SOCK_DGRAM)
        failed = await media.probe("::1", MediaSettings(port=dead, packets=5), ctx)
    assert failed.error == f"port unreachable: [::1]:{dead}"


async def test_dead_port_fails_fast() -> None:
    """No listener: ICMP port unreachable ends the probe in well under its 2 s deadline."""
    port = free_port(socket.SOCK_DGRAM)
    result = await run(port)
    assert not result.ok
    assert result.error == f"port unreachable: 127.0.0.1:{port}"
    assert result.details["unreachable"] >= 3
    assert result.details["sent"] <= 6
    assert result.duration < 0.5


async def test_unresolvable_host_is_a_result() -> None:
    """A name that cannot resolve (reserved .invalid TLD) is a failed result, not an exception."""
    async with ProbeContext() as ctx:
        result = await media.probe(
            "nowhere.invalid", MediaSettings(port=7078, timeout=0.5, packets=1), ctx
        )
    assert not result.ok
    assert result.error is not None and "nowhere.invalid" in result.error


async def test_stall_is_not_followed_by_a_burst(reflector: StartReflector) -> None:
    """A 150 ms event-loop stall stretches the stream; packets never come closer than pacing/2."""
    refl = await reflector(Impairment())
    loop = asyncio.get_running_loop()
    loop.call_later(0.105, time.sleep, 0.15)  # block the loop, as a busy process would
    result = await run(refl.port, packets=30, pacing=0.01)
    assert result.ok
    sends = refl.send_times()
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(sends)]
    assert min(gaps) >= 0.005 - 0.0005
    # A burst would have caught up; re-anchoring adds the stall to the stream instead.
    assert (sends[-1] - sends[0]) / 1e9 >= 0.29 + 0.15 - 0.02


async def test_cancel_closes_the_socket(reflector: StartReflector) -> None:
    """Cancelling mid-stream propagates CancelledError and leaves no socket open."""
    refl = await reflector(Impairment())
    before = len(os.listdir("/proc/self/fd"))
    task = asyncio.create_task(run(refl.port, packets=100))
    await asyncio.sleep(0.2)
    assert refl.received, "the stream had started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # let the transport's close callback run
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def test_size_below_header_and_tag_is_rejected() -> None:
    """Packets must hold the RTP header and the probe tag (28 bytes)."""
    assert media.MIN_SIZE == 28
    with pytest.raises(ValueError, match="size"):
        MediaSettings(size=27)
    assert MediaSettings(size=28).size == 28


async def test_rtt_and_jitter_are_the_kernels_while_the_loop_is_blocked() -> None:
    """Echoes that arrive while the event loop is blocked for 300 ms keep their real RTT and
    jitter: the arrival time is the kernel's receive stamp, not when the loop read them."""
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    stop = threading.Event()

    def reflect() -> None:  # on its own thread: answers 50 ms later, loop blocked or not
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(2048)
            except TimeoutError:
                continue
            threading.Timer(0.05, server.sendto, (data, addr)).start()

    thread = threading.Thread(target=reflect, daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()
    try:
        # packets 0..9 go out in the first 180 ms; the loop is blocked from 190 ms for
        # 300 ms, while the echoes of packets 7..9 arrive: they wait in the socket
        loop.call_later(0.19, time.sleep, 0.3)
        r = await run(port, packets=10, pacing=0.02, timeout=1.0)
    finally:
        stop.set()
        thread.join(2)
        server.close()
    assert r.ok and r.details["received"] == 10, r
    assert r.rtt_max is not None and r.rtt_max < 0.15, r.rtt_max  # 50 ms, not the 300 ms block
    assert r.jitter is not None and r.jitter < 0.015, r.jitter
