"""The agent against a real Mosquitto and the lab: batches, sequences, buffering, assignments."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from monitor.core.results import ProbeResult, ResultBatch, decode_batch
from monitor.inventory import Inventory, parse_inventory
from monitor.lab import Lab
from monitor.transport.agent import Agent, AgentOptions, Outbox, halfway
from monitor.transport.assignment import encode_assignment, subset_document
from monitor.transport.mqtt import agent_topic, parse_broker
from tests.commands.running import hanoi_lab
from tests.helpers import eventually as until
from tests.mosquitto import SERVER_USER, Broker

HANOI = hanoi_lab("127.71.0.1", interval=1.0, stale_after=10.0)
#: two districts of the lab: 30 points or so
POINTS = [p.id for p in HANOI.points.values() if p.district in ("ba-vi", "son-tay")]


def small(points: list[str]) -> Inventory:
    doc = subset_document(HANOI, points)
    assert doc is not None
    return parse_inventory(json.dumps(doc), "small.yaml")


class Collector:
    """The server's side, reduced to collecting what agents publish."""

    def __init__(self) -> None:
        self.batches: list[ResultBatch] = []
        self.status: dict[str, bytes] = {}

    @property
    def results(self) -> list[tuple[str, str, float]]:
        return [(p, r.probe, r.at) for b in self.batches for p, r in b.results]

    async def run(self, broker: Broker) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username=SERVER_USER, password=broker.users[SERVER_USER]
        ) as client:
            await client.subscribe("confmon/v1/agents/+/results", qos=1)
            await client.subscribe("confmon/v1/agents/+/status", qos=1)
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                if str(m.topic).endswith("/status"):
                    self.status[str(m.topic).split("/")[3]] = m.payload
                else:
                    self.batches.append(decode_batch(m.payload))


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    with Broker(tmp_path / "broker", {"agent-a": "secret-a"}) as b:
        yield b


@pytest.fixture
async def collector(broker: Broker) -> AsyncIterator[Collector]:
    c = Collector()
    task = asyncio.ensure_future(c.run(broker))
    await asyncio.sleep(0.3)
    yield c
    task.cancel()
    with pytest.raises((asyncio.CancelledError, aiomqtt.MqttError)):
        await task


def agent_for(broker: Broker, inv: Inventory | None, buffer: int = 100_000) -> Agent:
    cfg = parse_broker(broker.url, username="agent-a", env={"CONFMON_MQTT_PASSWORD": "secret-a"})
    return Agent(AgentOptions(broker=cfg, agent="agent-a", inventory=inv, buffer=buffer))


async def test_results_leave_in_batches_with_increasing_sequences(
    broker: Broker, collector: Collector
) -> None:
    inv = small(POINTS)
    async with Lab(inv, seed=3):
        agent = agent_for(broker, inv)
        task = asyncio.ensure_future(agent.run())
        try:
            await until(
                lambda: {p for p, _, _ in collector.results} >= set(POINTS), 30, "all points"
            )
            await until(lambda: collector.status.get("agent-a") == b"online", 10, "online")
        finally:
            agent.stop()
            await asyncio.wait_for(task, 30)
    seqs = [b.seq for b in collector.batches]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(b.agent == "agent-a" for b in collector.batches)
    assert len(collector.results) > 2 * len(collector.batches), "several points per message"
    await until(lambda: collector.status.get("agent-a") == b"offline", 10, "offline said on stop")
    assert agent.stats()["buffered"] == 0, "a clean stop sends what was buffered"


async def test_broker_away_results_are_buffered_and_sent_with_their_own_times(
    broker: Broker, collector: Collector, tmp_path: Path
) -> None:
    inv = small(POINTS)
    async with Lab(inv, seed=3):
        agent = agent_for(broker, inv)
        task = asyncio.ensure_future(agent.run())
        try:
            await until(lambda: len(collector.results) > 0, 30, "first results")
            broker.stop()
            await until(lambda: not agent.connected, 30, "the agent notices")
            await until(lambda: agent.stats()["buffered"] > 3 * len(POINTS), 60, "buffering")
            during = agent.outbox.added
            broker.start()
            # the collector's own connection died with the broker: a new one
            fresh = Collector()
            sub = asyncio.ensure_future(fresh.run(broker))
            await until(lambda: agent.connected, 60, "reconnect")
            await until(lambda: agent.stats()["buffered"] == 0, 60, "buffer drained")
            await until(lambda: agent.published >= during, 30, "everything probed is published")
        finally:
            agent.stop()
            await asyncio.wait_for(task, 30)
        await asyncio.sleep(0.5)
        sub.cancel()
    got = collector.results + fresh.results
    assert agent.outbox.dropped == 0
    assert len(set(got)) >= during, "nothing probed during the outage was lost"
    assert agent.published == agent.outbox.added


async def test_results_a_frozen_broker_never_took_are_said_at_stop(
    broker: Broker,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that keeps the connection open but acknowledges nothing (SIGSTOP): the agent
    still stops, within its bounds, and says how many results it could not send."""
    import monitor.transport.agent as agent_module

    monkeypatch.setattr(agent_module, "PUBLISH_TIMEOUT", 1.0)
    inv = small(POINTS)
    assert broker.proc is not None
    async with Lab(inv, seed=3):
        agent = agent_for(broker, inv)
        task = asyncio.ensure_future(agent.run())
        try:
            await until(lambda: len(collector.results) > 0, 30, "first results")
            broker.proc.send_signal(signal.SIGSTOP)
            await until(lambda: agent.stats()["buffered"] > 0, 30, "results waiting")
            agent.stop()
            await asyncio.wait_for(task, 30)
        finally:
            broker.proc.send_signal(signal.SIGCONT)
    [line] = [r.getMessage() for r in caplog.records if "not sent to the broker" in r.getMessage()]
    assert line.startswith("stopping with ") and int(line.split()[2]) > 0, line


async def test_a_full_buffer_drops_the_oldest_and_counts_them(broker: Broker) -> None:
    inv = small(POINTS)
    async with Lab(inv, seed=3):
        broker.stop()
        agent = agent_for(broker, inv, buffer=100)
        task = asyncio.ensure_future(agent.run())
        try:
            await until(lambda: agent.outbox.dropped > 0, 60, "the buffer overflows")
            # whole cycles are dropped: up to one cycle (icmp + sip here) under the bound
            assert 98 <= len(agent.outbox) <= 100
            oldest = agent.outbox.take(1)[0][1].at
            assert agent.outbox.added - agent.outbox.dropped - 1 <= 100
        finally:
            agent.stop()
            await asyncio.wait_for(task, 30)
    assert oldest > 0


async def test_the_assignment_decides_what_is_probed_and_changes_without_a_restart(
    broker: Broker, collector: Collector
) -> None:
    inv = small(POINTS)
    first, second = POINTS[:10], POINTS[10:14]
    async with (
        Lab(inv, seed=3),
        aiomqtt.Client(
            "127.0.0.1", broker.port, username=SERVER_USER, password=broker.users[SERVER_USER]
        ) as server,
    ):
        topic = agent_topic("agent-a", "assignment")
        await server.publish(
            topic, encode_assignment("agent-a", 1, HANOI, first), qos=1, retain=True
        )
        agent = agent_for(broker, None)
        task = asyncio.ensure_future(agent.run())
        try:
            await until(lambda: agent.version == 1, 30, "assignment 1 applied")
            await until(lambda: {p for p, _, _ in collector.results} >= set(first), 30, "probing 1")
            await server.publish(
                topic, encode_assignment("agent-a", 2, HANOI, second), qos=1, retain=True
            )
            await until(lambda: agent.version == 2, 30, "assignment 2 applied")
            mark = len(collector.batches)
            await until(lambda: len(collector.batches) > mark + 3, 30, "batches under 2")
            await asyncio.sleep(1.5)
            late = {p for b in collector.batches[mark + 3 :] for p, _ in b.results}
            assert late and late <= set(second), "only the new share is probed"
            # an older version (a stale retained copy) and garbage change nothing
            await server.publish(topic, encode_assignment("agent-a", 1, HANOI, first), qos=1)
            await server.publish(topic, b"\x00garbage", qos=1)
            await asyncio.sleep(1.0)
            assert agent.version == 2
        finally:
            agent.stop()
            await asyncio.wait_for(task, 30)


async def test_a_batch_over_the_size_limit_is_split_not_sent_for_ever() -> None:
    """Results with large phases would make a 2,000-result message of tens of MB, which the
    broker and the server refuse: the agent sends it in halves that fit."""
    from monitor.core.results import MAX_BATCH_BYTES, Phase, ProbeResult, decode_batch

    class Client:
        def __init__(self) -> None:
            self.sizes: list[int] = []
            self.results = 0

        async def publish(self, topic: str, payload: bytes, **_: object) -> None:
            self.sizes.append(len(payload))
            self.results += len(decode_batch(payload).results)

    cfg = parse_broker("mqtt://127.0.0.1:1")
    agent = Agent(AgentOptions(broker=cfg, agent="agent-a", inventory=None))
    phases = tuple(Phase(f"step{i}", True, 0.001, "x" * 1000) for i in range(32))
    big = ProbeResult(
        probe="http", target="", ok=True, at=1_796_000_000.0, duration=0.1, phases=phases
    )
    agent.outbox.add([(f"p{i}", big) for i in range(300)])
    client = Client()
    while len(agent.outbox):
        await agent._publish_one(client)  # type: ignore[arg-type]
    assert client.results == 300 and agent.outbox.dropped == 0
    assert max(client.sizes) <= MAX_BATCH_BYTES and len(client.sizes) > 2


def _cycle(point: str, ok: bool, at: float) -> list[tuple[str, ProbeResult]]:
    return [
        (point, ProbeResult(probe=probe, target="", ok=ok, at=at, duration=0.01))
        for probe in ("icmp", "sip")
    ]


def test_the_outbox_never_cuts_a_points_cycle_in_two() -> None:
    """A batch boundary or an overflow inside a point's cycle would make the server judge
    half a cycle as a whole one (two failures towards fail_after instead of one)."""
    box = Outbox(limit=7)
    box.add(_cycle("p1", True, 1.0) + _cycle("p2", False, 1.0))
    box.add(_cycle("p3", False, 1.0))
    assert [p for p, _ in box.take(3)] == ["p1", "p1"]  # the next cycle would not fit
    assert [p for p, _ in box.take(5)] == ["p2", "p2", "p3", "p3"]
    box.add(_cycle("p1", True, 2.0) + _cycle("p2", True, 2.0))
    box.add(_cycle("p3", True, 2.0) + _cycle("p4", True, 2.0))  # 8 > 7: p1's cycle goes
    assert box.dropped == 2 and len(box) == 6
    taken = box.take(1)  # one cycle at least, whole
    assert [(p, r.probe) for p, r in taken] == [("p2", "icmp"), ("p2", "sip")]
    box.give_back(taken)
    assert [p for p, _ in box.take(100)] == ["p2", "p2", "p3", "p3", "p4", "p4"]
    assert len(box) == 0 and not box.ready.is_set()


def test_a_batch_too_large_for_one_message_is_cut_between_points() -> None:
    pairs = _cycle("p1", True, 1.0) + _cycle("p2", True, 1.0) + _cycle("p3", True, 1.0)
    assert halfway(pairs) in (2, 4)
    assert halfway(_cycle("p1", True, 1.0)) == 1  # one cycle only: cut it rather than fail
