"""What an agent cannot do, and what the server survives, with the real broker in between.

Everything here goes through a real Mosquitto started from the shipped
``configs/mosquitto/`` (its per-agent ACL, its packet size limit) and, for TLS, a CA
made with ``openssl`` for the test:

- **ACL**: logged in as ``agent-a``, an agent can neither speak for ``agent-b``
  (results, status, assignment) nor read ``agent-b``'s assignment; the broker drops
  it silently (MQTT 3.1.1 has no way to say no), so the tests check what arrives on
  the other side, against a control message that does arrive.
- **The server's own check**: results that agent-a may publish (on its own topic) but
  for points not assigned to it are counted as ``not_assigned`` and change nothing.
- **Fuzzing what the server reads**: random bytes, truncated and mistyped batches,
  forged agent ids, replays, huge payloads, through the broker into a real
  :class:`~monitor.transport.server.BrokerTransport`: it never stops, every message
  is counted (accepted results plus rejections equal what was sent; a payload that
  cannot be read counts once), and a valid batch is still accepted afterwards.
- **TLS on both sides**: ``mqtts://`` with ``--ca-file``, then client certificates
  (``require_certificate``); a CA the agent does not know, or a missing client
  certificate, is one clear line, and the agent keeps retrying with backoff.

Lab block: 127.73.0.0/16.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.results import MAX_BATCH_BYTES, MAX_BATCH_RESULTS
from monitor.core.service import Monitor
from monitor.inventory import Inventory, parse_inventory
from monitor.inventory.load import from_source
from monitor.inventory.source import Source
from monitor.inventory.writer import to_yaml
from monitor.lab import Lab
from monitor.transport.assignment import encode_assignment, subset_document
from monitor.transport.mqtt import PASSWORD_ENV, agent_topic, connect_failure, parse_broker
from monitor.transport.server import BrokerTransport
from tests.commands.running import Running, hanoi_lab, start_run
from tests.helpers import CONFIGS, eventually
from tests.mosquitto import SERVER_USER, Broker, Pki

AGENT_A, AGENT_B = "agent-a", "agent-b"
#: the longest agent id there can be: the longest topic, so the largest packet for a batch
LONGEST = "agent-" + "x" * 58
USERS = {AGENT_A: "pw-agent-a", AGENT_B: "pw-agent-b", LONGEST: "pw-longest"}


def _max_packet() -> int:
    """The broker's limit in the shipped config: a larger packet ends the sender's session."""
    conf = (CONFIGS / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    found = re.search(r"^max_packet_size (\d+)$", conf, re.M)
    assert found is not None
    return int(found[1])


MAX_PACKET = _max_packet()


def _security_inventory() -> Inventory:
    """Three districts of three points: agent-a probes dist-a, agent-b dist-b, nobody dist-c."""

    def district(n: int, name: str) -> dict[str, Any]:
        rooms = [
            {"id": f"{name}.r{i}", "name": f"Room {i}", "host": f"127.73.200.{10 * n + 2 + i}"}
            for i in range(2)
        ]
        host = f"127.73.200.{10 * n + 1}"
        return {"id": name, "name": name, "host": host, "profile": "room", "points": rooms}

    data = {
        "monitor": {"interval": "1s", "stale_after": "30s"},
        "profiles": {"room": {"icmp": {}}},
        "points": [district(n, d) for n, d in enumerate(("dist-a", "dist-b", "dist-c"))],
        "agents": {
            "assign": "by-district",
            "districts": {AGENT_A: ["dist-a"], AGENT_B: ["dist-b"]},
        },
    }
    return from_source(Source(file="<security test>", data=data))


INV = _security_inventory()
MINE = sorted(p for p in INV.points if p.startswith("dist-a"))
THEIRS = sorted(p for p in INV.points if p.startswith("dist-b"))
NOBODYS = sorted(p for p in INV.points if p.startswith("dist-c"))


# --- the wire, written by hand (not by the encoder under test) -----------------------------


def result(point: str, at: float, probe: str = "icmp", ok: bool = True) -> dict[str, Any]:
    return {
        "point": point,
        "probe": probe,
        "at": at,
        "ok": ok,
        "rtt": 0.012 if ok else None,
        "jitter": None,
        "loss": 0.0 if ok else 1.0,
        "mos": None,
        "error": None if ok else "timeout",
    }


def batch(agent: str, seq: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"v": 1, "agent": agent, "seq": seq, "sent_at": time.time(), "results": results}


def wire(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def counted(monitor: Monitor) -> tuple[int, Counter[str]]:
    """(results accepted, rejected by reason), read from the exposition /metrics serves."""
    accepted, rejected = 0, Counter[str]()
    for family in text_string_to_metric_families(monitor.telemetry.render()):
        for s in family.samples:
            if s.name == "confmon_probes_total":
                accepted += int(s.value)
            elif s.name == "confmon_results_rejected_total":
                rejected[s.labels["reason"]] += int(s.value)
    return accepted, rejected


def client(broker: Broker, user: str, **kw: Any) -> aiomqtt.Client:
    password = broker.users[user]
    return aiomqtt.Client("127.0.0.1", broker.port, username=user, password=password, **kw)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker", USERS) as b:
        yield b


@dataclass
class Server:
    """A real monitor fed by a real BrokerTransport, in this process."""

    monitor: Monitor
    transport: BrokerTransport

    def alive(self) -> bool:
        """The broker session runs (it says ``connected`` false when it ends, however)."""
        return self.transport.connected


@contextlib.asynccontextmanager
async def in_process_server(broker: Broker, db: Path) -> AsyncIterator[Server]:
    monitor = Monitor(INV, state_db=db)
    await monitor.start()
    cfg = parse_broker(
        broker.url, username=SERVER_USER, env={PASSWORD_ENV: broker.users[SERVER_USER]}
    )
    transport = BrokerTransport(monitor, cfg)
    await transport.start()
    try:
        await eventually(lambda: transport.connected, 20, "the server connected to the broker")
        yield Server(monitor, transport)
    finally:
        await transport.stop()
        await monitor.stop()


@pytest.fixture
async def server(broker: Broker, tmp_path: Path) -> AsyncIterator[Server]:
    async with in_process_server(broker, tmp_path / "events.sqlite3") as s:
        yield s


# --- 1. the ACL --------------------------------------------------------------------------------


async def test_the_broker_refuses_an_agent_speaking_for_another_or_reading_its_plan(
    broker: Broker,
) -> None:
    seen: list[tuple[str, bytes]] = []

    async def watch() -> None:
        async with client(broker, SERVER_USER) as server:
            await server.subscribe("confmon/v1/agents/+/results", qos=1)
            await server.subscribe("confmon/v1/agents/+/status", qos=1)
            async for m in server.messages:
                assert isinstance(m.payload, bytes)
                seen.append((str(m.topic), m.payload))

    plans = {
        agent: encode_assignment(agent, 1, INV, points)
        for agent, points in ((AGENT_A, MINE), (AGENT_B, THEIRS))
    }
    async with client(broker, SERVER_USER) as server:
        for agent, plan in plans.items():
            await server.publish(agent_topic(agent, "assignment"), plan, qos=1, retain=True)
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.sleep(0.5)  # subscribed
        now = time.time()
        async with client(broker, AGENT_A) as a:
            # speaking for agent-b: results (also naming agent-b inside), its status, its plan
            forged = wire(batch(AGENT_B, 1, [result(THEIRS[0], now)]))
            await a.publish(agent_topic(AGENT_B, "results"), forged, qos=1)
            await a.publish(agent_topic(AGENT_B, "status"), b"offline", qos=1, retain=True)
            await a.publish(agent_topic(AGENT_B, "assignment"), plans[AGENT_A], qos=1, retain=True)
            # and writing its own plan, which only the server may
            await a.publish(agent_topic(AGENT_A, "assignment"), plans[AGENT_B], qos=1, retain=True)
            control = wire(batch(AGENT_A, 1, [result(MINE[0], now)]))
            await a.publish(agent_topic(AGENT_A, "results"), control, qos=1)
        await eventually(lambda: seen, 10, "agent-a's own results reach the server")
        await asyncio.sleep(1.0)  # anything the broker let through is well behind the control
        assert seen == [(agent_topic(AGENT_A, "results"), control)]
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await watcher

    # reading: agent-a gets its own plan (the server's, not the one it tried to write), never
    # agent-b's, however it subscribes; agent-b's plan is still the server's
    for agent, patterns in (
        (AGENT_A, [agent_topic(AGENT_B, "assignment"), "confmon/v1/agents/+/assignment", "#"]),
        (AGENT_B, [agent_topic(AGENT_B, "assignment")]),
    ):
        got: dict[str, bytes] = {}
        async with client(broker, agent) as c:
            for pattern in patterns:
                await c.subscribe(pattern, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.5):
                    async for m in c.messages:
                        assert isinstance(m.payload, bytes)
                        got[str(m.topic)] = m.payload
        assert got == {agent_topic(agent, "assignment"): plans[agent]}, agent


async def test_the_server_counts_and_drops_results_for_points_not_assigned_to_the_agent(
    broker: Broker, server: Server
) -> None:
    monitor = server.monitor
    before = {p: monitor.model.points[p].state for p in THEIRS + NOBODYS}
    seq, at = int(time.time() * 1000), time.time() - 5
    async with client(broker, AGENT_A) as a:
        for cycle in range(2):  # two cycles: enough for agent-a's own points to be judged up
            results = [result(p, at + cycle) for p in MINE + THEIRS + NOBODYS]
            payload = wire(batch(AGENT_A, seq + cycle, results))
            await a.publish(agent_topic(AGENT_A, "results"), payload, qos=1)
        # one of agent-b's points reported down by agent-a
        down = [result(THEIRS[0], at + 2, ok=False)]
        await a.publish(agent_topic(AGENT_A, "results"), wire(batch(AGENT_A, seq + 2, down)), qos=1)
    wrong = 2 * len(THEIRS + NOBODYS) + 1
    await eventually(
        lambda: counted(monitor)[1]["not_assigned"] >= wrong, 20, "the results counted"
    )
    await eventually(
        lambda: all(monitor.model.points[p].state.value == "up" for p in MINE),
        20,
        "agent-a's own points up",
    )
    accepted, rejected = counted(monitor)
    assert (accepted, dict(rejected)) == (2 * len(MINE), {"not_assigned": wrong})
    for p in THEIRS + NOBODYS:
        h = monitor.model.points[p]
        assert (h.state, h.reason, dict(h.latest)) == (before[p], "no result yet", {}), p
    listing = {a["agent"]: a for a in server.transport.listing()}
    assert listing[AGENT_A]["results_accepted"] == 2 * len(MINE)
    assert listing[AGENT_A]["results_rejected"] == wrong
    assert listing[AGENT_B]["results_accepted"] == listing[AGENT_B]["results_rejected"] == 0


# --- 2. fuzzing what the server reads -----------------------------------------------------------

#: JSON values of every shape
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)
#: a result: its point (own, another agent's, nobody's, unknown), probe, fresh or old, ok
result_specs = st.lists(
    st.tuples(
        st.sampled_from([*MINE, *THEIRS, NOBODYS[0], "no-such-point"]),
        st.sampled_from(["icmp", "sip", "media"]),
        st.booleans(),
        st.booleans(),
    ),
    max_size=30,
)
#: (where, value, reason): one field of a batch or of its first result made wrong
MUTATIONS: list[tuple[str, object, str]] = [
    ("v", 2, "version"),
    ("v", "1", "version"),
    ("v", None, "version"),
    ("-v", None, "version"),
    ("v", True, "schema"),  # true == 1 in Python: past the version check, not past the schema
    ("v", 1.0, "schema"),
    ("seq", "12", "schema"),
    ("seq", -1, "schema"),
    ("seq", 1.5, "schema"),
    ("-seq", None, "schema"),
    ("agent", 7, "schema"),
    ("agent", "agent-a/results", "schema"),
    ("agent", "", "schema"),
    ("agent", "a" * 65, "schema"),
    ("sent_at", "now", "schema"),
    ("sent_at", 0, "schema"),
    ("sent_at", 1764578000123, "schema"),  # milliseconds
    ("results", {}, "schema"),
    ("results", "[]", "schema"),
    ("results", [1], "schema"),
    ("results", None, "schema"),
    ("-results", None, "schema"),
    ("surplus", 1, "schema"),
    ("0.ok", "yes", "schema"),
    ("0.ok", None, "schema"),
    ("0.at", "2025-12-01T10:00:00Z", "schema"),
    ("0.at", 1764578000123.0, "schema"),
    ("0.rtt", -0.1, "schema"),
    ("0.rtt", "fast", "schema"),
    ("0.loss", 1.5, "schema"),
    ("0.mos", 0.5, "schema"),
    ("0.probe", "ftp", "schema"),
    ("0.point", "", "schema"),
    ("0.point", 5, "schema"),
    ("0.error", "e" * 1001, "schema"),
    ("0.details", [1, 2], "schema"),
    ("0.phases", "connect", "schema"),
    ("0.surplus", True, "schema"),
]
valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
messages = st.one_of(
    st.tuples(st.just("opaque"), st.binary(max_size=3000)),
    st.tuples(st.just("opaque"), json_values.map(lambda v: json.dumps(v).encode())),
    # a batch with arrays nested deeper than the decoder recurses, where the results go or
    # under a key of its own
    st.tuples(st.just("deep"), st.integers(900, 5000), st.sampled_from(["results", "surplus"])),
    st.tuples(st.just("truncated"), result_specs, st.floats(0.0, 0.999)),
    st.tuples(st.just("wrong"), st.sampled_from(MUTATIONS), result_specs),
    st.tuples(
        st.just("forged"),
        st.sampled_from([AGENT_B, "agent-zz"]) | valid_ids.filter(lambda a: a != AGENT_A),
        result_specs.filter(bool),
    ),
    st.tuples(st.just("valid"), result_specs.filter(bool)),
    st.tuples(st.just("replay"), result_specs.filter(bool)),
    st.tuples(st.just("bulk"), st.integers(1, 3000)),
)


@dataclass
class Rig:
    """The server, a publisher logged in as agent-a, and what the server must have counted.

    The expectation follows the ingest's rules from what was sent: a batch that cannot be
    read counts once; a readable one counts each of its results, under the reason the
    checks give in order (forged, replayed, unknown point, not assigned, outdated)."""

    server: Server
    publisher: aiomqtt.Client
    seq: int = field(default_factory=lambda: int(time.time() * 1000))
    #: result times: fresh ones count up from a minute ago; "old" ones are older still
    clock: float = field(default_factory=lambda: time.time() - 60)
    last_at: dict[tuple[str, str], float] = field(default_factory=dict)
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: messages counted once under one of these reasons, which exactly is the decoder's call
    unreadable: int = 0
    sent: int = 0

    UNREADABLE = ("malformed", "version", "schema")

    def results(self, specs: list[tuple[str, str, bool, bool]]) -> list[dict[str, Any]]:
        out = []
        for point, probe, fresh, ok in specs:
            self.clock += 0.001
            out.append(result(point, self.clock if fresh else self.clock - 3600, probe, ok))
        return out

    def readable(self, agent: str, results: list[dict[str, Any]], *, replay: bool) -> bytes:
        """A batch that decodes; the expectation follows the ingest's checks."""
        n = len(results)
        if agent != AGENT_A:
            self.rejected["forged"] += n
            return wire(batch(agent, self.seq + 1, results))
        if replay:
            self.rejected["replayed"] += n
            return wire(batch(agent, self.seq, results))
        self.seq += 1
        for r in results:
            key = (r["point"], r["probe"])
            previous = self.last_at.get(key)
            if r["point"] not in INV.points:
                self.rejected["unknown_point"] += 1
            elif r["point"] not in MINE:
                self.rejected["not_assigned"] += 1
            elif previous is not None and r["at"] <= previous:
                self.rejected["outdated"] += 1
            else:
                self.last_at[key] = r["at"]  # always in the past: the clock rule keeps it
                self.accepted += 1
        return wire(batch(agent, self.seq, results))

    def build(self, message: tuple[Any, ...]) -> bytes:
        kind = message[0]
        if kind == "opaque":
            self.unreadable += 1
            return bytes(message[1])
        if kind == "truncated":
            whole = wire(batch(AGENT_A, self.seq + 1, self.results(message[1])))
            self.rejected["malformed"] += 1
            return whole[: int(message[2] * len(whole))]
        if kind == "wrong":
            (where, value, reason), specs = message[1], message[2]
            results = self.results(specs or [(MINE[0], "icmp", True, True)])
            doc = batch(AGENT_A, self.seq + 1, results)
            target = doc["results"][0] if where.lstrip("-").startswith("0.") else doc
            name = where.lstrip("-").removeprefix("0.")
            if where.startswith("-"):
                del target[name]
            else:
                target[name] = value
            self.rejected[reason] += 1
            return wire(doc)
        if kind == "deep":
            doc = batch(AGENT_A, self.seq + 1, [])
            doc[message[2]] = "NESTED"
            self.unreadable += 1
            return wire(doc).replace(b'"NESTED"', b"[" * message[1] + b"]" * message[1])
        if kind == "forged":
            return self.readable(message[1], self.results(message[2]), replay=False)
        if kind in ("valid", "replay"):
            return self.readable(AGENT_A, self.results(message[1]), replay=kind == "replay")
        assert kind == "bulk"
        specs = [(MINE[i % 3], "icmp", True, True) for i in range(message[1])]
        return self.readable(AGENT_A, self.results(specs), replay=False)

    async def send(self, payload: bytes) -> None:
        await self.publisher.publish(agent_topic(AGENT_A, "results"), payload, qos=1, timeout=20)
        self.sent += 1

    async def checkpoint(self) -> None:
        """Send a valid batch after the others and wait until it reaches the health model;
        then the counts must be exact. Messages of one publisher on one topic arrive in
        order and are handled one at a time, so everything sent before it was handled."""
        await self.send(self.build(("valid", [(MINE[1], "icmp", True, True)])))
        at, latest = self.clock, self.server.monitor.model.points[MINE[1]].latest
        await eventually(
            lambda: "icmp" in latest and latest["icmp"].at == at,
            30,
            "a valid batch accepted after the others",
        )
        accepted, rejected = counted(self.server.monitor)
        assert accepted == self.accepted
        loose = {r: rejected[r] - self.rejected[r] for r in self.UNREADABLE}
        exact = {r: n for r, n in rejected.items() if r not in self.UNREADABLE}
        assert exact == {r: n for r, n in self.rejected.items() if n and r not in self.UNREADABLE}
        assert all(n >= 0 for n in loose.values()) and sum(loose.values()) == self.unreadable
        info = self.server.transport.agents[AGENT_A]
        want = self.accepted + sum(self.rejected.values()) + self.unreadable
        assert info.accepted + info.rejected == want, "the registry (/api/v1/agents) agrees"
        assert self.server.alive(), "the server's broker session is still running"


@pytest.fixture
async def rig(broker: Broker, server: Server) -> AsyncIterator[Rig]:
    async with client(broker, AGENT_A) as publisher:
        r = Rig(server, publisher)
        await r.checkpoint()
        yield r


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch_of=st.lists(messages, min_size=1, max_size=6))
async def test_the_server_survives_and_counts_whatever_an_agent_publishes(
    rig: Rig, batch_of: list[tuple[Any, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()
    for message in batch_of:
        await rig.send(rig.build(message))
    await rig.checkpoint()  # every message counted; a valid batch still accepted
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and not _unreadable(r)]


def _unreadable(record: logging.LogRecord) -> bool:
    """The server's line for a message the ingest raised on (see the next test)."""
    return "sent a message the server cannot read" in record.getMessage()


async def test_json_nested_too_deep_is_an_ordinary_malformed_message(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rig.rejected["malformed"] += 2
    for where in ("results", "surplus"):
        doc = batch(AGENT_A, rig.seq + 1, [])
        doc[where] = "NESTED"
        await rig.send(wire(doc).replace(b'"NESTED"', b"[" * 1000 + b"]" * 1000))
    await rig.checkpoint()
    assert not [r for r in caplog.records if _unreadable(r)]


async def test_the_largest_payloads_are_counted_and_one_over_the_broker_limit_never_arrives(
    rig: Rig, broker: Broker
) -> None:
    # a valid batch of exactly MAX_BATCH_BYTES: thousands of results, every one accepted
    results = rig.results([(MINE[i % 3], "icmp", True, False) for i in range(3500)])
    for r in results:
        r["error"] = "no answer; " * 90
    payload = rig.readable(AGENT_A, results, replay=False)
    assert len(payload) < MAX_BATCH_BYTES
    payload = payload[:-1] + b" " * (MAX_BATCH_BYTES - len(payload)) + b"}"
    await rig.send(payload)
    # one byte more: refused unread by the server (the broker lets it through)
    rig.rejected["oversized"] += 1
    await rig.send(payload[:-1] + b" }")
    # more results than a batch may hold, well within the byte limit
    rig.rejected["schema"] += 1
    many = [result(MINE[0], rig.clock)] * (MAX_BATCH_RESULTS + 1)
    await rig.send(wire(batch(AGENT_A, rig.seq + 1, many)))
    # nesting a million deep (closed, valid JSON), where the results go and under a key
    # nobody reads; and a few thousand deep, unclosed
    head = wire(batch(AGENT_A, rig.seq + 1, []))[:-3]  # without '[]}'
    deep = b"[" * 1_000_000 + b"]" * 1_000_000
    for nested in (head + deep + b"}", head + b'[],"x":' + deep + b"}", b"[" * 3000):
        rig.unreadable += 1
        await rig.send(nested)
    # one string of 4 MB: valid JSON, not a batch
    rig.rejected["schema"] += 1
    await rig.send(head + b'[],"x":"' + b"a" * (MAX_BATCH_BYTES - len(head) - 20) + b'"}')
    await rig.checkpoint()

    # over the broker's max_packet_size: the broker drops the publisher, the server sees nothing
    mark = broker.log.stat().st_size
    async with client(broker, AGENT_A, identifier="too-big") as big:
        sending = asyncio.ensure_future(
            big.publish(agent_topic(AGENT_A, "results"), b" " * MAX_PACKET, qos=1, timeout=30)
        )

        def refused() -> bool:
            with broker.log.open("rb") as f:
                f.seek(mark)
                return b"too-big disconnected due to oversize packet" in f.read()

        await eventually(refused, 30, "the broker refusing the oversized packet")
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await sending
        with pytest.raises(aiomqtt.MqttError):  # the client learns it lost the connection
            async with asyncio.timeout(20):
                async for _ in big.messages:
                    pass
    await rig.checkpoint()


async def test_a_batch_of_the_largest_size_passes_the_broker_from_the_longest_agent_id(
    broker: Broker, server: Server
) -> None:
    """The shipped max_packet_size leaves room for the topic of a 64-character agent id."""
    assert len(LONGEST) == 64
    results = [result(MINE[0], time.time() - 10 + i / 1000) for i in range(20_000)]
    payload = wire(batch(LONGEST, 1, results))
    assert len(payload) < MAX_BATCH_BYTES
    payload = payload[:-1] + b" " * (MAX_BATCH_BYTES - len(payload)) + b"}"
    async with client(broker, LONGEST) as agent:
        await agent.publish(agent_topic(LONGEST, "results"), payload, qos=1, timeout=30)
    # it arrived: the server read it, and refused it (that agent has no points)
    await eventually(
        lambda: counted(server.monitor)[1]["unknown_agent"] == len(results),
        30,
        "the batch counted at the server",
    )


# --- 3. TLS ------------------------------------------------------------------------------------

HANOI = hanoi_lab("127.73.0.1", interval=1.0, stale_after=10.0)
#: one district of the lab, flat: what one agent probes
TLS_POINTS = [p.id for p in HANOI.points.values() if p.district == "ba-dinh"]


def _tls_inventory() -> Inventory:
    doc = subset_document(HANOI, TLS_POINTS)
    assert doc is not None
    return parse_inventory(json.dumps(doc), "tls.yaml")


TLS_INV = _tls_inventory()


async def _agent(
    tmp_path: Path, broker: Broker, agent: str, *args: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, Path]:
    log = tmp_path / f"{agent}.log"
    command = ["-m", "monitor", "agent", "--broker", broker.url, "--id", agent, *args]
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        )
    return proc, log


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


async def _stop(proc: asyncio.subprocess.Process, log: Path) -> str:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), 30)
    text = _read(log)
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return text


@contextlib.asynccontextmanager
async def tls_setup(
    tmp_path: Path, broker: Broker, server_args: list[str], agent_args: list[str], env: bool
) -> AsyncIterator[Running]:
    """The lab, a ``confmon server`` and one ``confmon agent`` (agent-a), over ``broker``."""
    (tmp_path / "lab-hanoi.yaml").write_text(
        to_yaml(TLS_INV) + "agents:\n  assign: balanced\n", encoding="utf-8"
    )
    async with Lab(TLS_INV, seed=3):
        server = await start_run(
            tmp_path,
            TLS_INV,
            "--broker",
            broker.url,
            *server_args,
            command="server",
            name="server",
            env={PASSWORD_ENV: broker.users[SERVER_USER]} if env else None,
        )
        agent_env = {PASSWORD_ENV: USERS[AGENT_A]} if env else None
        agent, log = await _agent(tmp_path, broker, AGENT_A, *agent_args, env=agent_env)
        try:
            yield server
        finally:
            await _stop(agent, log)
            code = await server.stop(within=30)
            await server.session.close()
            assert code == 0, server.log()[-3000:]
            assert "Traceback" not in server.log()


async def _flows(server: Running) -> None:
    await server.wait_all_up(len(TLS_POINTS), within=60)
    agents = {a["agent"]: a for a in (await server.get("/api/v1/agents"))["agents"]}
    assert agents[AGENT_A]["online"] and agents[AGENT_A]["results_accepted"] > 0
    assert agents[AGENT_A]["results_rejected"] == 0


async def test_agent_and_server_over_tls_with_a_ca_file_and_passwords(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    with Broker(tmp_path / "broker", USERS, tls=pki) as broker:
        assert broker.url.startswith("mqtts://127.0.0.1:")
        ca = ["--ca-file", str(pki.ca)]
        async with tls_setup(tmp_path, broker, ca, ca, env=True) as server:
            await _flows(server)


async def test_agent_and_server_over_tls_with_client_certificates(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    certs = {name: pki.issue(name) for name in (SERVER_USER, AGENT_A)}

    def args(name: str) -> list[str]:
        cert, key = certs[name]
        return ["--ca-file", str(pki.ca), "--cert", str(cert), "--key", str(key)]

    # no password anywhere: the certificate's CN is the user name the ACL sees
    with Broker(tmp_path / "broker", {}, tls=pki, client_certs=True) as broker:
        async with tls_setup(tmp_path, broker, args(SERVER_USER), args(AGENT_A), env=False) as s:
            await _flows(s)


async def test_a_broker_the_agent_cannot_trust_is_one_line_and_retried_with_backoff(
    tmp_path: Path,
) -> None:
    """Three agents that cannot get in: one knows another CA, one has no client certificate,
    one has a certificate of another CA. Each says why in one line and keeps trying. So does
    a server that knows another CA, and its status API says why no results arrive."""
    pki, other = Pki(tmp_path / "pki"), Pki(tmp_path / "other", "someone else's CA")
    stranger_cert, stranger_key = other.issue("agent-c")
    server_cert, server_key = pki.issue(SERVER_USER)
    cases = {
        "agent-a": (["--ca-file", str(other.ca)], "check --ca-file"),
        "agent-b": (["--ca-file", str(pki.ca)], "client certificate"),
        "agent-c": (
            ["--ca-file", str(pki.ca), "--cert", str(stranger_cert), "--key", str(stranger_key)],
            "does not accept this client certificate",
        ),
    }
    attempts = {
        "agent-a": "alert unknown ca",  # the broker's side of the agent's refusal
        "agent-b": "peer did not return a certificate",
        "agent-c": "certificate verify failed",
    }
    with Broker(tmp_path / "broker", {}, tls=pki, client_certs=True) as broker:
        procs = {
            agent: await _agent(tmp_path, broker, agent, *args, "--no-icmp")
            for agent, (args, _) in cases.items()
        }
        server = await start_run(
            tmp_path,
            TLS_INV,
            "--broker",
            broker.url,
            *("--ca-file", str(other.ca), "--cert", str(server_cert), "--key", str(server_key)),
            command="server",
            name="server",
        )

        def tried_twice() -> bool:
            text = _read(broker.log)
            return all(text.count(mark) >= 2 for mark in attempts.values())

        try:
            # the slowest (no certificate) only learns it when the connect times out (10 s)
            await eventually(tried_twice, 60, "every agent retrying")
            assert all(p.returncode is None for p, _ in procs.values()), "still running"
            status = (await server.get("/api/v1/status"))["broker"]
        finally:
            # together: one stuck in a connect (up to 10 s) does not hold up the others
            stopping = asyncio.gather(*(_stop(*p) for p in procs.values()))
            code = await server.stop(within=30)
            logs = dict(zip(procs, await stopping, strict=True))
            await server.session.close()
        assert code == 0, server.log()[-3000:]
    assert status["broker_connected"] is False
    assert "TLS: certificate verify failed" in status["broker_error"], status
    assert "check --ca-file" in status["broker_error"], status
    said = [json.loads(line) for line in server.log().splitlines()]
    loud = [e["message"] for e in said if e["level"] in ("warning", "error", "critical")]
    assert len(loud) == 1 and "TLS: certificate verify failed" in loud[0], loud
    text = _read(broker.log)
    for agent, (_, hint) in cases.items():
        lines = [line for line in logs[agent].splitlines() if "WARNING" in line or "ERROR" in line]
        assert len(lines) == 1, logs[agent]
        assert "TLS" in lines[0] and hint in lines[0], lines[0]
        assert text.count(attempts[agent]) < 20, "backoff, not a tight loop"


@pytest.mark.parametrize(
    ("why", "socket_error", "said"),
    [
        (
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch, "
            "certificate is not valid for '127.73.0.9'. (_ssl.c:1006)",
            None,
            "TLS: certificate verify failed: IP address mismatch, certificate is not valid for "
            "'127.73.0.9'; the broker's certificate is not for the host in --broker",
        ),
        (
            "Operation timed out",
            "failed to receive on socket: [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad "
            "certificate (_ssl.c:2580)",
            "TLS: sslv3 alert bad certificate; the broker does not accept this client certificate",
        ),
        (
            "[code:135] Not authorized",
            None,
            "[code:135] Not authorized: the broker refused this user name and password",
        ),
        (
            # TLS 1.3: the broker may hang up instead of sending its alert
            "EOF occurred in violation of protocol (_ssl.c:2427)",
            None,
            "TLS: the broker closed the connection in the handshake; it requires a client "
            "certificate (--cert, --key) or does not accept this client certificate",
        ),
        ("[Errno 111] Connection refused", None, "[Errno 111] Connection refused"),
        ("Operation timed out", None, "Operation timed out"),
        ("Disconnected during message iteration", None, "connection lost"),
    ],
)
def test_why_the_broker_cannot_be_used_is_said_with_what_to_check(
    why: str, socket_error: str | None, said: str
) -> None:
    assert connect_failure(why, socket_error) == said
