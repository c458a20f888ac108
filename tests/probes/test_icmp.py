"""The ICMP engine against the kernel's own echo replies: 127.0.0.0/8, ::1 and a namespace.

The silent host is a network namespace made by these tests, joined by a veth pair,
whose kernel is told to ignore echo requests (``net.ipv4.icmp_echo_ignore_all=1``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.errors import ConfmonError
from monitor.inventory.model import IcmpSettings
from monitor.probes import icmp
from monitor.probes.base import ProbeContext
from monitor.probes.icmp import IcmpEngine, probe
from tests.helpers import require_binary, require_root, run_in_empty_netns

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


def ping_group_range(value: str | None = None) -> str:
    """The current net.ipv4.ping_group_range ("low high"), after setting it to ``value``."""
    if value is not None:
        PING_GROUP_RANGE.write_text(value + "\n")
    return " ".join(PING_GROUP_RANGE.read_text().split())


def loopback(n: int, second_octet: int = 1) -> list[str]:
    """``n`` distinct addresses in 127.<second_octet>.0.0/16 (the kernel answers all of 127/8)."""
    return [f"127.{second_octet}.{i >> 8}.{i & 255}" for i in range(1, n + 1)]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def icmp_permitted() -> None:
    """Skip locally (fail in CI) when this process may open no ICMP socket at all."""
    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
        except PermissionError:
            continue
        return
    require_root("ICMP (no raw sockets, and net.ipv4.ping_group_range excludes this group)")


@pytest.fixture
async def engine() -> AsyncIterator[IcmpEngine]:
    async with await IcmpEngine.open() as opened:
        yield opened


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


async def run_async(*command: str) -> None:
    """Run a short command without blocking the loop (bursts may be in flight meanwhile)."""
    process = await asyncio.create_subprocess_exec(*command)
    try:
        async with asyncio.timeout(30):
            assert await process.wait() == 0, command
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@dataclass
class SilentHost:
    """A host inside a namespace of the test's own, reached over a veth pair."""

    namespace: str
    address: str
    host_if: str
    inner_if: str

    def _sysctl(self, ignore: bool) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, "sysctl", "-q", "-w",
                f"net.ipv4.icmp_echo_ignore_all={int(ignore)}"]  # fmt: skip

    async def ignore_echo(self, ignore: bool) -> None:
        await run_async(*self._sysctl(ignore))


@pytest.fixture(scope="module")
def silent_host() -> Iterator[SilentHost]:
    require_root("creating a network namespace")
    require_binary("ip")
    tag = os.urandom(3).hex()
    namespace, host_if, inner_if = f"confmon-t-{tag}", f"cmt{tag}h", f"cmt{tag}n"
    # A random /30 of 198.18.0.0/15 rather than always 198.18.0.0/30: other test runs on
    # this machine may hold a namespace of their own, and two host interfaces in one
    # subnet would make the route (and so this test) depend on which came first.
    in_use = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    while True:
        base = random.randrange(0, 1 << 17, 4)
        prefix = f"198.{18 + (base >> 16)}.{(base >> 8) & 255}"
        host_ip, inner_ip = f"{prefix}.{(base & 255) + 1}", f"{prefix}.{(base & 255) + 2}"
        if f" {host_ip}/" not in in_use and f" {inner_ip}/" not in in_use:
            break
    steps = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", inner_if,
         "netns", namespace],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{inner_ip}/30", "dev", inner_if],
        ["ip", "-n", namespace, "link", "set", inner_if, "up"],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
    ]  # fmt: skip
    try:
        for step in steps:
            run(*step)
        host = SilentHost(namespace, inner_ip, host_if, inner_if)
        run(*host._sysctl(True))
        yield host
    finally:
        # Deleting the namespace deletes its end of the veth pair, and with it ours;
        # the explicit delete covers a failure between "link add" and the namespace.
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


async def test_loopback_targets_all_answer() -> None:
    """127.0.0.1 and distinct 127.x.y.z addresses answer every echo, with sane statistics."""
    settings = IcmpSettings()
    targets = ["127.0.0.1", *loopback(30, second_octet=7)]
    async with ProbeContext() as ctx:
        results = await asyncio.gather(*(probe(t, settings, ctx) for t in targets))
    for target, result in zip(targets, results, strict=True):
        assert result.probe == "icmp"
        assert result.target == target
        assert result.ok, result.error
        assert result.error is None
        assert result.loss == 0.0
        assert result.rtt is not None and result.rtt_min is not None and result.rtt_max is not None
        assert 0 < result.rtt_min <= result.rtt <= result.rtt_max < 0.5
        assert result.jitter is not None and result.jitter >= 0
        assert result.details["address"] == target
        assert result.details["sent"] == result.details["received"] == settings.count
        assert len(result.details["rtts"]) == settings.count
        assert result.details["ttl"] == 64  # Linux's default TTL, as seen on loopback
        assert [p.name for p in result.phases] == ["resolve", "echo"]
        assert all(p.ok for p in result.phases)


async def test_payload_sizes(engine: IcmpEngine) -> None:
    """Payloads from empty to 1472 bytes are answered (the kernel drops a bad checksum)."""
    for size in (0, 1, 7, 8, 9, 56, 1000, 1472):
        result = await engine.ping("127.0.0.1", count=2, spacing=0.0, timeout=1.0, size=size)
        assert result.ok and result.loss == 0.0, (size, result.error)


async def test_many_concurrent_bursts_do_not_collide(engine: IcmpEngine) -> None:
    """2,000 targets x 5 echoes at once on one engine: no loss, each result its own target's."""
    targets = loopback(2000, second_octet=8)
    results = await asyncio.gather(*(engine.ping(t) for t in targets))
    assert sum(r.details["received"] for r in results) == 5 * len(targets)
    assert [r.details["address"] for r in results] == targets
    assert all(r.loss == 0.0 for r in results)
    assert engine.in_flight == 0


@pytest.mark.parametrize("mode", ["raw+raw", "raw+dgram"])
async def test_two_engines_in_one_process_keep_their_replies(mode: str) -> None:
    """Two engines (two agents on one host) pinging the same and other addresses at once.

    A raw socket receives a copy of every echo reply reaching the host, the other
    engine's too: each engine must count exactly its own. ``raw+dgram`` pairs a
    privileged agent with an unprivileged one, whose identifier the kernel picks.
    """
    count = 5
    shared = loopback(200, second_octet=12)
    targets = (shared + loopback(200, second_octet=13), shared + loopback(200, second_octet=14))
    original = ping_group_range()
    widened = False
    if mode == "raw+dgram":
        low, high = (int(x) for x in original.split())
        if not low <= os.getgid() <= high:
            require_root("unprivileged ICMP (net.ipv4.ping_group_range excludes this group)")
            ping_group_range("0 2147483647")
            widened = True
    try:
        async with (
            await IcmpEngine.open(privileged=True) as first,
            await IcmpEngine.open(privileged=mode == "raw+raw") as second,
        ):
            assert second.privileged == (mode == "raw+raw")
            engines = (first, second)
            # interleaved, so both engines send to each shared address in the same moment
            order = [
                (e, t)
                for pair in zip(*targets, strict=True)
                for e, t in zip(engines, pair, strict=True)
            ]
            done = await asyncio.gather(*(e.ping(t, count=count) for e, t in order))
            assert first.in_flight == second.in_flight == 0
    finally:
        if widened:
            ping_group_range(original)
    for engine, mine in zip(engines, targets, strict=True):
        results = [r for (e, _t), r in zip(order, done, strict=True) if e is engine]
        assert [r.details["address"] for r in results] == mine
        assert sum(r.details["sent"] for r in results) == count * len(mine)
        assert sum(r.details["received"] for r in results) == count * len(mine)
        assert all(r.ok and r.loss == 0.0 for r in results)
        assert all(None not in r.details["rtts"] for r in results)


def test_two_engines_never_take_each_others_replies() -> None:
    """Replies to one engine never count for another, even under the same identifiers.

    In a namespace of its own, a firewall rule drops the first engine's echo requests
    (by their length) on their way in, so it must receive nothing, while the second
    engine pings the same addresses under the first one's identifiers and serials:
    every reply it gets matches an outstanding request of the first engine by key,
    and only the nonce in the payload tells them apart.
    """
    require_binary("nft")
    lines = run_in_empty_netns(
        """
        import asyncio, json, socket, subprocess

        from monitor.probes.icmp import IcmpEngine

        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["nft", "add table ip t; add chain ip t in { type filter hook input priority 0; };"
             " add rule ip t in icmp type echo-request ip length 128 drop"],  # 20 + 8 + 100
            check=True,
        )

        async def main():
            targets = [f"127.15.0.{i}" for i in range(1, 101)]
            async with (
                await IcmpEngine.open(privileged=True) as first,
                await IcmpEngine.open(privileged=True) as second,
            ):
                a, b = first._sockets[socket.AF_INET], second._sockets[socket.AF_INET]
                b.idents, b.slot_of, b.serial = a.idents, dict(a.slot_of), a.serial
                assert a.nonce != b.nonce  # random 32-bit nonces: equal once in 2**32 runs
                done = await asyncio.gather(*(
                    engine.ping(t, count=5, size=size, timeout=0.5)
                    for t in targets
                    for engine, size in ((first, 100), (second, 56))
                ))
            for results in (done[0::2], done[1::2]):
                print(json.dumps([sum(r.details[k] for r in results) for k in ("sent", "received")]))

        asyncio.run(main())
        """
    )
    assert [json.loads(line) for line in lines] == [[500, 0], [500, 500]]


async def test_ipv6_loopback(engine: IcmpEngine) -> None:
    """::1 answers over the lazily opened ICMPv6 socket; ::ffff:127.0.0.1 goes over IPv4."""
    if not ipv6_loopback():
        pytest.skip("IPv6 loopback (::1) is not available on this host")
    result = await engine.ping("::1")
    assert result.ok and result.loss == 0.0, result.error
    assert result.details["address"] == "::1"
    assert result.details["ttl"] == 64  # the hop limit, from the IPV6_HOPLIMIT item
    assert result.rtt is not None and result.rtt > 0
    mapped = await engine.ping("::ffff:127.0.0.1", count=2)
    assert mapped.ok and mapped.details["address"] == "127.0.0.1"


async def test_host_name_is_resolved(engine: IcmpEngine) -> None:
    """A name from /etc/hosts (no DNS traffic) is resolved and its address pinged."""
    result = await engine.ping("localhost", count=2)
    assert result.ok, result.error
    assert result.details["address"] in ("127.0.0.1", "::1")
    assert (
        result.phases[0].name == "resolve" and result.phases[0].detail == result.details["address"]
    )


@pytest.mark.parametrize("name", ["no-such-host.invalid", "x" * 64 + ".example"])
async def test_unresolvable_name_is_a_failed_result(engine: IcmpEngine, name: str) -> None:
    """A name that cannot resolve gives ok=False and a reason, not an exception."""
    result = await engine.ping(name)
    assert not result.ok
    assert result.error is not None and result.error.startswith(f"cannot resolve {name}: ")
    assert result.loss == 1.0
    assert [(p.name, p.ok) for p in result.phases] == [("resolve", False)]
    assert engine.in_flight == 0


async def test_silent_host_fails_within_deadline(
    engine: IcmpEngine, silent_host: SilentHost
) -> None:
    """A host ignoring echo requests: ok=False, loss 1.0, "no reply", back by the deadline."""
    await silent_host.ignore_echo(False)
    try:
        answered = await engine.ping(silent_host.address, count=3, timeout=1.0)
    finally:
        await silent_host.ignore_echo(True)
    assert answered.ok and answered.loss == 0.0, "the namespace fixture does not answer at all"

    count, spacing, timeout = 5, 0.02, 0.5
    deadline = (count - 1) * spacing + timeout
    settings = IcmpSettings(count=count, spacing=spacing, timeout=timeout)
    async with ProbeContext() as ctx:
        await icmp.engine(ctx)  # open the engine outside the measured time
        started = time.monotonic()
        result = await probe(silent_host.address, settings, ctx)
        elapsed = time.monotonic() - started
        assert (await icmp.engine(ctx)).in_flight == 0
    assert not result.ok
    assert result.loss == 1.0
    assert result.error == "no reply to 5 echo requests"
    assert result.details["sent"] == 5 and result.details["received"] == 0
    assert result.rtt is None and result.jitter is None
    assert [(p.name, p.ok) for p in result.phases] == [("resolve", True), ("echo", False)]
    assert deadline - 0.05 <= elapsed <= deadline + 1.0


async def test_partial_loss_keeps_statistics(engine: IcmpEngine, silent_host: SilentHost) -> None:
    """Replies stop mid-burst: ok stays True, loss is the lost share, RTTs are the received."""
    await silent_host.ignore_echo(False)
    task = asyncio.create_task(engine.ping(silent_host.address, count=10, spacing=0.1, timeout=0.5))
    try:
        await asyncio.sleep(0.45)  # echoes 0..4 answered
    finally:
        await silent_host.ignore_echo(True)
    result = await task
    received = result.details["received"]
    assert result.ok
    assert 2 <= received <= 8
    assert result.loss == pytest.approx((10 - received) / 10)
    rtts = result.details["rtts"]
    assert rtts[0] is not None and rtts[-1] is None
    assert result.rtt == pytest.approx(sum(r for r in rtts if r is not None) / received)
    got = [r for r in rtts if r is not None]
    expected_jitter = sum(abs(b - a) for a, b in itertools.pairwise(got)) / (len(got) - 1)
    assert result.jitter == pytest.approx(expected_jitter)


async def test_cancel_mid_burst_forgets_outstanding(
    engine: IcmpEngine, silent_host: SilentHost
) -> None:
    """Cancelling a probe mid-burst removes its outstanding requests and stops its sends."""
    task = asyncio.create_task(
        engine.ping(silent_host.address, count=50, spacing=0.02, timeout=2.0)
    )
    await asyncio.sleep(0.2)
    assert engine.in_flight > 0  # requests to a silent host stay outstanding
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.in_flight == 0
    await asyncio.sleep(0.1)  # a send scheduled after the cancel would show up here
    assert engine.in_flight == 0


async def test_cancel_on_loopback_leaves_nothing(engine: IcmpEngine) -> None:
    """Cancelling many loopback bursts at random points leaves no outstanding request."""
    tasks = [
        asyncio.create_task(engine.ping(t, count=20, spacing=0.005))
        for t in loopback(200, second_octet=9)
    ]
    await asyncio.sleep(0.03)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert engine.in_flight == 0


async def test_close_ends_running_bursts(silent_host: SilentHost) -> None:
    """Closing the engine ends a burst still waiting, at once, as a failed result."""
    engine = await IcmpEngine.open()
    task = asyncio.create_task(engine.ping(silent_host.address, count=3, timeout=5.0))
    await asyncio.sleep(0.1)
    await engine.close()
    result = await asyncio.wait_for(task, 2.0)
    assert not result.ok
    assert "ICMP engine closed" in result.phases[-1].detail


async def test_unprivileged_datagram_sockets() -> None:
    """privileged=False uses datagram ICMP sockets, allowed by ping_group_range."""
    original = ping_group_range()
    low, high = (int(x) for x in original.split())
    allowed = low <= os.getgid() <= high
    if not allowed and os.geteuid() != 0:
        pytest.skip(f"net.ipv4.ping_group_range is {original!r}: no unprivileged ICMP, not root")
    try:
        if not allowed:
            ping_group_range("0 2147483647")
        async with await IcmpEngine.open(privileged=False) as engine:
            assert not engine.privileged
            targets = loopback(500, second_octet=10)
            results = await asyncio.gather(*(engine.ping(t) for t in targets))
            assert [r.details["address"] for r in results] == targets
            assert all(r.ok and r.loss == 0.0 for r in results)
            assert all(r.details["socket"] == "dgram" for r in results)
            assert all(r.details["ttl"] == 64 for r in results)  # from the IP_TTL item
            for size in (0, 7, 8, 56):
                small = await engine.ping("127.0.0.1", count=2, spacing=0.0, size=size)
                assert small.ok and small.loss == 0.0, size
            if ipv6_loopback():
                six = await engine.ping("::1", count=2)
                assert six.ok and six.details["socket"] == "dgram", six.error
            assert engine.in_flight == 0
    finally:
        if not allowed:
            ping_group_range(original)


async def test_no_permission_names_the_sysctl() -> None:
    """With ping_group_range closed, privileged=False raises a one-line ConfmonError saying what to set."""
    require_root("changing net.ipv4.ping_group_range")
    original = ping_group_range()
    try:
        ping_group_range("1 0")  # the kernel's "nobody" range
        with pytest.raises(ConfmonError) as raised:
            await IcmpEngine.open(privileged=False)
    finally:
        ping_group_range(original)
    message = str(raised.value)
    assert "\n" not in message
    assert 'sysctl -w net.ipv4.ping_group_range="0 2147483647"' in message


async def test_bad_arguments_are_exceptions(engine: IcmpEngine) -> None:
    """Nonsense burst parameters are a bug of the caller: ValueError, not a result."""
    for kwargs in ({"count": 0}, {"timeout": 0.0}, {"spacing": -1.0}, {"size": -1}):
        with pytest.raises(ValueError):
            await engine.ping("127.0.0.1", **kwargs)


async def test_sequence_wrap_keeps_matching(engine: IcmpEngine) -> None:
    """Requests across the 32-bit serial wrap and identifier changes still match their replies."""
    sock = engine._sockets[socket.AF_INET]  # white-box: start just before the wrap
    sock.serial = 0xFFFF_FFFF - 2_500
    targets = loopback(1000, second_octet=11)
    results = await asyncio.gather(*(engine.ping(t) for t in targets))
    assert sock.serial < 3_000  # it did wrap
    assert [r.details["address"] for r in results] == targets
    assert all(r.loss == 0.0 for r in results)


async def test_full_send_buffer_never_blocks_the_loop(silent_host: SilentHost) -> None:
    """Sends stuck behind an unresolvable neighbour wait without blocking, bounded by the deadline."""
    lags: list[float] = []

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    # With the far end down, ARP never answers: the kernel parks the requests in the
    # neighbour queue, charged to our socket, until a tiny send buffer is full.
    await run_async("ip", "-n", silent_host.namespace, "link", "set", silent_host.inner_if, "down")
    await run_async("ip", "neigh", "flush", "dev", silent_host.host_if)
    ticker = asyncio.create_task(tick())
    try:
        async with await IcmpEngine.open() as engine:
            sock = engine._sockets[socket.AF_INET].sock  # white-box: a small buffer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            started = time.monotonic()
            result = await engine.ping(silent_host.address, count=200, spacing=0.0, timeout=0.3)
            elapsed = time.monotonic() - started
            assert engine.in_flight == 0
            assert not engine._sockets[socket.AF_INET].backlog
    finally:
        ticker.cancel()
        await run_async(
            "ip", "-n", silent_host.namespace, "link", "set", silent_host.inner_if, "up"
        )
    assert not result.ok
    assert "send buffer full" in result.phases[-1].detail
    assert result.details["sent"] < 200
    assert elapsed <= 0.3 + 1.0
    assert lags and max(lags) < 0.25
