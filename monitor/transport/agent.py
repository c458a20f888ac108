"""``confmon agent``: probes its share of the points and publishes the results over MQTT.

The agent is the local transport (the same scheduler and probes as ``confmon run``,
on their own thread) with an MQTT connection instead of the health model:

- **Its points** come from the server's retained assignment
  (``confmon/v1/agents/{id}/assignment``, see :mod:`monitor.transport.assignment`),
  applied without a restart when a new version arrives (unchanged points keep their
  schedule), or from a local config (``-c FILE``), in which case it probes every
  point of the file and the server accepts the ones it assigned to it.
- **Results** are *described* (with their phases and details) when they are news: a
  failure, a change, or once a minute per probe (:class:`~monitor.core.results.Describer`);
  the others carry the contract's figures and the packet counts, a third of the size.
- **Results** leave in batches, one message per batch (QoS 1, at most
  :data:`BATCH_RESULTS` results), gathered for :data:`LINGER` seconds so that a busy
  agent sends a few large messages a second, not one per point. Each batch has a
  sequence number one above the last; a batch whose acknowledgement was lost is sent
  again with the *same* number, so the server drops the copy (``replayed``) instead
  of counting it twice.
- **Status**: ``online`` (retained) once connected; the broker publishes the last will
  ``offline`` (retained) when the connection dies; a clean stop says ``offline`` itself.
- **Broker unreachable**: probing goes on; results wait in the :class:`Outbox`, a
  bounded buffer (``--buffer`` results; the oldest are dropped first and counted), and
  are published on reconnect with their original times (the server's clock rule then
  keeps them from making a point look fresh). Reconnects back off exponentially with
  full jitter (:class:`~monitor.backoff.Backoff`). An outage is said once
  when it starts and once when it ends, with what was buffered and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from monitor.core.results import (
    DESCRIBE_EVERY,
    MAX_BATCH_BYTES,
    Describer,
    ProbeResult,
    ResultBatch,
    encode_batch,
)
from monitor.errors import ConfmonError
from monitor.inventory import Inventory
from monitor.transport.assignment import AssignmentError, decode_assignment
from monitor.transport.local import LocalTransport
from monitor.transport.mqtt import Backoff, BrokerConfig, WireLog, agent_topic, connect_failure

__all__ = ["BATCH_RESULTS", "LINGER", "Agent", "AgentOptions", "Outbox"]

log = logging.getLogger("confmon")

#: most results in one message (about 200 bytes each on the wire; described ones 600)
BATCH_RESULTS = 2000
#: how long results gather before a batch leaves
LINGER = 0.2
#: how long one publish may wait for the broker's acknowledgement
PUBLISH_TIMEOUT = 10.0
#: keep-alive: a dead agent's last will is published within 1.5 x this
KEEPALIVE = 15

Pair = tuple[str, ProbeResult]


class Outbox:
    """Results waiting for the broker: at most ``limit``, the oldest dropped first.

    Results are kept in runs of one point (a point's cycle, as the scheduler hands them
    over), and a run is never cut: the server judges what one message brings of a point
    as one cycle, so half a failed icmp + sip cycle in one batch and half in the next
    would count twice towards ``fail_after``, and dropping half a cycle would leave a
    cycle without its icmp.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the outbox needs room for at least one result")
        self.limit = limit
        self._runs: deque[tuple[Pair, ...]] = deque()
        self._count = 0
        self.dropped = 0
        self.added = 0
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return self._count

    def add(self, pairs: Sequence[Pair]) -> None:
        self._runs.extend(runs(pairs))
        self._count += len(pairs)
        self.added += len(pairs)
        while self._count > self.limit and len(self._runs) > 1:
            oldest = self._runs.popleft()
            self._count -= len(oldest)
            self.dropped += len(oldest)
        if self._runs:
            self.ready.set()

    def take(self, most: int) -> tuple[Pair, ...]:
        """The oldest runs, up to ``most`` results (one run, however long, at least)."""
        out: list[Pair] = []
        while self._runs and (not out or len(out) + len(self._runs[0]) <= most):
            out.extend(self._runs.popleft())
        self._count -= len(out)
        if not self._runs:
            self.ready.clear()
        return tuple(out)

    def give_back(self, pairs: Sequence[Pair]) -> None:
        """Put ``pairs`` (taken last) back at the front, in their order."""
        self._runs.extendleft(reversed(runs(pairs)))
        self._count += len(pairs)
        if self._runs:
            self.ready.set()


def runs(pairs: Sequence[Pair]) -> list[tuple[Pair, ...]]:
    """``pairs`` cut where the point changes."""
    out: list[tuple[Pair, ...]] = []
    start = 0
    for i in range(1, len(pairs) + 1):
        if i == len(pairs) or pairs[i][0] != pairs[start][0]:
            out.append(tuple(pairs[start:i]))
            start = i
    return out


def halfway(pairs: Sequence[Pair]) -> int:
    """Where to cut ``pairs`` in two near the middle, between two points if there is such
    a place (a batch too large for one message)."""
    half = len(pairs) // 2
    bounds = [i for i in range(1, len(pairs)) if pairs[i][0] != pairs[i - 1][0]]
    return min(bounds, key=lambda i: abs(i - half)) if bounds else max(1, half)


@dataclass
class AgentOptions:
    """What ``confmon agent`` was asked to do."""

    broker: BrokerConfig
    agent: str
    #: a local inventory instead of the server's assignment
    inventory: Inventory | None = None
    buffer: int = 100_000
    #: probes left out of every inventory (``--no-icmp``)
    disabled: frozenset[str] = frozenset()
    #: seconds between a steady probe's described results (``--describe-every``;
    #: :class:`~monitor.core.results.Describer`), 0 for every result
    describe_every: float = DESCRIBE_EVERY


@dataclass
class _Pending:
    seq: int
    payload: bytes
    count: int


@dataclass
class Agent:
    """One agent process's state; :meth:`run` until :meth:`stop`."""

    opts: AgentOptions
    outbox: Outbox = field(init=False)
    transport: LocalTransport | None = None
    version: int | None = None
    published: int = 0
    connected: bool = False
    _pending: _Pending | None = None
    _seq: int = field(default_factory=lambda: int(time.time() * 1000))
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _outage_since: float | None = None

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.opts.buffer)
        self.describe = Describer(self.opts.describe_every)

    @property
    def topic(self) -> str:
        return agent_topic(self.opts.agent, "results")

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "assignment": self.version,
            "points": len(self.transport.inv.points) if self.transport else 0,
            "published": self.published,
            "buffered": len(self.outbox) + (self._pending.count if self._pending else 0),
            "dropped": self.outbox.dropped,
        }

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- probing --------------------------------------------------------------------------

    def _deliver(self, batch: ResultBatch, received_at: float) -> object:
        describe = self.describe
        self.outbox.add([(pid, describe(pid, r)) for pid, r in batch.results])
        return None

    async def _apply(self, inv: Inventory | None) -> None:
        """Probe ``inv`` from now on (``None``: nothing)."""
        if inv is not None and self.opts.disabled:
            inv = inv.without_probes(self.opts.disabled)
        if inv is None:
            if self.transport is not None:
                await self.transport.stop()
                self.transport = None
            return
        if self.transport is None:
            transport = LocalTransport(inv, self._deliver, agent=self.opts.agent)
            await transport.start()
            self.transport = transport
        else:
            await self.transport.update(inv)
        self.describe.forget(set(inv.points))

    # --- the broker -----------------------------------------------------------------------

    async def run(self) -> None:
        """Probe and publish until :meth:`stop`; reconnects by itself."""
        if self.opts.inventory is not None:
            await self._apply(self.opts.inventory)
        backoff = Backoff()
        cfg = self.opts.broker
        wire = WireLog("agent")
        try:
            while not self._stop.is_set():
                client = aiomqtt.Client(
                    cfg.host,
                    cfg.port,
                    username=cfg.username,
                    password=cfg.password,
                    identifier=f"confmon-agent-{self.opts.agent}",
                    will=aiomqtt.Will(
                        agent_topic(self.opts.agent, "status"), b"offline", qos=1, retain=True
                    ),
                    tls_context=cfg.tls_context(),
                    logger=wire.logger,
                    timeout=PUBLISH_TIMEOUT,
                    keepalive=KEEPALIVE,
                )
                try:
                    await self._session(client, backoff)
                except aiomqtt.MqttError as exc:
                    self._lost(connect_failure(str(exc), wire.take()))
                if self._stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff.next())
        finally:
            if self.transport is not None:
                await self.transport.stop()

    async def _session(self, client: aiomqtt.Client, backoff: Backoff) -> None:
        async with client:
            status = agent_topic(self.opts.agent, "status")
            await client.publish(status, b"online", qos=1, retain=True)
            if self.opts.inventory is None:
                await client.subscribe(agent_topic(self.opts.agent, "assignment"), qos=1)
            self.connected = True
            self._found()
            backoff.reset()
            try:
                await _first(self._publish_loop(client), self._read_loop(client), self._stop.wait())
            finally:
                self.connected = False
            # a clean stop: stop probing (the transport hands over its last results), send
            # what is buffered (bounded), then say offline ourselves, since the broker
            # publishes the will only when a connection dies
            if self.transport is not None:
                await self.transport.stop()
                self.transport = None
            try:
                await asyncio.wait_for(self._flush(client), PUBLISH_TIMEOUT)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                left = self.stats()["buffered"]
                why = str(exc) or f"not acknowledged within {PUBLISH_TIMEOUT:g}s"
                log.warning("stopping with %d results not sent to the broker: %s", left, why)
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(status, b"offline", qos=1, retain=True, timeout=5.0)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            if self._pending is None:
                await self.outbox.ready.wait()
                await asyncio.sleep(LINGER)
            await self._publish_one(client)

    async def _publish_one(self, client: aiomqtt.Client) -> None:
        if self._pending is None:
            pairs = self.outbox.take(BATCH_RESULTS)
            if not pairs:
                return
            payload = self._encode(pairs)
            while len(payload) > MAX_BATCH_BYTES and len(pairs) > 1:
                # results with large details: send half now, the rest next (the server and
                # the broker refuse a message over the limit, and it would be sent for ever)
                half = halfway(pairs)
                self.outbox.give_back(pairs[half:])
                pairs = pairs[:half]
                payload = self._encode(pairs)
            if len(payload) > MAX_BATCH_BYTES:
                log.error(
                    "a result of %s is too large to send (%d bytes); dropped",
                    pairs[0][0],
                    len(payload),
                )
                self.outbox.dropped += 1
                return
            self._seq += 1
            self._pending = _Pending(self._seq, payload, len(pairs))
        pending = self._pending
        await client.publish(self.topic, pending.payload, qos=1, timeout=PUBLISH_TIMEOUT)
        self._pending = None
        self.published += pending.count

    def _encode(self, pairs: tuple[Pair, ...]) -> bytes:
        """The batch ``pairs`` would be, with the sequence number it would get."""
        return encode_batch(ResultBatch(self.opts.agent, self._seq + 1, time.time(), pairs))

    async def _flush(self, client: aiomqtt.Client) -> None:
        while self._pending is not None or len(self.outbox):
            await self._publish_one(client)

    async def _read_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            try:
                assignment = decode_assignment(bytes(payload), self.opts.agent)
            except AssignmentError as exc:
                log.error("%s; still probing assignment %s", exc, self.version)
                continue
            if self.version is not None and assignment.version <= self.version:
                continue
            try:
                await self._apply(assignment.inventory)
            except ConfmonError as exc:
                log.error("cannot apply assignment %d: %s", assignment.version, exc)
                continue
            self.version = assignment.version
            log.info("assignment %d: probing %d points", assignment.version, len(assignment.points))

    def _lost(self, why: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "broker %s unreachable (%s); probing goes on, results are buffered "
                "(up to %d) and sent on reconnect",
                self.opts.broker,
                why,
                self.opts.buffer,
            )

    def _found(self) -> None:
        if self._outage_since is not None:
            log.info(
                "broker %s reachable again after %.0fs; sending %d buffered results "
                "(%d dropped in all, the oldest first)",
                self.opts.broker,
                time.monotonic() - self._outage_since,
                len(self.outbox),
                self.outbox.dropped,
            )
            self._outage_since = None
        else:
            log.info("connected to broker %s as agent %s", self.opts.broker, self.opts.agent)


async def _first(*coros: Coroutine[Any, Any, object]) -> None:
    """Run ``coros`` until one ends; cancel the others; raise the error of the one that ended."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


def load_local(path: Path) -> Inventory:
    """The agent's local inventory (``-c FILE``)."""
    from monitor.inventory import load_inventory

    return load_inventory(path)
