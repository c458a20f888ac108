"""Alerts inside a running monitor (no probing: results fed through its ingest): the
outbox in /api/v1/notifications and /metrics (promtool-clean), bad query parameters, a
reload that adds a receiver, and the outbox surviving a restart of the monitor."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.alerts.receiver import Receiver as Hook
from tests.helpers import eventually, require_binary
from tests.outputs.fixtures import CONFIG, bad, feed, good, serving_app


def _config(*receivers: str) -> str:
    return (
        CONFIG
        + "alerts:\n  group_wait: 0.2s\n  receivers:\n"
        + "".join(f"    - {r}\n" for r in receivers)
    )


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


def _cut_ba_vi(m: Any, t: float) -> None:
    """Two failed cycles of Ba Vì's HQ and its communes: down, and unreachable behind it."""
    for cycle in (0.0, 5.0):
        for pid in ("ba-vi", "ba-vi.tan-linh", "ba-vi.ba-trai"):
            feed(m, pid, [bad("icmp", t + cycle), bad("sip", t + cycle)], t + cycle)


def _up(m: Any, t: float) -> None:
    for pid in ("ba-vi", "ba-vi.tan-linh", "ba-vi.ba-trai", "son-tay"):
        feed(m, pid, [good("icmp", t, rtt=0.01), good("sip", t, rtt=0.01)], t)


async def test_the_outbox_in_the_api_and_the_metrics(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    async with Hook(default=503) as hook:  # failing: the message stays pending
        text = _config(f"{{name: noc, url: '{hook.url}', format: slack}}")
        async with serving_app(tmp_path, text=text) as (app, base):
            m = app.monitor
            now = time.time()
            _up(m, now - 20)
            _up(m, now - 15)
            _cut_ba_vi(m, now - 10)
            await eventually(lambda: len(hook.arrivals) >= 1, 30, "a first attempt")
            async with aiohttp.ClientSession() as s:
                status, doc = await _get(s, f"{base}/api/v1/notifications")
                assert status == 200
                (noc,) = doc["receivers"]
                assert noc["name"] == "noc" and noc["pending"] == 1 and noc["retrying"]
                assert "HTTP 503" in noc["last_error"]
                (row,) = doc["notifications"]
                assert row["status"] == "pending" and row["group"] == "district:ba-vi"
                assert row["summary"].startswith("🔴 [Hội nghị thử] SỰ CỐ · Huyện Ba Vì")
                for bad_query, said in (
                    ("limit=0", "limit"),
                    ("limit=abc", "limit"),
                    ("receiver=nope", "not a receiver"),
                ):
                    status, doc = await _get(s, f"{base}/api/v1/notifications?{bad_query}")
                    assert status == 400 and said in doc["error"], (bad_query, doc)
                async with s.get(f"{base}/metrics") as resp:
                    metrics = await resp.text()
            assert 'confmon_notifications_pending{receiver="noc"} 1.0' in metrics
            assert 'confmon_notifications_total{receiver="noc",result="retried"}' in metrics
            checked = await asyncio.to_thread(
                subprocess.run,
                [promtool, "check", "metrics"],
                input=metrics,
                capture_output=True,
                text=True,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            hook.default = 200  # the receiver recovers: the pending message goes
            await eventually(lambda: hook.delivered, 60, "the message delivered after a retry")


async def test_a_reload_adds_a_receiver_and_a_restart_keeps_the_outbox(tmp_path: Path) -> None:
    async with Hook(default=500) as first, Hook() as second:
        text = _config(f"{{name: first, url: '{first.url}', format: slack}}")
        async with serving_app(tmp_path, text=text) as (app, _):
            now = time.time()
            _up(app.monitor, now - 20)
            _up(app.monitor, now - 15)
            (tmp_path / "test.yaml").write_text(
                _config(
                    f"{{name: first, url: '{first.url}', format: slack}}",
                    f"{{name: second, url: '{second.url}', format: slack}}",
                ),
                encoding="utf-8",
            )
            await app.reload()
            assert app.monitor.alerts is not None
            assert set(app.monitor.alerts.receivers) == {"first", "second"}
            _cut_ba_vi(app.monitor, now - 10)
            await eventually(lambda: second.delivered, 30, "the new receiver told")
            await eventually(lambda: first.arrivals, 30, "the first receiver tried")
        # stopped with first's message pending; started again on the same event log
        first.default = 200
        again = (tmp_path / "test.yaml").read_text(encoding="utf-8")
        async with serving_app(tmp_path, text=again) as (app2, _):
            await eventually(lambda: first.delivered, 60, "first's message after the restart")
            assert len(second.delivered) == 1, "second's message was acknowledged: not again"
            assert first.delivered[0].json()["text"] == second.delivered[0].json()["text"]
            assert app2.monitor.alerts is not None


@pytest.mark.parametrize("field", ["states", "districts"])
async def test_a_filtered_receiver_hears_nothing_else(tmp_path: Path, field: str) -> None:
    only = "states: [degraded]" if field == "states" else "districts: [son-tay]"
    async with Hook() as hook:
        text = _config(f"{{name: noc, url: '{hook.url}', format: slack, {only}}}")
        async with serving_app(tmp_path, text=text) as (app, _):
            now = time.time()
            _up(app.monitor, now - 20)
            _up(app.monitor, now - 15)
            _cut_ba_vi(app.monitor, now - 10)
            assert app.monitor.model.points["ba-vi"].state.value == "down"
            await asyncio.sleep(1.5)  # the feeder's ticks, group_wait 0.2 s: time to send
            assert hook.arrivals == []


async def test_a_reload_that_brings_a_receiver_without_its_secret_keeps_monitoring(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOC_UNSET", raising=False)
    async with serving_app(tmp_path, text=CONFIG) as (app, _):
        assert app.monitor.alerts is None
        (tmp_path / "test.yaml").write_text(
            _config("{name: noc, url: 'http://127.0.0.1:9/x', secret_env: NOC_UNSET}"),
            encoding="utf-8",
        )
        await app.reload()  # the rest of the config is taken; the receiver is said
        assert app.monitor.alerts is None
        assert app.monitor.inv.alerts.receivers[0].name == "noc"
    assert any("NOC_UNSET" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
