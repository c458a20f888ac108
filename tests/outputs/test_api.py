"""The HTTP API against a real aiohttp server: endpoints, filters, errors, auth, SSE, reload."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from monitor.core.service import Monitor
from monitor.inventory import load_inventory
from tests.helpers import free_port
from tests.outputs.fixtures import CONFIG, bad, feed, good, serving

TOKEN = "s3cret"


class Api:
    def __init__(self, monitor: Monitor, base: str, config: Path) -> None:
        self.monitor, self.base, self.config = monitor, base, config
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})

    async def get(self, path: str, status: int = 200) -> dict:  # type: ignore[type-arg]
        async with self.session.get(self.base + path) as resp:
            assert resp.status == status, await resp.text()
            assert resp.content_type == "application/json"
            return await resp.json()  # type: ignore[no-any-return]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path, token=TOKEN) as (monitor, base):
        client = Api(monitor, base, tmp_path / "test.yaml")
        try:
            yield client
        finally:
            await client.session.close()


def feed_district_down(m: Monitor) -> None:
    now = time.time()
    for step in range(3):
        at = now + 5 * step
        for pid in ("ba-vi.tan-linh", "ba-vi.ba-trai", "ba-vi"):
            feed(m, pid, [bad("icmp", at), bad("sip", at)], at)
        feed(
            m,
            "son-tay",
            [good("icmp", at, rtt=0.01, loss=0.0, jitter=0.001), good("sip", at, rtt=0.02)],
            at,
        )


async def test_status_points_districts_agree(api: Api) -> None:
    """A district down: status counts, point filters and district roll-ups all say the same."""
    feed_district_down(api.monitor)
    status = await api.get("/api/v1/status")
    assert status["name"] == "Hội nghị thử"
    assert status["states"] == {
        "up": 1,
        "degraded": 0,
        "down": 1,
        "unreachable": 2,
        "unknown": 0,
        "maintenance": 0,
    }
    assert status["readiness"] == 0.25
    unreachable = await api.get("/api/v1/points?state=unreachable")
    assert sorted(p["id"] for p in unreachable["points"]) == ["ba-vi.ba-trai", "ba-vi.tan-linh"]
    assert all(p["reason"] == "uplink ba-vi is down" for p in unreachable["points"])
    in_ba_vi = await api.get("/api/v1/points?district=ba-vi")
    assert in_ba_vi["count"] == 3
    districts = {d["id"]: d for d in (await api.get("/api/v1/districts"))["districts"]}
    assert (
        districts["ba-vi"]["state"] == "down" and districts["ba-vi"]["states"]["unreachable"] == 2
    )
    assert districts["son-tay"]["name"] == "Thị xã Sơn Tây"
    one = await api.get("/api/v1/points/son-tay")
    assert (
        one["state"] == "up"
        and one["probes"]["sip"]["rtt"] == 0.02
        and one["name"] == "Thị xã Sơn Tây"
    )


async def test_events_are_logged_and_served(api: Api) -> None:
    """State changes land in the event log and /api/v1/events pages through them."""
    feed_district_down(api.monitor)
    for _ in range(50):
        events = (await api.get("/api/v1/events?point=ba-vi"))["events"]
        if len(events) >= 1:
            break
        await asyncio.sleep(0.1)
    assert [e["to"] for e in events] == ["down"]
    assert events[0]["name"] == "Huyện Ba Vì"
    everything = await api.get("/api/v1/events?limit=2")
    assert len(everything["events"]) == 2
    rest = await api.get(f"/api/v1/events?limit=100&before={everything['next_before']}")
    assert all(e["id"] < everything["next_before"] for e in rest["events"])
    history = (await api.get("/api/v1/points/ba-vi"))["history"]
    assert history[0]["to"] == "down"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/points?state=sideways", 400, "state: 'sideways' is not one of"),
        ("/api/v1/points?district=atlantis", 400, "district: 'atlantis' is not a district id"),
        ("/api/v1/events?limit=0", 400, "limit: 0 is out of range 1..1000"),
        ("/api/v1/events?since=yesterday", 400, "since: 'yesterday' is not a number"),
        ("/api/v1/points/nowhere", 404, "no point 'nowhere'"),
        ("/api/v2/everything", 404, "no such path"),
    ],
)
async def test_bad_requests_get_json_errors(api: Api, path: str, status: int, message: str) -> None:
    """Bad parameters are 400 and unknown things 404, each with a JSON error saying what is wrong."""
    body = await api.get(path, status)
    assert message in body["error"]


async def test_token_required_on_api_but_not_metrics(api: Api) -> None:
    """Without the bearer token /api is 401; /metrics and /healthz stay open."""
    async with aiohttp.ClientSession() as anon:
        async with anon.get(api.base + "/api/v1/status") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "missing or wrong bearer token"
        async with anon.get(api.base + "/metrics") as resp:
            assert resp.status == 200
            assert "confmon_points" in await resp.text()
        async with anon.get(api.base + "/healthz") as resp:
            assert resp.status == 200
        async with anon.get(api.base + "/readyz") as resp:
            assert resp.status == 200


async def test_oversized_body_is_rejected(api: Api) -> None:
    """A request body over 64 KiB is refused with 413."""
    async with api.session.post(api.base + "/-/reload", data=b"x" * (70 * 1024)) as resp:
        assert resp.status == 413


async def test_sse_stream_delivers_state_changes(api: Api) -> None:
    """A client on /api/v1/stream gets a hello, then each state change as it happens."""
    async with api.session.get(api.base + "/api/v1/stream") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"

        async def next_event() -> tuple[str, dict]:  # type: ignore[type-arg]
            kind, data = "", ""
            while True:
                line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and kind:
                    return kind, json.loads(data)

        kind, hello = await next_event()
        assert kind == "hello" and hello["points"] == 4
        feed_district_down(api.monitor)
        changes: list[tuple[str, str]] = []
        expected = {
            ("ba-vi", "down"),
            ("ba-vi.tan-linh", "unreachable"),
            ("ba-vi.ba-trai", "unreachable"),
        }
        async with asyncio.timeout(10):
            while not expected <= set(changes):
                kind, data = await next_event()
                if kind == "state":
                    changes.append((data["point"], data["to"]))
        assert ("ba-vi.tan-linh", "down") not in changes


async def test_reload_keeps_state_and_rejects_bad_config(api: Api) -> None:
    """POST /-/reload: a valid edit keeps remaining points' states; a broken file keeps the old config."""
    feed_district_down(api.monitor)
    api.config.write_text(
        CONFIG.replace(
            '  - {id: son-tay, name: "Thị xã Sơn Tây", host: 10.21.2.1, profile: room}\n', ""
        ),
        encoding="utf-8",
    )
    async with api.session.post(api.base + "/-/reload") as resp:
        assert resp.status == 200, await resp.text()
    status = await api.get("/api/v1/status")
    assert (
        status["points"] == 3
        and status["states"]["down"] == 1
        and status["states"]["unreachable"] == 2
    )
    api.config.write_text("points: [", encoding="utf-8")
    async with api.session.post(api.base + "/-/reload") as resp:
        assert resp.status == 400
        body = await resp.json()
        assert body["error"] == "reload failed; the running config is kept"
        assert "YAML syntax error" in body["problems"][0]
    assert (await api.get("/api/v1/status"))["points"] == 3
    async with api.session.get(api.base + "/metrics") as resp:
        assert "confmon_config_last_reload_successful 0.0" in await resp.text()


async def test_restart_resumes_states_without_new_events(tmp_path: Path) -> None:
    """After a restart the monitor shows the last known states and does not re-announce them."""
    config = tmp_path / "test.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    db = tmp_path / "ev.sqlite3"
    first = Monitor(load_inventory(config), state_db=db)
    await first.start()
    feed_district_down(first)
    await first.stop()
    assert first.eventlog is None
    second = Monitor(load_inventory(config), state_db=db)
    await second.start()
    try:
        assert second.model.points["ba-vi"].state.value == "down"
        assert second.model.points["ba-vi.tan-linh"].state.value == "unreachable"
        assert second.eventlog is not None
        before = len(await second.eventlog.query(limit=1000))
        now = time.time()
        feed(second, "ba-vi", [bad("icmp", now), bad("sip", now)], now)
        await asyncio.sleep(0.5)
        assert len(await second.eventlog.query(limit=1000)) == before
    finally:
        await second.stop()


async def test_an_acknowledgement_outlives_a_restart_but_not_its_incident(tmp_path: Path) -> None:
    """Acknowledged, then confmon restarts during the outage: still acknowledged (no
    reminders come back); restarted after the cause recovered: lapsed."""
    config = tmp_path / "test.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    db = tmp_path / "ev.sqlite3"

    async def restarted() -> Monitor:
        m = Monitor(load_inventory(config), state_db=db)
        await m.start()
        return m

    first = await restarted()
    feed_district_down(first)
    ack = await first.acknowledge("ba-vi", "NOC Hà Nội", time.time())
    await first.stop()
    second = await restarted()
    try:
        assert second.acks.active() == [ack]
        assert second.summary()["acks"] == [ack.json()]
        now = time.time() + 20
        for step in range(3):
            at = now + 5 * step
            for pid in ("ba-vi", "ba-vi.tan-linh", "ba-vi.ba-trai"):
                feed(second, pid, [good("icmp", at, rtt=0.01, loss=0.0), good("sip", at)], at)
    finally:
        await second.stop()
    third = await restarted()
    try:
        assert third.acks.active() == []
    finally:
        await third.stop()


async def test_dashboard_snapshot_from_a_running_monitor(api: Api, tmp_path: Path) -> None:
    """`confmon dashboard --snapshot` attaches to the API and writes one frame as SVG and text."""
    feed_district_down(api.monitor)
    for name in ("frame.svg", "frame.txt"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            "dashboard",
            "--url",
            api.base,
            "--token",
            TOKEN,
            "--snapshot",
            str(tmp_path / name),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    text = (tmp_path / "frame.txt").read_text(encoding="utf-8")
    assert "Hội nghị thử" in text and "Huyện Ba Vì" in text and "✖ 1 down" in text
    svg = (tmp_path / "frame.svg").read_text(encoding="utf-8")
    assert svg.startswith('<svg xml:space="preserve" ')  # librsvg keeps the columns aligned
    # a file for a report needs no network: no font (nor anything else) from a CDN
    assert re.findall(r"url\(\s*[\"']?https?:", svg) == []
    assert 'src: local("FiraCode-Regular");' in svg


async def test_dashboard_snapshot_without_a_server_fails_cleanly(tmp_path: Path) -> None:
    """No monitor at the URL: one line naming it, exit 1, no file."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "dashboard",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--snapshot",
        str(tmp_path / "x.svg"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "cannot read http://127.0.0.1:" in err.decode() and "connection refused" in err.decode()
    assert not (tmp_path / "x.svg").exists()


async def test_wrong_method_is_405_with_allow(api: Api) -> None:
    """A known path with the wrong method says which methods it takes."""
    async with api.session.post(api.base + "/api/v1/status") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD"
        assert (await resp.json())["error"] == "POST is not allowed here; use GET, HEAD"


async def test_reload_without_a_config_file_is_409(tmp_path: Path) -> None:
    """A monitor not started from a file (the demo) answers reload with a JSON 409, not a 500."""
    async with (
        serving(tmp_path, text=None) as (_, base),
        aiohttp.ClientSession() as s,
        s.post(f"{base}/-/reload") as resp,
    ):
        assert resp.status == 409
        assert (await resp.json())["error"] == "this monitor was not started from a config file"


async def test_an_incident_is_acknowledged_while_it_lasts(api: Api) -> None:
    """POST /api/v1/acks names the incident by its cause; the status and GET /api/v1/acks
    show who and when; a point without trouble or not in the inventory is refused; once the
    cause is up again the acknowledgement is gone by itself."""
    feed_district_down(api.monitor)

    async def post(body: object, status: int) -> dict:  # type: ignore[type-arg]
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with api.session.post(f"{api.base}/api/v1/acks", data=data) as resp:
            assert resp.status == status, await resp.text()
            assert resp.content_type == "application/json"
            return await resp.json()  # type: ignore[no-any-return]

    ack = await post({"cause": "ba-vi", "by": "NOC Hà Nội"}, 201)
    assert ack["cause"] == "ba-vi" and ack["by"] == "NOC Hà Nội"
    assert (await api.get("/api/v1/acks"))["acks"] == [ack]
    assert (await api.get("/api/v1/status"))["acks"] == [ack]
    assert api.monitor.acks.acked("ba-vi")
    assert "no incident" in (await post({"cause": "son-tay"}, 409))["error"]
    assert "not a point" in (await post({"cause": "nowhere"}, 404))["error"]
    assert "JSON" in (await post(b"{cause", 400))["error"]
    assert "cause is required" in (await post({"by": "x"}, 400))["error"]
    assert "must be a string" in (await post({"cause": "ba-vi", "by": 5}, 400))["error"]
    async with api.session.post(f"{api.base}/api/v1/acks") as resp:  # no body at all
        assert resp.status == 400
    async with (  # the token is needed, as everywhere
        aiohttp.ClientSession() as anonymous,
        anonymous.post(f"{api.base}/api/v1/acks", json={"cause": "ba-vi"}) as resp,
    ):
        assert resp.status == 401
    # Ba Vì comes back: the acknowledgement lapses
    now = time.time() + 20
    for step in range(3):
        at = now + 5 * step
        for pid in ("ba-vi", "ba-vi.tan-linh", "ba-vi.ba-trai"):
            feed(api.monitor, pid, [good("icmp", at, rtt=0.01, loss=0.0), good("sip", at)], at)
    assert (await api.get("/api/v1/acks"))["acks"] == []
