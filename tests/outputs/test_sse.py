"""The SSE stream across reconnects: ids, Last-Event-ID replay, exactly once, in order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.core.service import Monitor
from monitor.inventory.writer import to_yaml
from monitor.outputs import api
from tests.outputs.fixtures import bad, feed, good, serving

#: a district with 30 communes and a second district, as in Hanoi
DISTRICT = "\n".join(
    [
        'monitor: {name: "SSE", interval: 5s, fail_after: 2, recover_after: 2, stale_after: 60s}',
        "profiles: {room: {sip: {}}}",
        "points:",
        '  - {id: ba-vi, name: "Huyện Ba Vì", host: 10.24.19.1, profile: room, points: [',
        *[f'      {{id: ba-vi.c{i}, name: "Xã {i}", host: 10.24.19.{i + 10}}},' for i in range(30)],
        "    ]}",
        '  - {id: son-tay, name: "Thị xã Sơn Tây", host: 10.24.2.1, profile: room}',
    ]
)


async def sse(
    session: aiohttp.ClientSession, base: str, last_id: int | None = None
) -> AsyncIterator[tuple[str, str | None, dict[str, Any]]]:
    """(event, id, data) from /api/v1/stream."""
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    async with session.get(f"{base}/api/v1/stream", headers=headers) as resp:
        assert resp.status == 200
        kind, eid = "", None
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                eid = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield kind, eid, json.loads(line[6:])
            elif not line:
                kind, eid = "", None


async def states(
    session: aiohttp.ClientSession, base: str, n: int, last_id: int | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """The next ``n`` state events: (id from the id: field, data)."""
    out: list[tuple[int, dict[str, Any]]] = []
    async with asyncio.timeout(20):
        async for kind, eid, data in sse(session, base, last_id):
            if kind == "state":
                assert eid is not None and int(eid) == data["id"]
                out.append((int(eid), data))
                if len(out) == n:
                    break
    return out


def cycle(m: Monitor, ok: bool, at: float, points: list[str]) -> None:
    for pid in points:
        feed(m, pid, [good("sip", at) if ok else bad("sip", at)], at)


async def test_reconnect_with_last_event_id_gets_every_missed_event_once(tmp_path: Path) -> None:
    """A client away during a district outage gets, on reconnect, each missed event once, in
    order, and then the live ones."""
    async with serving(tmp_path, text=DISTRICT) as (m, base), aiohttp.ClientSession() as s:
        ids = list(m.inv.points)
        now = time.time()
        cycle(m, True, now, ids)  # 32 x unknown -> up
        first = await states(s, base, 32, last_id=0)
        assert [e for e, _ in first] == list(range(1, 33))
        last_seen = first[-1][0]

        # away: the district drops (1 down + 30 unreachable), and son-tay too
        for k in (1, 2):
            cycle(m, False, now + 5 * k, ids)
        assert m.events is not None
        await m.events.drain()
        assert m.model.points["ba-vi"].state.value == "down"
        missed = m.events.last_id - last_seen
        assert missed == 32

        back = await states(s, base, missed, last_id=last_seen)
        assert [e for e, _ in back] == list(range(last_seen + 1, last_seen + missed + 1))
        assert {d["point"]: d["to"] for _, d in back} == {
            "ba-vi": "down",
            "son-tay": "down",
            **{f"ba-vi.c{i}": "unreachable" for i in range(30)},
        }
        assert {d["cause"] for _, d in back if d["point"].startswith("ba-vi")} == {"ba-vi"}

        # replay, then live: recovery events arrive after the replayed ones, none twice
        async def recover() -> None:
            await asyncio.sleep(0.5)
            for k in (3, 4):
                cycle(m, True, now + 5 * k, ids)

        task = asyncio.get_running_loop().create_task(recover())
        both = await states(s, base, missed + 32, last_id=last_seen)
        await task
        got = [e for e, _ in both]
        assert got == sorted(set(got)) == list(range(last_seen + 1, last_seen + 2 * missed + 1))
        assert {d["to"] for _, d in both[missed:]} == {"up"}
        # a recovery names the cause it ends: the communes' recovery groups with Ba Vì
        assert {d["cause"] for _, d in both[missed:] if d["point"].startswith("ba-vi.")} == {
            "ba-vi"
        }


async def test_a_client_too_slow_for_its_queue_is_caught_up_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events beyond the client's queue are sent from the event log, not dropped."""
    monkeypatch.setattr(api, "SSE_QUEUE", 4)
    async with serving(tmp_path, text=DISTRICT) as (m, base), aiohttp.ClientSession() as s:
        ids = list(m.inv.points)
        now = time.time()
        got: list[int] = []
        async with asyncio.timeout(20):
            stream = sse(s, base, last_id=0)
            async for kind, _, data in stream:
                if kind == "hello":
                    # 32 events at once into a queue of 4, while this client is not reading
                    cycle(m, True, now, ids)
                    assert m.events is not None
                    await m.events.drain()
                    continue
                if kind == "state":
                    got.append(data["id"])
                    if len(got) == 32:
                        break
        assert got == list(range(1, 33))


async def test_bad_last_event_id_is_a_400(tmp_path: Path) -> None:
    """A Last-Event-ID that is not a number is refused with a JSON error."""
    async with serving(tmp_path, text=DISTRICT) as (_, base), aiohttp.ClientSession() as s:
        for bad in ("abc", "\u00b2", "-1", "1" * 30):
            async with s.get(
                f"{base}/api/v1/stream", headers={"Last-Event-ID": bad.encode().decode("latin-1")}
            ) as resp:
                assert resp.status == 400, bad
                assert "Last-Event-ID" in (await resp.json())["error"]


def test_district_config_is_valid() -> None:
    """The test's inventory has the district and its 30 communes."""
    from monitor.inventory import parse_inventory

    inv = parse_inventory(DISTRICT, "sse.yaml")
    assert len(inv.points) == 32 and to_yaml(inv)
