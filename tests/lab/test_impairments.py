"""Impairments measured back with raw sockets: down, loss, delay, jitter, changes while running.

Bounds are wide on purpose (a loaded 2-core machine only ever adds delay): lower
bounds come from the lab's timers, which never fire early, and statistical
bounds are several standard deviations wide.
"""

from __future__ import annotations

import asyncio
import statistics

from monitor.inventory import Inventory
from monitor.lab import Impairment, Lab
from tests.lab.clients import http_get, parse_sip, sip_request, udp_client

HQ, ROOM, OTHER = "127.20.0.1", "127.20.0.2", "127.20.0.4"


async def echo_rtts(
    host: str, port: int, count: int, *, burst: int = 10, pacing: float = 0.005, settle: float = 0.3
) -> dict[int, float]:
    """Send ``count`` numbered datagrams (``burst`` at a time) and return the RTT of each echo."""
    client = await udp_client()
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    try:
        for i in range(count):
            sent[i] = client.send(i.to_bytes(4, "big") + bytes(60), (host, port))
            if i % burst == burst - 1:
                await asyncio.sleep(pacing)
        while True:
            try:
                data, at = await client.recv(settle)
            except TimeoutError:
                break
            index = int.from_bytes(data[:4], "big")
            rtts[index] = at - sent[index]
    finally:
        client.close()
    return rtts


async def sip_rtt(host: str, port: int) -> float | None:
    """Round trip of one OPTIONS over UDP, or None when nothing came back within 0.5 s."""
    client = await udp_client()
    try:
        sent = client.send(sip_request(target=host, via_port=client.port), (host, port))
        try:
            data, at = await client.recv(0.5)
        except TimeoutError:
            return None
        assert parse_sip(data)[0] == "SIP/2.0 200 OK"
        return at - sent
    finally:
        client.close()


async def tcp_silent(host: str, port: int, request: bytes, wait: float = 0.3) -> bool:
    """True if a TCP request gets no byte back within ``wait`` seconds."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        try:
            async with asyncio.timeout(wait):
                await reader.read(1)
        except TimeoutError:
            return True
        return False
    finally:
        writer.close()
        await writer.wait_closed()


async def test_down_silences_every_service(lab: Lab, ports: dict[str, int]) -> None:
    """A point that is down answers nothing on SIP/UDP, SIP/TCP, media or HTTP; healed, it answers."""
    lab.set_impairment("hq", Impairment(down=True))
    assert await sip_rtt(HQ, ports["sip"]) is None
    assert await echo_rtts(HQ, ports["media"], 5) == {}
    assert await tcp_silent(HQ, ports["sip"], sip_request())
    assert await tcp_silent(HQ, ports["http"], b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert lab.stats()["dropped"] >= 8
    lab.clear("hq")
    assert await sip_rtt(HQ, ports["sip"]) is not None
    assert len(await echo_rtts(HQ, ports["media"], 5)) == 5
    assert (await http_get(HQ, ports["http"], "/status"))[0] == 200


async def test_impairment_of_a_district_reaches_its_communes(
    lab: Lab, ports: dict[str, int]
) -> None:
    """A district's impairment applies below it (delays add up), not to another district."""
    lab.set_impairment("hq", Impairment(down=True))
    assert await echo_rtts(ROOM, ports["media"], 5) == {}
    assert len(await echo_rtts(OTHER, ports["media"], 5)) == 5
    lab.set_impairment("hq", Impairment(delay=0.05))
    lab.set_impairment("hq.a", Impairment(delay=0.03))
    rtts = await echo_rtts(ROOM, ports["media"], 10)
    assert len(rtts) == 10 and min(rtts.values()) >= 0.0799
    path = lab.path("hq.a")
    assert path is not None and abs(path.delay - 0.08) < 1e-9
    assert lab.path("other") is None


async def test_loss_half_of_400_packets(lab: Lab, ports: dict[str, int]) -> None:
    """50 % loss over 400 echoes leaves between 40 % and 60 % (±4 standard deviations)."""
    lab.set_impairment("hq", Impairment(loss=0.5))
    rtts = await echo_rtts(HQ, ports["media"], 400)
    assert 160 <= len(rtts) <= 240, len(rtts)


async def test_delay_40ms_on_every_service(lab: Lab, ports: dict[str, int]) -> None:
    """With 40 ms delay every echo, SIP reply and HTTP response arrives at least 40 ms later."""
    lab.set_impairment("hq", Impairment(delay=0.040))
    rtts = await echo_rtts(HQ, ports["media"], 30)
    assert len(rtts) == 30
    assert min(rtts.values()) >= 0.0399
    assert statistics.median(rtts.values()) < 0.040 + 0.2
    sip = await sip_rtt(HQ, ports["sip"])
    assert sip is not None and sip >= 0.0399
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await http_get(HQ, ports["http"], "/status"))[0] == 200
    assert loop.time() - started >= 0.0399


async def test_uniform_jitter_spreads_delays(lab: Lab, ports: dict[str, int]) -> None:
    """30 ms ± 20 ms uniform jitter: no echo before 10 ms, a spread of tens of ms."""
    lab.set_impairment("hq", Impairment(delay=0.030, jitter=0.020))
    values = list((await echo_rtts(HQ, ports["media"], 100)).values())
    assert len(values) == 100
    assert min(values) >= 0.0099
    assert max(values) - min(values) >= 0.020
    assert statistics.stdev(values) >= 0.006  # uniform ±20 ms has a standard deviation of 11.5 ms


async def test_normal_jitter_spreads_delays(lab: Lab, ports: dict[str, int]) -> None:
    """60 ms with normal jitter (σ 10 ms): mean near 60 ms, a visible spread."""
    lab.set_impairment("hq", Impairment(delay=0.060, jitter=0.010, distribution="normal"))
    values = list((await echo_rtts(HQ, ports["media"], 200)).values())
    assert len(values) == 200
    assert 0.055 <= statistics.mean(values) <= 0.060 + 0.1
    assert statistics.stdev(values) >= 0.006


async def test_change_while_running_applies_to_next_packets(
    lab: Lab, ports: dict[str, int]
) -> None:
    """Setting and clearing a delay on a running lab changes the very next echoes."""
    before = await echo_rtts(HQ, ports["media"], 20)
    lab.set_impairment("hq", Impairment(delay=0.100))
    during = await echo_rtts(HQ, ports["media"], 20)
    lab.clear()
    after = await echo_rtts(HQ, ports["media"], 20)
    assert len(before) == len(during) == len(after) == 20
    assert min(during.values()) >= 0.0999
    assert statistics.median(before.values()) < 0.05
    assert statistics.median(after.values()) < 0.05


async def test_stream_loss_delays_by_retransmission(lab: Lab, ports: dict[str, int]) -> None:
    """On TCP a lost reply is retransmitted: 30 % loss answers every request, some 200 ms late."""
    lab.set_impairment("hq", Impairment(loss=0.3))
    loop = asyncio.get_running_loop()

    async def timed() -> float:
        started = loop.time()
        assert (await http_get(HQ, ports["http"], "/status", within=5))[0] == 200
        return loop.time() - started

    times = await asyncio.gather(*(timed() for _ in range(20)))
    assert max(times) >= 0.1999


async def test_full_stream_loss_never_answers(lab: Lab, ports: dict[str, int]) -> None:
    """100 % loss on TCP: the HTTP request is never answered."""
    lab.set_impairment("hq", Impairment(loss=1.0))
    assert await tcp_silent(HQ, ports["http"], b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")


async def test_same_seed_same_losses(inventory: tuple[Inventory, dict[str, int]]) -> None:
    """Two labs with one seed lose the same packets of the same stream."""
    inv, ports = inventory
    kept = []
    for _ in range(2):
        async with Lab(inv, seed=11) as lab:
            lab.set_impairment("other", Impairment(loss=0.3))
            kept.append(sorted(await echo_rtts(OTHER, ports["media"], 60, burst=1, pacing=0.002)))
    assert kept[0] == kept[1] and 20 <= len(kept[0]) <= 58


async def test_jittered_stream_replies_stay_in_order(lab: Lab, ports: dict[str, int]) -> None:
    """With jitter larger than their spacing, replies on one TCP connection still come in order."""
    lab.set_impairment("hq", Impairment(delay=0.03, jitter=0.03))
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(HQ, ports["sip"])
        try:
            writer.write(b"".join(sip_request(cseq=i) for i in range(1, 11)))
            cseqs = []
            for _ in range(10):
                head = await reader.readuntil(b"\r\n\r\n")
                cseqs.append(next(v for k, v in parse_sip(head)[1] if k == "CSeq"))
        finally:
            writer.close()
            await writer.wait_closed()
    assert cseqs == [f"{i} OPTIONS" for i in range(1, 11)]
