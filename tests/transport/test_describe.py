"""Agents send phases and details when they are news (monitor.core.results.Describer), and
the server keeps each probe's last described result for the API and the dashboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.commands import agent as agent_cmd
from monitor.core.results import (
    DESCRIBE_EVERY,
    JUDGED_DETAILS,
    Describer,
    Phase,
    ProbeResult,
    ResultBatch,
    decode_batch,
    encode_batch,
    undescribed,
)
from monitor.dashboard.model import ProbeView
from monitor.errors import UsageError
from monitor.transport.agent import Agent, AgentOptions
from monitor.transport.mqtt import parse_broker
from tests.outputs.fixtures import feed, serving

T0 = 1_796_000_000.0


def icmp(at: float, ok: bool = True, warning: str | None = None) -> ProbeResult:
    return ProbeResult(
        probe="icmp",
        target="127.0.0.1",
        ok=ok,
        at=at,
        duration=0.08,
        rtt=0.001 if ok else None,
        loss=0.0 if ok else 1.0,
        error=None if ok else "no reply",
        warning=warning,
        phases=(Phase("resolve", True, 0.0, "127.0.0.1"), Phase("echo", ok, 0.08, "5 sent")),
        details={"sent": 5, "received": 5 if ok else 0, "rtts": [0.001] * 5, "ttl": 64},
    )


def described(d: Describer, at: float, **kw: object) -> bool:
    return bool(d("ba-vi", icmp(at, **kw)).phases)  # type: ignore[arg-type]


def test_news_goes_described_and_a_steady_probe_once_a_period() -> None:
    d = Describer(60.0)
    assert described(d, T0)  # the first
    assert not described(d, T0 + 5)  # steady
    assert described(d, T0 + 10, ok=False)  # a failure, every time
    assert described(d, T0 + 15, ok=False)
    assert described(d, T0 + 20)  # back: a change
    assert not described(d, T0 + 25)
    assert described(d, T0 + 30, warning="SIP 503")  # a warning appears
    assert not described(d, T0 + 35, warning="SIP 503")  # and stays: no news
    assert described(d, T0 + 40)  # and goes
    steady = [t for t in range(45, 200, 5) if described(d, T0 + t)]
    assert steady == [100, 160]  # a heartbeat every 60 s after the last described one
    assert described(d, T0 + 150)  # a clock set back is described, not silenced


def test_every_zero_describes_every_result() -> None:
    d = Describer(0)
    assert all(described(d, T0 + 5 * k) for k in range(10))


def test_first_heartbeats_are_spread_over_the_period() -> None:
    """An agent starting with 2,000 points describes them all at first; their heartbeats
    must not all come back in the same cycle a minute later."""
    d = Describer(60.0)
    first_beat: dict[str, float] = {}
    for k in range(13):
        at = T0 + 5 * k
        for i in range(2000):
            if d(f"p{i}", icmp(at)).phases and k:
                first_beat.setdefault(f"p{i}", at)
    assert len(first_beat) == 2000  # every point had one within a period (and a cycle)
    per_cycle = [sum(1 for t in first_beat.values() if t == T0 + 5 * k) for k in range(1, 13)]
    assert max(per_cycle) < 2000 / 12 * 1.5, per_cycle


def test_undescribed_keeps_what_the_server_judges_by() -> None:
    r = undescribed(icmp(T0))
    assert r.phases == () and dict(r.details) == {"sent": 5, "received": 5}
    assert set(JUDGED_DETAILS) >= set(r.details)
    assert (r.probe, r.ok, r.at, r.rtt, r.loss, r.duration) == ("icmp", True, T0, 0.001, 0.0, 0.08)
    sip = ProbeResult(
        probe="sip",
        target="h",
        ok=True,
        at=T0,
        duration=0.2,
        rtt=0.2,
        details={"retransmissions": 1, "x": 1},
    )
    assert dict(undescribed(sip).details) == {"retransmissions": 1}
    big = len(encode_batch(ResultBatch("a", 1, T0, (("p", icmp(T0)),))))
    small = len(encode_batch(ResultBatch("a", 1, T0, (("p", r),))))
    assert small < big * 0.75, (small, big)


async def test_the_agent_sends_steady_results_undescribed() -> None:
    agent = Agent(AgentOptions(broker=parse_broker("mqtt://127.0.0.1:1"), agent="a"))
    for k in range(3):
        batch = ResultBatch("a", k, T0 + 5 * k, (("ba-vi", icmp(T0 + 5 * k)),))
        agent._deliver(batch, T0 + 5 * k)
    pairs = agent.outbox.take(10)
    payload = decode_batch(agent._encode(pairs))
    assert [bool(r.phases) for _, r in payload.results] == [True, False, False]
    assert [r.details.get("received") for _, r in payload.results] == [5, 5, 5]


def test_the_command_line_default_is_the_describers() -> None:
    assert agent_cmd.DESCRIBE_EVERY == DESCRIBE_EVERY
    from monitor.cli import build_parser

    parser = build_parser()
    common = ["agent", "--broker", "mqtt://127.0.0.1:1", "--id", "a"]
    assert parser.parse_args(common).describe_every == DESCRIBE_EVERY
    assert parser.parse_args([*common, "--describe-every", "0"]).describe_every == 0
    for bad in ("-1", "soon", "1e9", "nan"):
        with pytest.raises(UsageError, match="--describe-every"):
            parser.parse_args([*common, "--describe-every", bad])


async def latest_icmp(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/points/ba-vi") as resp:
        assert resp.status == 200
        return (await resp.json())["probes"]["icmp"]  # type: ignore[no-any-return]


async def test_the_api_gives_the_last_described_result_beside_the_latest(tmp_path: Path) -> None:
    async with serving(tmp_path) as (monitor, base):
        now = time.time()
        full = icmp(now - 10)
        feed(monitor, "ba-vi", [full], now - 10)
        feed(monitor, "ba-vi", [undescribed(icmp(now - 5))], now - 5)
        probe = await latest_icmp(base)
        assert probe["at"] == now - 5 and probe["phases"] == []
        assert probe["described"]["at"] == now - 10
        assert [p["name"] for p in probe["described"]["phases"]] == ["resolve", "echo"]
        view = ProbeView.from_api(probe, "icmp")
        assert view.phases_at == now - 10 and [p[0] for p in view.phases] == ["resolve", "echo"]
        # a described latest result stands alone
        feed(monitor, "ba-vi", [icmp(now)], now)
        probe = await latest_icmp(base)
        assert "described" not in probe and len(probe["phases"]) == 2
        assert ProbeView.from_api(probe, "icmp").phases_at is None


def test_the_health_model_judges_undescribed_results_as_described_ones() -> None:
    """What an undescribed result keeps (JUDGED_DETAILS) is all the health model reads:
    the same random history, described or not, gives the same states, reasons and figures
    at every step (loss from the packet counts, SIP retransmissions out of the RTT)."""
    import random

    from monitor.core.health import HealthModel
    from monitor.inventory import parse_inventory
    from tests.outputs.fixtures import CONFIG

    # a point without ICMP too: its RTT is SIP's, and a retransmitted request's is no sample
    config = (
        CONFIG.replace(
            "  room: {icmp: {}, sip: {}}", "  room: {icmp: {}, sip: {}}\n  sip-only: {sip: {}}"
        )
        + '  - {id: phuc-tho, name: "Huyện Phúc Thọ", host: 10.21.3.1, profile: sip-only}\n'
    )
    inv = parse_inventory(config, "test.yaml")
    assert inv.profile_of(inv.points["phuc-tho"]).probes() == ["sip"]
    full, lean = HealthModel(inv, now=T0), HealthModel(inv, now=T0)
    rnd = random.Random(11)
    seen: set[str] = set()
    for k in range(120):
        at = T0 + 5 * k
        for pid in inv.points:
            cycle = []
            ok = rnd.random() > 0.15
            sent = 5
            received = rnd.choice([5, 5, 5, 4, 3]) if ok else 0
            cycle.append(
                ProbeResult(
                    probe="icmp",
                    target="h",
                    ok=ok,
                    at=at,
                    duration=0.08,
                    rtt=rnd.uniform(0.001, 0.3) if ok else None,
                    jitter=rnd.uniform(0, 0.05) if ok else None,
                    loss=1 - received / sent,
                    phases=(Phase("echo", ok, 0.08, ""),),
                    details={"sent": sent, "received": received, "ttl": 64},
                )
            )
            retried = rnd.random() < 0.2
            cycle.append(
                ProbeResult(
                    probe="sip",
                    target="h",
                    ok=rnd.random() > 0.1,
                    at=at,
                    duration=0.3,
                    rtt=rnd.uniform(0.01, 0.6),
                    warning="SIP 503" if rnd.random() < 0.05 else None,
                    phases=(Phase("response", True, 0.3, "200 OK"),),
                    details={"retransmissions": 2 if retried else 0, "status": 200},
                )
            )
            if rnd.random() < 0.1:
                cycle.append(
                    ProbeResult(
                        probe="media",
                        target="h",
                        ok=True,
                        at=at,
                        duration=1.0,
                        jitter=rnd.uniform(0, 0.06),
                        loss=0.04,
                        mos=rnd.uniform(3.0, 4.4),
                        phases=(Phase("send", True, 1.0, ""),),
                        details={"sent": 50, "received": 48, "size": 172},
                    )
                )
            a = full.ingest(pid, cycle, at + 0.5)
            b = lean.ingest(pid, [undescribed(r) for r in cycle], at + 0.5)
            assert [(e.point, e.state, e.reason) for e in a] == [
                (e.point, e.state, e.reason) for e in b
            ]
            seen.update(e.state.value for e in a)
        for pid, h in full.points.items():
            other = lean.points[pid]
            assert (h.state, h.reason, h.metrics()) == (other.state, other.reason, other.metrics())
    assert {"up", "degraded", "down"} <= seen, seen  # the history went through them
