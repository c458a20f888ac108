"""The server's side of MQTT: agents' results into the core, assignments out to the agents.

:class:`BrokerTransport` stands where the local transport stands in ``confmon run``:
the monitor core (ingest, health, event log, API) is the same, only the results
come from the broker. It

- subscribes to every agent's ``results`` and ``status`` (QoS 1) and hands each
  results message to :meth:`Ingest.accept_bytes <monitor.core.ingest.Ingest.accept_bytes>`
  with the agent the *topic* names (the broker's ACL makes the topic the proof of who
  sent it; a batch naming another agent is ``forged``);
- keeps the registry of agents (online, last seen, points, results accepted and
  rejected) behind ``confmon_agent_up``, ``confmon_agent_last_seen_timestamp_seconds``
  and ``/api/v1/agents``;
- shards the points (:func:`~monitor.transport.assignment.shard`) over the agents and
  publishes each one's retained, versioned assignment whenever its share changes: in
  ``balanced`` mode a lost agent's points move to the agents online at once; in
  ``by-district`` mode they stay with it;
- when an agent goes offline and its points stay with it (or no agent is left to take
  them), marks them ``unknown`` at once with the agent as the cause (``agent:ID``), so
  the screens say "monitoring gap: agent X offline", never ``down``.

Its session with the broker is persistent (a fixed client id, ``clean_session``
off): while the server restarts, the broker keeps the agents' QoS 1 batches for it.
When the broker itself is unreachable the server says so once, reconnects with
backoff, and the points go ``unknown`` after ``stale_after`` like any silent point;
``/api/v1/status`` and the dashboard show that the broker is the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from monitor.core.ingest import Ingest, IngestReport
from monitor.core.service import Monitor
from monitor.inventory import Inventory
from monitor.text import printable
from monitor.transport.assignment import encode_assignment, shard
from monitor.transport.mqtt import (
    TOPIC_ROOT,
    Backoff,
    BrokerConfig,
    WireLog,
    agent_topic,
    connect_failure,
    split_topic,
)

__all__ = ["AgentInfo", "BrokerTransport"]

log = logging.getLogger("confmon")

#: after an agent comes or goes, wait this long for others before re-sharding (start-up
#: brings every retained status at once: one re-shard, not thirty)
SETTLE = 0.5
#: bound on the broker's handshakes and acknowledgements
BROKER_TIMEOUT = 10.0


@dataclass
class AgentInfo:
    """What the server knows of one agent."""

    id: str
    online: bool = False
    since: float = 0.0
    last_seen: float = 0.0
    points: frozenset[str] = frozenset()
    version: int = 0
    accepted: int = 0
    rejected: int = 0
    #: the assignment is not yet published (the broker was away when it changed)
    dirty: bool = True

    def json(self, impaired: bool) -> dict[str, Any]:
        return {
            "agent": self.id,
            "online": self.online,
            "since": self.since or None,
            "last_seen": self.last_seen or None,
            "points": len(self.points),
            "assignment": self.version or None,
            "results_accepted": self.accepted,
            "results_rejected": self.rejected,
            "vantage": "impaired" if impaired else "ok",
        }


class BrokerTransport:
    """Results from agents over MQTT into ``monitor``; assignments out (module docstring).

    How points are shared out is the inventory's ``agents:`` section, re-read on reload.
    """

    def __init__(
        self,
        monitor: Monitor,
        broker: BrokerConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.monitor = monitor
        self.broker = broker
        self.inv = monitor.inv
        self._clock = clock
        self.agents: dict[str, AgentInfo] = {a: AgentInfo(a) for a in self.inv.agents.districts}
        self.connected = False
        self.broker_error: str | None = "not connected yet"
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._reshard_at: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._said_unreadable: set[str] = set()

    @property
    def ingest(self) -> Ingest:
        return self.monitor.ingest

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the broker session in the background (an unreachable broker is retried)."""
        self._reshard(self._clock())
        self._task = asyncio.get_running_loop().create_task(self._run(), name="confmon-broker")

    async def update(self, inv: Inventory) -> None:
        """A reloaded inventory: re-shard and tell the agents whose share changed."""
        self.inv = inv
        for agent in inv.agents.districts:
            self.agents.setdefault(agent, AgentInfo(agent))
        self._reshard(self._clock())

    async def stop(self) -> None:
        if self._reshard_at is not None:
            self._reshard_at.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, BROKER_TIMEOUT)

    def stats(self) -> dict[str, Any]:
        return {
            "broker": str(self.broker),
            "broker_connected": self.connected,
            "broker_error": self.broker_error,
            "agents_online": sum(a.online for a in self.agents.values()),
            "agents": len(self.agents),
        }

    def liveness(self) -> dict[str, tuple[bool, float]]:
        """agent -> (online, last seen): the ``confmon_agent_*`` metrics."""
        return {a.id: (a.online and self.connected, a.last_seen) for a in self.agents.values()}

    def listing(self) -> list[dict[str, Any]]:
        """``/api/v1/agents``."""
        impaired = self.ingest.vantages.impaired
        points = self.inv.points
        out = []
        for _, a in sorted(self.agents.items()):
            entry = a.json(a.id in impaired)
            entry["districts"] = sorted({points[p].district for p in a.points if p in points})
            out.append(entry)
        return out

    # --- the session ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        cfg = self.broker
        wire = WireLog("server")
        while True:
            client = aiomqtt.Client(
                cfg.host,
                cfg.port,
                username=cfg.username,
                password=cfg.password,
                identifier="confmon-server",
                clean_session=False,
                tls_context=cfg.tls_context(),
                logger=wire.logger,
                timeout=BROKER_TIMEOUT,
                keepalive=15,
            )
            try:
                async with client:
                    await client.subscribe(f"{TOPIC_ROOT}/+/results", qos=1)
                    await client.subscribe(f"{TOPIC_ROOT}/+/status", qos=1)
                    self._connected(client)
                    backoff.reset()
                    sender = asyncio.ensure_future(self._send_assignments(client))
                    try:
                        async for message in client.messages:
                            self._on_message(message)
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await sender
            except aiomqtt.MqttError as exc:
                self._lost(connect_failure(str(exc), wire.take()))
            finally:
                self._client = None
                self.connected = False
            await asyncio.sleep(backoff.next())

    def _connected(self, client: aiomqtt.Client) -> None:
        if self.broker_error is not None and self.broker_error != "not connected yet":
            log.info("broker %s reachable again", self.broker)
        else:
            log.info("connected to broker %s", self.broker)
        self._client = client
        self.connected = True
        self.broker_error = None
        for info in self.agents.values():
            info.dirty = True
        self._wake.set()

    def _lost(self, why: str) -> None:
        if self.broker_error is None or self.broker_error == "not connected yet":
            log.warning(
                "broker %s unreachable (%s): no results arrive; points turn unknown after "
                "stale_after; reconnecting",
                self.broker,
                why,
            )
        self.broker_error = f"broker {self.broker} unreachable: {why}"

    async def _send_assignments(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for info in list(self.agents.values()):
                if not info.dirty:
                    continue
                payload = encode_assignment(info.id, info.version, self.inv, info.points)
                await client.publish(
                    agent_topic(info.id, "assignment"), payload, qos=1, retain=True
                )
                info.dirty = False

    # --- messages -------------------------------------------------------------------------

    def _on_message(self, message: aiomqtt.Message) -> None:
        where = split_topic(str(message.topic))
        payload = message.payload
        now = self._clock()
        if where is None or not isinstance(payload, bytes | bytearray):
            return
        agent, kind = where
        if kind == "results":
            try:
                report = self.ingest.accept_bytes(bytes(payload), now, agent=agent)
            except Exception as exc:  # no payload may end the session (and every agent's results)
                report = self._unreadable(agent, exc)
            info = self.agents.get(agent)
            if info is not None:
                info.last_seen = now
                info.accepted += report.accepted + report.held
                info.rejected += sum(report.rejected.values())
        elif kind == "status":
            self._on_status(agent, bytes(payload), now)

    def _unreadable(self, agent: str, exc: Exception) -> IngestReport:
        """A message the ingest raised on instead of rejecting it (JSON nested a thousand
        deep made the decoder raise RecursionError): dropped and counted as ``malformed``,
        said once per agent, and the session goes on."""
        if agent not in self._said_unreadable:
            self._said_unreadable.add(agent)
            log.error(
                "agent %s sent a message the server cannot read (%s: %s); dropped and counted "
                "as malformed (said once per agent)",
                agent,
                type(exc).__name__,
                printable(str(exc), 200),
            )
        self.monitor.telemetry.rejected.labels("malformed").inc()
        return IngestReport(rejected=Counter(malformed=1))

    def _on_status(self, agent: str, payload: bytes, now: float) -> None:
        online = payload == b"online"
        if not online and payload != b"offline":
            log.debug("agent %s: status %r ignored", agent, payload[:40])
            return
        info = self.agents.get(agent)
        if info is None:
            if not online:
                return  # an agent we never knew, gone: nothing to do
            info = self.agents[agent] = AgentInfo(agent)
        info.last_seen = max(info.last_seen, now) if online else info.last_seen
        if info.online == online and info.since:
            return
        info.online, info.since = online, now
        if online:
            log.info("agent %s online", agent)
        else:
            log.warning("agent %s offline (%d points)", agent, len(info.points))
        self._schedule_reshard()

    # --- sharding -------------------------------------------------------------------------

    def _schedule_reshard(self) -> None:
        if self._reshard_at is not None:
            self._reshard_at.cancel()
        loop = asyncio.get_running_loop()
        self._reshard_at = loop.call_later(SETTLE, lambda: self._reshard(self._clock()))

    def _reshard(self, now: float) -> None:
        self._reshard_at = None
        p = self.inv.agents
        before = {a: info.points for a, info in self.agents.items()}
        online = [a.id for a in self.agents.values() if a.online]
        if p.assign == "by-district":
            shares = shard(self.inv, [], mode="by-district", districts_of=p.districts)
        else:
            shares = shard(self.inv, online, replicas=p.replicas)
        for agent, info in self.agents.items():
            share = shares.get(agent, frozenset())
            if not info.online and p.assign == "balanced":
                share = frozenset()
            if share != info.points:
                info.points = share
                info.version = max(info.version + 1, int(now * 1000))
                info.dirty = True
            if share:
                self.ingest.assign(agent, share)
            else:
                self.ingest.unassign(agent)
        covered = {pid for info in self.agents.values() if info.online for pid in info.points}
        for agent, info in self.agents.items():
            lost = sorted((before[agent] | info.points) - covered) if not info.online else []
            if lost and info.since:  # said offline (a status heard), not merely not heard yet
                # in the inventory's time zone, as every screen and message shows times
                zone = zoneinfo.ZoneInfo(self.monitor.inv.settings.timezone)
                since = datetime.datetime.fromtimestamp(info.since or now, zone).strftime(
                    "%H:%M:%S"
                )
                self.monitor.publish(
                    self.monitor.model.mark_gap(
                        lost, f"agent {agent} offline since {since}", f"agent:{agent}", now
                    )
                )
        self._wake.set()
