"""Delivery against real HTTP servers: what each answer means, and the end-to-end promise:
a receiver that is down, then failing, then rate-limiting, then well gets every
notification once and in order, across a kill -9 of confmon in the middle."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.alerts.config import AlertsSettings, Receiver
from monitor.alerts.delivery import post, retry_backoff
from monitor.lab.impairment import Impairment
from monitor.lab.lab import Lab
from tests.alerts.receiver import Receiver as Hook
from tests.commands.running import hanoi_lab, start_run, until
from tests.helpers import free_port

SECRET = "töp-secret"  # non-ASCII on purpose: the key is its UTF-8 bytes


def receiver(url: str, fmt: str = "confmon", **extra: Any) -> Receiver:
    doc: dict[str, Any] = {"name": "noc", "url": url, "format": fmt, "timeout": "2s", **extra}
    if fmt == "confmon":
        doc["secret_env"] = "NOC_SECRET"
    if fmt in ("telegram", "zalo"):
        doc["chat_id"] = 42
    return Receiver.model_validate(doc)


async def attempt(r: Receiver, body: bytes = b"{}") -> Any:
    async with aiohttp.ClientSession() as session:
        return await post(session, r, SECRET, body, "application/json", "d-1")


@pytest.mark.parametrize(
    ("answer", "result", "wait"),
    [
        ((200, {}), "delivered", None),
        ((204, {}), "delivered", None),
        ((500, {}), "retry", None),
        ((502, {}), "retry", None),
        ((408, {}), "retry", None),
        ((429, {"Retry-After": "7"}), "retry", 7.0),
        ((503, {"Retry-After": "0"}), "retry", 1.0),  # at least a second
        ((429, {"Retry-After": "86400"}), "retry", 3600.0),  # at most an hour
        ((429, {}), "retry", None),
        ((400, {}), "failed", None),
        ((401, {}), "failed", None),
        ((404, {}), "failed", None),
        ((301, {"Location": "https://elsewhere.example/"}), "failed", None),
    ],
)
async def test_what_an_answer_means(
    answer: tuple[int, dict[str, str]], result: str, wait: Any
) -> None:
    async with Hook() as hook:
        hook.answer(answer)
        outcome = await attempt(receiver(hook.url))
    assert outcome.result == result, outcome
    assert outcome.wait == wait
    assert f"HTTP {answer[0]}" in outcome.detail
    if answer[0] == 301:
        assert "elsewhere.example" in outcome.detail and "url" in outcome.detail
    assert len(hook.arrivals) == 1, "one attempt is one request: redirects are not followed"


async def test_a_retry_after_date_is_honoured() -> None:
    when = time.time() + 30
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    async with Hook() as hook:
        hook.answer((503, {"Retry-After": date}))
        outcome = await attempt(receiver(hook.url))
    assert outcome.result == "retry" and outcome.wait is not None
    assert 25 <= outcome.wait <= 31


async def test_headers_signature_and_the_documented_recipe() -> None:
    body = json.dumps({"version": "1", "name": "Xã Phú Cường"}, ensure_ascii=False).encode()
    async with Hook() as hook:
        r = receiver(hook.url, headers={"X-Team": "noc-hanoi"})
        outcome = await attempt(r, body)
    assert outcome.result == "delivered"
    (got,) = hook.arrivals
    assert got.body == body
    assert got.headers["X-Confmon-Delivery"] == "d-1"
    assert got.headers["X-Team"] == "noc-hanoi"
    assert got.headers["User-Agent"].startswith("confmon")
    # docs/alerts.md: hmac.new(secret, body, sha256), hex, after "sha256="
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Confmon-Signature"] == f"sha256={expected}"


async def test_chat_apis_that_answer_200_with_ok_false_are_refusals() -> None:
    async with Hook() as hook:
        hook.body = '{"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}'
        outcome = await attempt(receiver(hook.url, "telegram"))
    assert outcome.result == "failed"
    assert "chat not found" in outcome.detail


async def test_telegrams_retry_after_in_the_body() -> None:
    async with Hook() as hook:
        hook.body = '{"ok": false, "error_code": 429, "parameters": {"retry_after": 5}}'
        hook.answer(429)
        outcome = await attempt(receiver(hook.url, "telegram"))
    assert outcome.result == "retry" and outcome.wait == 5.0


async def test_a_closed_port_and_a_silent_server_are_temporary() -> None:
    port = free_port()
    refused = await attempt(receiver(f"http://127.0.0.1:{port}/hook"))
    assert refused.result == "retry" and "cannot connect" in refused.detail

    answered = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        # silent until the attempt gave up (then the server can stop at once)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), 30)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        started = time.monotonic()
        silent = await attempt(receiver(f"http://127.0.0.1:{port}/hook"))
        assert time.monotonic() - started < 20, "the receiver's timeout (2 s) bounds an attempt"
    finally:
        answered.set()
        await runner.cleanup()
    assert silent.result == "retry" and "no answer within 2s" in silent.detail


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(1)

    def nth(n: int) -> float:
        """The wait before try n + 1 of a notification (n failed tries so far)."""
        b = retry_backoff(rng.uniform)
        for _ in range(n - 1):
            b.next()
        return b.next()

    waits = [[nth(n) for _ in range(200)] for n in range(1, 12)]
    for n, w in enumerate(waits, start=1):
        ceiling = min(300.0, 2.0 ** (n - 1))
        assert all(ceiling / 2 <= x <= ceiling for x in w), n
        assert len({round(x, 6) for x in w}) > 100, "jittered"
    assert max(waits[-1]) <= 300.0


# --- end to end: confmon run, the lab and a receiver that is down, failing, limiting -----

BASE = "127.86.0.1"
INTERVAL = 1.0


async def _notifications(run: Any) -> list[dict[str, Any]]:
    try:
        return list((await run.get("/api/v1/notifications?limit=1000"))["notifications"])
    except (aiohttp.ClientError, OSError, AssertionError):
        return []


async def test_every_notification_arrives_once_in_order_through_outages_and_kill_9(
    tmp_path: Path,
) -> None:
    port = free_port()
    hook = Hook(port=port)  # not listening yet: the receiver is down
    inv = hanoi_lab(BASE, interval=INTERVAL, stale_after=10.0)
    alerts = AlertsSettings.model_validate(
        {"group_wait": "1s", "receivers": [receiver(hook.url).model_dump(mode="json")]}
    )
    inv = dataclasses.replace(inv, alerts=alerts)
    env = {"NOC_SECRET": SECRET}
    db = tmp_path / "events.sqlite3"
    async with Lab(inv, seed=3) as lab:
        run = await start_run(tmp_path, inv, state_db=db, env=env)
        try:
            await run.wait_all_up(450, 60)
            lab.set_impairment("ba-vi", Impairment(down=True))

            async def tried(n: int) -> bool:
                """n messages made, none delivered, and the oldest tried (in order: the
                others wait behind it)."""
                rows = sorted(await _notifications(run), key=lambda r: r["id"])
                return (
                    len(rows) >= n
                    and all(r["status"] == "pending" for r in rows)
                    and rows[0]["attempts"] >= 1
                    and all(r["attempts"] == 0 for r in rows[1:])
                )

            await until(lambda: tried(1), 40, "Ba Vì's message made and tried")
            lab.set_impairment("soc-son", Impairment(down=True))
            await until(lambda: tried(2), 40, "Sóc Sơn's message made and tried")
            made = sorted(await _notifications(run), key=lambda r: r["id"])
            assert "cannot connect" in made[0]["last_result"]
        finally:
            run.proc.send_signal(signal.SIGKILL)  # mid-delivery: nothing acknowledged yet
            await run.proc.wait()
            await run.session.close()
        lab.clear("ba-vi")
        run = await start_run(tmp_path, inv, state_db=db, env=env, name="run2")
        try:
            await until(lambda: tried(3), 60, "Ba Vì's recovery made after the restart")
            # the receiver comes back, but failing, then limiting, then well
            hook.answer(500, (429, {"Retry-After": "2"}))
            await hook.start()
            rows = await _notifications(run)
            expected = sorted(rows, key=lambda r: r["id"])
            got = await hook.wait_for(len(expected), 120)
            await asyncio.sleep(3 * INTERVAL)  # nothing more arrives
            final = sorted(await _notifications(run), key=lambda r: r["id"])
        finally:
            code = await run.stop()
            await run.session.close()
            await hook.stop()
        assert code == 0, run.log()[-3000:]
    assert all(r["status"] == "delivered" for r in final), final
    delivered = hook.delivered
    assert [a.headers["X-Confmon-Delivery"] for a in delivered] == [r["delivery"] for r in final]
    bodies = [a.json() for a in delivered]
    seen = [(b["kind"], b["group"]["key"]) for b in bodies]
    assert seen == [
        ("firing", "district:ba-vi"),
        ("firing", "district:soc-son"),
        ("resolved", "district:ba-vi"),
    ], "one message per district outage (the uplink and its communes together)"
    statuses = [a.status for a in hook.arrivals]
    assert statuses[:2] == [500, 429] and statuses[2:] == [200] * len(final), statuses
    for a in delivered:
        mac = hmac.new(SECRET.encode(), a.body, hashlib.sha256).hexdigest()
        assert a.headers["X-Confmon-Signature"] == f"sha256={mac}"
    assert len(got) == len(final)


@pytest.mark.parametrize(
    ("fmt", "path", "keys"),
    [
        (
            "telegram",
            "/hook/bot123:tok/sendMessage",
            {"chat_id", "text", "disable_web_page_preview"},
        ),
        ("zalo", "/hook/bot123:tok/sendMessage", {"chat_id", "text"}),
        ("slack", "/hook", {"text", "unfurl_links"}),
    ],
)
async def test_each_chat_gets_the_request_its_api_documents(
    fmt: str, path: str, keys: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As each API documents it: a JSON POST to .../bot<token>/sendMessage with chat_id and
    text (Telegram, Zalo), a JSON POST of {text} to the incoming-webhook URL (Slack)."""
    from monitor.alerts.service import send_test
    from monitor.inventory import parse_inventory

    monkeypatch.setenv("BOT", "123:tok")
    async with Hook() as hook:
        hook.body = '{"ok": true, "result": {"message_id": 1}}'
        url = hook.url + ("/bot{secret}/sendMessage" if fmt != "slack" else "")
        extra = "chat_id: '-100123', secret_env: BOT" if fmt != "slack" else ""
        inv = parse_inventory(
            f"alerts: {{receivers: [{{name: chat, url: '{url}', format: {fmt}, {extra}}}]}}\n"
            "points: [{id: ba-vi, name: Huyện Ba Vì, host: 127.88.0.1, profile: p}]\n"
            "profiles: {p: {sip: {}}}\n"
        )
        outcome, _ = await send_test(inv, inv.alerts.receivers[0])
    assert outcome.result == "delivered", outcome
    (got,) = hook.arrivals
    assert got.path == path
    assert got.headers["Content-Type"].startswith("application/json")
    body = got.json()
    assert set(body) == keys
    assert "TIN NHẮN THỬ" in body["text"]
    if fmt != "slack":
        assert body["chat_id"] == "-100123"
