"""Agents, a server and a real Mosquitto against the lab: the distributed mode end to end.

Three ``confmon agent`` processes and one ``confmon server`` report through the shipped
broker config (with its per-agent ACL). The lab runs as its own process. Lab block:
127.72.0.0/16.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from monitor.inventory.writer import to_yaml
from tests.commands.running import Running, count_events, hanoi_lab, lab_process, start_run, until
from tests.helpers import require_binary, require_root
from tests.mosquitto import SERVER_USER, Broker
from tests.prometheus import prometheus
from tests.test_dashboards_e2e import check_server_panels
from tests.test_rules import RULES

INV = hanoi_lab("127.72.0.1", interval=2.0, stale_after=10.0)
N = len(INV.points)
AGENTS = ["agent-1", "agent-2", "agent-3"]
#: the group of the agent whose uplink a test cuts (nogroup): only its sockets carry it
MARK_GID = 65534


def _mark() -> None:
    os.setgroups([])
    os.setgid(MARK_GID)


class Agents:
    def __init__(self, broker: Broker, tmp_path: Path) -> None:
        self.broker = broker
        self.tmp_path = tmp_path
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, agent: str, marked: bool = False) -> None:
        """Start ``agent``; ``marked``: with the group id :data:`MARK_GID` (still root), so
        that nftables can tell its packets from the others' (see :func:`cut_uplink`)."""
        extra: list[str] = []
        preexec = _mark if marked else None
        with (self.tmp_path / f"{agent}.log").open("ab") as log:
            self.procs[agent] = await self._spawn(agent, extra, preexec, log)

    async def _spawn(
        self, agent: str, extra: list[str], preexec: Callable[[], None] | None, log: IO[bytes]
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            "agent",
            "--broker",
            self.broker.url,
            "--id",
            agent,
            "--log-format",
            "json",
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            env={"CONFMON_MQTT_PASSWORD": self.broker.users[agent], "PATH": "/usr/bin:/bin"},
            preexec_fn=preexec,
        )

    def log(self, agent: str) -> str:
        return (self.tmp_path / f"{agent}.log").read_text(encoding="utf-8")

    async def stop_all(self) -> None:
        """SIGTERM to every agent at once; one that has not ended within 30 s is killed
        (so that nothing outlives the test) and fails it with the end of its log."""
        running = {a: p for a, p in self.procs.items() if p.returncode is None}
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(
            *(asyncio.wait_for(p.wait(), 30) for p in running.values()), return_exceptions=True
        )
        for proc in running.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for (agent, _), code in zip(running.items(), codes, strict=True):
            assert code == 0, f"{agent}: {code!r}\n" + self.log(agent)[-2000:]
            assert "Traceback" not in self.log(agent)


@contextlib.asynccontextmanager
async def distributed(
    tmp_path: Path, agents_section: str, marked: frozenset[str] = frozenset()
) -> AsyncIterator[tuple[Running, Agents, Broker]]:
    config = tmp_path / "lab-hanoi.yaml"
    config.write_text(to_yaml(INV) + agents_section, encoding="utf-8")
    with Broker(tmp_path / "broker", {a: f"pw-{a}" for a in AGENTS}) as broker:
        async with lab_process(tmp_path, INV):
            server = await start_run(
                tmp_path,
                INV,
                "--broker",
                broker.url,
                command="server",
                name="server",
                env={"CONFMON_MQTT_PASSWORD": broker.users[SERVER_USER]},
            )
            agents = Agents(broker, tmp_path)
            try:
                for a in AGENTS:
                    await agents.start(a, marked=a in marked)
                yield server, agents, broker
            finally:
                try:
                    await agents.stop_all()
                finally:
                    code = await server.stop(within=30)
                    await server.session.close()
                assert code == 0, server.log()[-3000:]
                assert "Traceback" not in server.log()


async def listing(server: Running) -> dict[str, dict[str, object]]:
    return {a["agent"]: a for a in (await server.get("/api/v1/agents"))["agents"]}


async def test_three_agents_share_the_points_and_a_killed_one_is_replaced_without_alarms(
    tmp_path: Path,
) -> None:
    async with (
        distributed(tmp_path, "agents:\n  assign: balanced\n") as (server, agents, broker),
        prometheus(tmp_path, [server.base.removeprefix("http://")], rule_files=[RULES]) as prom,
    ):
        scraped_from = time.time()
        await server.wait_all_up(N, within=90)
        shares = await listing(server)
        assert {a for a, v in shares.items() if v["online"]} == set(AGENTS)
        assert sum(int(v["points"]) for v in shares.values()) == N  # type: ignore[call-overload]
        districts = [d for v in shares.values() for d in v["districts"]]  # type: ignore[attr-defined]
        assert sorted(districts) == sorted(INV.roots), "whole districts, each to one agent"
        metrics = await server.session.get(f"{server.base}/metrics")
        text = await metrics.text()
        assert 'confmon_agent_up{agent="agent-1"} 1.0' in text

        agents.procs["agent-3"].kill()  # kill -9: the broker publishes its last will
        await agents.procs["agent-3"].wait()

        async def moved() -> bool:
            now = await listing(server)
            return not now["agent-3"]["online"] and now["agent-3"]["points"] == 0

        await until(moved, 20, "agent-3 offline and its points moved")
        await asyncio.sleep(3 * INV.settings.interval)
        assert (await server.states()).get("up") == N, "the others probe agent-3's points"
        for state in ("down", "unreachable", "unknown"):
            assert count_events(server.state_db, state=state) == 0, state
        # the Grafana panels of the agents, and the AgentLost rule, from a real Prometheus
        await check_server_panels(prom, scraped_from, time.time(), lost="agent-3")

        # the broker goes away for 15 s and comes back: no false down, everyone reconnects
        broker.stop()
        await asyncio.sleep(15)
        broker.start()
        await server.wait_all_up(N, within=90)
        assert count_events(server.state_db, state="down") == 0
        assert count_events(server.state_db, state="unreachable") == 0
        status = await server.get("/api/v1/status")
        assert status["broker"]["broker_connected"] is True


@pytest.mark.parametrize("replicas", [2])
async def test_two_vantages_keep_points_up_when_one_agents_uplink_is_cut(
    tmp_path: Path, replicas: int
) -> None:
    require_root("cutting one agent's uplink with nftables")
    nft = require_binary("nft")
    section = f"agents:\n  assign: balanced\n  replicas: {replicas}\n"
    async with distributed(tmp_path, section, frozenset({"agent-1"})) as (server, _agents, _):
        await server.wait_all_up(N, within=90)
        shares = await listing(server)
        assert sum(int(v["points"]) for v in shares.values()) == 2 * N  # type: ignore[call-overload]
        # agent-1's own uplink: its probes of every point fail (nothing answers it), while
        # it still reaches the broker: its packets to the lab block are dropped
        with cut_uplink(nft, MARK_GID, "127.72.0.0/16"):

            async def flagged() -> bool:
                return (await listing(server))["agent-1"]["vantage"] == "impaired"

            await until(flagged, 60, "agent-1 reported as an impaired vantage")
            await asyncio.sleep(3 * INV.settings.interval)
            assert (await server.states()).get("up") == N
            assert count_events(server.state_db, state="down") == 0
            assert count_events(server.state_db, state="unreachable") == 0


@contextlib.contextmanager
def cut_uplink(nft: str, gid: int, block: str) -> Iterator[None]:
    """Drop every packet that processes of group ``gid`` send to ``block`` (an nftables table
    of its own, deleted on exit): that agent has lost its path to the rooms."""
    table = f"confmon_cut_{os.getpid()}"
    rules = (
        f"table inet {table} {{\n  chain out {{\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    meta skgid {gid} ip daddr {block} drop\n  }}\n}}\n"
    )
    subprocess.run([nft, "-f", "-"], input=rules.encode(), check=True)
    try:
        yield
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=True)


async def test_a_lost_agent_is_one_monitoring_gap_message_not_an_alarm_per_room(
    tmp_path: Path,
) -> None:
    """by-district: a killed agent's points are a gap (unknown, cause agent:ID). A receiver
    that asks for unknown gets ONE gap message for its rooms and one when they are back;
    no room is reported down."""
    from tests.alerts.receiver import Receiver as Hook

    roots = list(INV.roots)
    thirds = {a: roots[i::3] for i, a in enumerate(AGENTS)}
    lost = sum(1 + len(INV.descendants(d)) for d in thirds["agent-3"])
    async with Hook() as hook:
        section = (
            "agents: {assign: by-district, districts: "
            + json.dumps(thirds)
            + "}\nalerts: {group_wait: 1s, receivers: [{name: noc, url: '"
            + hook.url
            + "', format: slack, states: [down, unreachable, unknown]}]}\n"
        )
        async with distributed(tmp_path, section) as (server, agents, _):
            await server.wait_all_up(N, within=90)
            agents.procs["agent-3"].kill()
            await agents.procs["agent-3"].wait()
            (gap,) = await hook.wait_for(1, 60)
            await asyncio.sleep(3 * INV.settings.interval)
            assert len(hook.arrivals) == 1, [a.json()["text"] for a in hook.arrivals]
            text = gap.json()["text"]
            assert text.startswith("⚪ ") and "MẤT GIÁM SÁT · agent agent-3" in text, text
            assert f"{lost} điểm không có dữ liệu" in text, text
            await agents.start("agent-3")
            await server.wait_all_up(N, within=90)
            (_, back) = await hook.wait_for(2, 60)
            assert "GIÁM SÁT TRỞ LẠI · agent agent-3" in back.json()["text"]
            assert count_events(server.state_db, state="down") == 0
