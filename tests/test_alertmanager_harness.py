"""The Alertmanager harness against the real binary: an alert posted to its API is held and
sent, grouped by district, to a webhook (an aiohttp server in the test).

``tests/data/alertmanager_webhook_v4.json`` is one payload received here, kept as a
reference for tests of confmon's webhook handling; this test checks that the live
payload still has the fixture's fields. ``CONFMON_REGEN_FIXTURES=1`` rewrites it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.alertmanager import RECEIVER, Alertmanager
from tests.helpers import eventually

FIXTURE = Path(__file__).parent / "data" / "alertmanager_webhook_v4.json"
LABELS = {"alertname": "ConfmonPointDown", "point": "p1", "district": "d1", "severity": "critical"}


def rfc3339(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A web server on 127.0.0.1 recording the JSON bodies POSTed to it: (url, bodies)."""
    received: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # the kernel picks the port: no race
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/alerts", received
    finally:
        await runner.cleanup()


async def test_alert_is_held_and_sent_to_the_webhook(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    now = datetime.now(UTC)
    alert = {
        "labels": LABELS,
        "annotations": {"summary": "x"},
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + timedelta(minutes=5)),
    }
    async with (
        Alertmanager(tmp_path / "am", url) as am,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        async with session.post(f"{am.url}/api/v2/alerts", json=[alert]) as resp:
            assert resp.status == 200, await resp.text()

        held = await am.alerts(session)
        assert [a["labels"] for a in held] == [LABELS], held
        assert held[0]["annotations"] == {"summary": "x"}
        assert held[0]["status"]["state"] == "active"
        assert [r["name"] for r in held[0]["receivers"]] == [RECEIVER]

        await eventually(lambda: received, 30, f"a webhook post (log: {am.log})")

    payload = received[0]
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == RECEIVER
    assert payload["groupLabels"] == {"district": "d1"}
    assert payload["commonLabels"] == LABELS
    assert [a["labels"] for a in payload["alerts"]] == [LABELS]
    sent = payload["alerts"][0]
    assert sent["status"] == "firing"
    assert sent["annotations"] == {"summary": "x"}
    assert sent["fingerprint"] == held[0]["fingerprint"]

    if os.environ.get("CONFMON_REGEN_FIXTURES") == "1":
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    reference = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert sorted(payload) == sorted(reference)
    assert sorted(sent) == sorted(reference["alerts"][0])
