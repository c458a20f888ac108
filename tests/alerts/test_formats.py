"""A notification in each receiver format (monitor.alerts.formats.render, text_of).

The notifications are made by :class:`~monitor.alerts.grouping.Groups` from events, as the
service makes them (see tests/alerts/test_grouping.py for the inventory and the clock).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.config import Receiver
from monitor.alerts.delivery import sign
from monitor.alerts.formats import AM_RESEND, TEXT_LIMIT, Context, render, text_of
from monitor.alerts.grouping import Notification
from tests.alerts.test_grouping import (
    ALL_POINTS,
    DISTRICTS,
    REASONS,
    T0,
    fire,
    make,
    one,
    points_of,
    receiver,
)
from tests.helpers import ROOT, require_binary

MONITOR = "Hội nghị HĐND TP Hà Nội"
CTX = Context(MONITOR, "Asia/Ho_Chi_Minh", "")
SECRET = "s3cr3t-hanoi-2026"
FIXTURE = ROOT / "tests" / "data" / "alertmanager_webhook_v4.json"
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ZERO_TIME = "0001-01-01T00:00:00Z"
CHATS = ("slack", "telegram", "zalo")

RECEIVERS: dict[str, Receiver] = {
    "confmon": receiver(),
    "alertmanager": receiver(name="am", format="alertmanager", url="http://127.0.0.1:9093/hook"),
    "alertmanager-api": receiver(
        name="am-api", format="alertmanager-api", url="http://127.0.0.1:9093/api/v2/alerts"
    ),
    "slack": receiver(name="slack", format="slack", url="https://hooks.slack.com/{secret}"),
    "telegram": receiver(
        name="tg",
        format="telegram",
        url="https://api.telegram.org/bot{secret}/sendMessage",
        chat_id=-1001234567890,
    ),
    "zalo": receiver(
        name="zalo",
        format="zalo",
        url="https://bot-api.zapps.me/bot{secret}/sendMessage",
        chat_id="zalo-chat-42",
    ),
}


def local_clock(t: float, hours: int = 7) -> str:
    """HH:MM:SS at UTC+``hours`` (Asia/Ho_Chi_Minh has no DST: +7)."""
    return (
        datetime.datetime.fromtimestamp(t, tz=datetime.UTC) + datetime.timedelta(hours=hours)
    ).strftime("%H:%M:%S")


def parse_time(value: str) -> float:
    assert RFC3339_Z.match(value), value
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def doc_of(n: Notification, fmt: str) -> Any:
    r = render(n, RECEIVERS[fmt], CTX)
    assert r.content_type == "application/json; charset=utf-8"
    return json.loads(r.body)


# --- the notifications -------------------------------------------------------------------------


def district_outage(**settings: Any) -> tuple[Notification, Notification]:
    """Ba Vì's headquarters down at T0 with its 29 communes behind it, back at T0 + 300:
    the firing message and the resolved one."""
    g, log = make(**settings)
    n = fire(g, log.outage("ba-vi", T0), T0)
    r = fire(g, log.recovery("ba-vi", T0 + 300), T0 + 300)
    assert (n.kind, r.kind) == ("firing", "resolved")
    return n, r


def partial_recovery() -> Notification:
    g, log = make()
    fire(g, [log.ev("ba-vi.c1", "down", T0), log.ev("ba-vi.c2", "down", T0)], T0)
    n = fire(g, [log.ev("ba-vi.c2", "up", T0 + 100)], T0 + 100)
    assert [bool(a["was"]) for a in n.alerts] == [False, True]
    return n


def agent_gap() -> tuple[Notification, Notification]:
    g, log = make({"states": ["down", "unreachable", "degraded", "unknown"]})
    lost = ALL_POINTS[:200]
    gap = fire(
        g,
        [log.ev(p, "unknown", T0, cause="agent:hn-03", reason="agent hn-03 offline") for p in lost],
        T0,
    )
    back = fire(g, log.all(lost, "up", T0 + 600, cause="agent:hn-03"), T0 + 600)
    assert (gap.kind, back.kind) == ("gap", "gap-resolved")
    return gap, back


def storm_450() -> Notification:
    g, log = make()
    n = fire(g, log.all(ALL_POINTS[:450], "down", T0), T0)
    assert n.kind == "storm" and n.group["rooms"] == 450
    return n


def city_450_long_reasons() -> Notification:
    """450 points down each on its own (450 causes), with long reasons."""
    g, log = make(group_by="city", storm={"changes": 1000})
    reason = "2 failed cycles (" + "; ".join(f"probe {i}: no response" for i in range(25)) + ")"
    n = fire(g, [log.ev(p, "down", T0, reason=reason) for p in ALL_POINTS[:450]], T0)
    assert n.group["rooms"] == 450 and len(n.group["causes"]) == 450
    return n


# --- confmon (native) --------------------------------------------------------------------------

CONTRACT_ALERT = {"point", "name", "district", "state", "previous", "since", "reason", "metrics"}


def english_keys(value: Any) -> None:
    """Every key of every object (except the metrics' names) is an English identifier."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert re.fullmatch(r"[a-z][a-z_]*", k), k
            english_keys(v)
    elif isinstance(value, list):
        for v in value:
            english_keys(v)


def test_confmon_body_has_the_contract() -> None:
    n, _ = district_outage()
    rendered = render(n, RECEIVERS["confmon"], CTX)
    doc = json.loads(rendered.body)
    assert {"version", "status", "group", "alerts", "sent_at"} <= set(doc)
    assert doc["version"] == "1" and doc["status"] == "firing"
    assert doc["sent_at"] == n.created_at == T0 + 2
    english_keys(doc)
    assert doc["group"]["key"] == "district:ba-vi" and doc["group"]["rooms"] == 30
    assert len(doc["alerts"]) == 30
    for a in doc["alerts"]:
        assert set(a) >= CONTRACT_ALERT
        assert a["district"] == "ba-vi" and a["previous"] == "up"
        assert isinstance(a["since"], float) and isinstance(a["metrics"], dict)
    hq = next(a for a in doc["alerts"] if a["point"] == "ba-vi")
    assert (hq["name"], hq["state"], hq["since"]) == ("Huyện Ba Vì", "down", T0)
    assert hq["reason"] == REASONS["down"]
    assert hq["metrics"] == {"rtt": None, "loss": 1.0}
    c2 = next(a for a in doc["alerts"] if a["point"] == "ba-vi.c2")
    assert (c2["name"], c2["state"]) == ("Xã Phú Cường", "unreachable")
    # UTF-8, not \u escapes
    assert "Xã Phú Cường".encode() in rendered.body and "Huyện Ba Vì".encode() in rendered.body
    assert b"\\u" not in rendered.body
    assert rendered.summary == text_of(n, CTX).splitlines()[0]


def test_confmon_resolved_body() -> None:
    _, r = district_outage()
    doc = doc_of(r, "confmon")
    assert doc["status"] == "resolved" and len(doc["alerts"]) == 30
    assert {a["state"] for a in doc["alerts"]} == {"up"}
    assert {a["since"] for a in doc["alerts"]} == {T0 + 300}


def test_render_is_the_same_bytes_every_time() -> None:
    n, _ = district_outage()
    for fmt, r in RECEIVERS.items():
        assert render(n, r, CTX).body == render(n, r, CTX).body, fmt


def test_signature_is_the_documented_hmac() -> None:
    n, _ = district_outage()
    body = render(n, RECEIVERS["confmon"], CTX).body
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", expected)
    assert sign(SECRET, body + b" ") != expected
    assert sign(SECRET + "x", body) != expected


def test_signature_matches_openssl(tmp_path: Path) -> None:
    openssl = require_binary("openssl")
    n, _ = district_outage()
    body = render(n, RECEIVERS["confmon"], CTX).body
    path = tmp_path / "body.json"
    path.write_bytes(body)
    out = subprocess.run(
        [openssl, "dgst", "-sha256", "-hmac", SECRET, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    digest = out.strip().rsplit("= ", 1)[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", digest), out
    assert sign(SECRET, body) == f"sha256={digest}"


# --- alertmanager (webhook v4) ---------------------------------------------------------------


def test_alertmanager_webhook_is_shaped_like_alertmanagers() -> None:
    fixture = json.loads(FIXTURE.read_text())
    n, _ = district_outage()
    doc = doc_of(n, "alertmanager")
    assert set(doc) == set(fixture)
    for k, v in fixture.items():
        assert type(doc[k]) is type(v), k
    fixture_alert = fixture["alerts"][0]
    for a in doc["alerts"]:
        assert set(a) == set(fixture_alert)
        for k, v in fixture_alert.items():
            assert type(a[k]) is type(v), k
        assert set(a["labels"]) == {"alertname", "point", "district", "level", "severity"}
        assert all(isinstance(v, str) for v in [*a["labels"].values(), *a["annotations"].values()])
    assert doc["version"] == "4" and doc["status"] == "firing" and doc["receiver"] == "am"
    assert doc["groupLabels"] == {"district": "ba-vi"}
    assert doc["groupKey"] == '{}:{district="ba-vi"}'
    assert doc["truncatedAlerts"] == 0
    assert doc["commonLabels"] == {"district": "ba-vi", "severity": "critical"}
    assert len(doc["alerts"]) == 30
    assert {a["status"] for a in doc["alerts"]} == {"firing"}
    assert {a["endsAt"] for a in doc["alerts"]} == {ZERO_TIME}
    fingerprints = [a["fingerprint"] for a in doc["alerts"]]
    assert all(re.fullmatch(r"[0-9a-f]{16}", f) for f in fingerprints)
    assert len(set(fingerprints)) == 30
    hq = next(a for a in doc["alerts"] if a["labels"]["point"] == "ba-vi")
    assert hq["labels"]["alertname"] == "ConfmonPointDown"
    assert hq["labels"]["level"] == "district"
    assert parse_time(hq["startsAt"]) == T0
    c1 = next(a for a in doc["alerts"] if a["labels"]["point"] == "ba-vi.c1")
    assert c1["labels"]["alertname"] == "ConfmonPointUnreachable"
    assert "Thị trấn Tây Đằng" in c1["annotations"]["summary"]


def test_alertmanager_webhook_resolved() -> None:
    n, r = district_outage()
    firing, resolved = doc_of(n, "alertmanager"), doc_of(r, "alertmanager")
    assert resolved["status"] == "resolved"
    assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
    for a in resolved["alerts"]:
        assert a["endsAt"] != ZERO_TIME
        assert parse_time(a["endsAt"]) == T0 + 300
        # when the outage began (not when it ended)
        assert parse_time(a["startsAt"]) == pytest.approx(T0, abs=0.1)
    # the same alert as it fired: a receiver matches them by fingerprint
    fp = {a["labels"]["point"]: a["fingerprint"] for a in firing["alerts"]}
    assert {a["labels"]["point"]: a["fingerprint"] for a in resolved["alerts"]} == fp


def test_alertmanager_webhook_partial_recovery() -> None:
    doc = doc_of(partial_recovery(), "alertmanager")
    by_point = {a["labels"]["point"]: a for a in doc["alerts"]}
    assert doc["status"] == "firing"
    assert by_point["ba-vi.c1"]["status"] == "firing"
    assert by_point["ba-vi.c1"]["endsAt"] == ZERO_TIME
    assert by_point["ba-vi.c2"]["status"] == "resolved"
    assert parse_time(by_point["ba-vi.c2"]["endsAt"]) == T0 + 100


# --- alertmanager-api (what Prometheus POSTs) ------------------------------------------------


def test_alertmanager_api_firing() -> None:
    n, _ = district_outage()
    doc = doc_of(n, "alertmanager-api")
    assert isinstance(doc, list) and len(doc) == 30
    for a in doc:
        assert set(a["labels"]) == {"alertname", "point", "district", "level", "severity"}
        assert isinstance(a["annotations"], dict)
        starts, ends = parse_time(a["startsAt"]), parse_time(a["endsAt"])
        assert starts <= n.created_at < ends
        assert 180 <= ends - n.created_at <= 300  # ~4 min: re-sent every minute
    assert AM_RESEND == 60.0


def test_alertmanager_api_resolved_ends_now() -> None:
    n = partial_recovery()
    doc = doc_of(n, "alertmanager-api")
    by_point = {a["labels"]["point"]: a for a in doc}
    assert parse_time(by_point["ba-vi.c1"]["endsAt"]) > n.created_at
    assert parse_time(by_point["ba-vi.c2"]["endsAt"]) == n.created_at
    assert by_point["ba-vi.c2"]["labels"] == {
        "alertname": "ConfmonPointDown",
        "point": "ba-vi.c2",
        "district": "ba-vi",
        "level": "commune",
        "severity": "critical",
    }


def test_alertmanager_api_resolved_has_starts_at() -> None:
    n = partial_recovery()
    resolved = [a for a in doc_of(n, "alertmanager-api") if a["labels"]["point"] == "ba-vi.c2"]
    assert parse_time(resolved[0]["startsAt"]) == T0


# --- the chats ----------------------------------------------------------------------------------


def test_chat_payloads() -> None:
    n, _ = district_outage()
    slack = doc_of(n, "slack")
    assert "text" in slack and set(slack) <= {"text", "unfurl_links"}
    telegram = doc_of(n, "telegram")
    assert set(telegram) == {"chat_id", "text", "disable_web_page_preview"}
    assert telegram["chat_id"] == -1001234567890 and telegram["disable_web_page_preview"] is True
    zalo = doc_of(n, "zalo")
    assert zalo == {"chat_id": "zalo-chat-42", "text": text_of(n, CTX)}
    assert slack["text"] == telegram["text"] == zalo["text"]


@pytest.mark.parametrize("fmt", CHATS)
def test_firing_text_in_vietnamese(fmt: str) -> None:
    n, _ = district_outage()
    rendered = render(n, RECEIVERS[fmt], CTX)
    text = json.loads(rendered.body)["text"]
    assert "Huyện Ba Vì".encode() in rendered.body and b"\\u" not in rendered.body
    at = local_clock(T0)
    assert at == "14:52:55"
    lines = text.splitlines()
    assert lines[0] == f"🔴 [{MONITOR}] SỰ CỐ · Huyện Ba Vì"
    # the cause, its state, since when, why, how many rooms
    assert f"• Huyện Ba Vì: mất kết nối từ {at} ({REASONS['down']}) · 30 điểm bị ảnh hưởng" in lines
    assert "Tổng: 30 điểm — 1 mất kết nối, 29 không truy cập được" in lines
    assert len(text) <= TEXT_LIMIT[fmt]


def test_text_time_follows_the_context_timezone() -> None:
    n, _ = district_outage()
    assert local_clock(T0, 0) in text_of(n, Context(MONITOR, "UTC"))
    assert local_clock(T0, 0) not in text_of(n, CTX)


def test_partial_recovery_text() -> None:
    text = text_of(partial_recovery(), CTX)
    assert "Thị trấn Tây Đằng: mất kết nối" in text
    assert "Đã khôi phục: Xã Phú Cường" in text


def test_resolved_text() -> None:
    _, r = district_outage()
    text = text_of(r, CTX)
    assert text.splitlines()[0] == f"✅ [{MONITOR}] ĐÃ KHÔI PHỤC · Huyện Ba Vì"
    assert f"30 điểm hoạt động trở lại lúc {local_clock(T0 + 300)}" in text
    assert "sự cố kéo dài 5 phút" in text
    for fmt in CHATS:
        assert doc_of(r, fmt)["text"] == text


def test_resolved_text_duration_ends_at_the_recovery() -> None:
    _, r = district_outage(group_wait="30s")  # back at T0 + 300, message at T0 + 330
    assert "(sự cố kéo dài 5 phút)" in text_of(r, CTX)


def test_gap_texts() -> None:
    gap, back = agent_gap()
    text = text_of(gap, CTX)
    assert text.splitlines()[0] == f"⚪ [{MONITOR}] MẤT GIÁM SÁT · agent hn-03"
    assert f"200 điểm không có dữ liệu từ {local_clock(T0)} (agent hn-03 offline)" in text
    assert "không phải sự cố tại các điểm" in text
    again = text_of(back, CTX)
    assert "GIÁM SÁT TRỞ LẠI · agent hn-03" in again
    assert "200 điểm lại có dữ liệu lúc " in again


def test_gap_resolved_text_says_when_data_came_back() -> None:
    g, log = make({"states": ["down", "unknown"]}, group_wait="30s")
    fire(g, log.all(ALL_POINTS[:5], "unknown", T0, cause="agent:hn-03"), T0)
    back = fire(g, log.all(ALL_POINTS[:5], "up", T0 + 600), T0 + 600)  # sent at T0 + 630
    assert f"5 điểm lại có dữ liệu lúc {local_clock(T0 + 600)}" in text_of(back, CTX)


def test_test_message() -> None:
    n = Notification("ops", "test", "firing", {"key": "test"}, [], T0)
    text = text_of(n, CTX)
    assert "TIN NHẮN THỬ" in text and "ops" in text and local_clock(T0) in text
    for fmt, r in RECEIVERS.items():
        json.loads(render(n, r, CTX).body)  # every format takes it
        assert render(n, r, CTX).summary == text.splitlines()[0], fmt


def test_storm_text() -> None:
    n = storm_450()
    text = text_of(n, CTX)
    assert text.startswith(f"⚠️ [{MONITOR}] SỰ CỐ DIỆN RỘNG: 450 thay đổi trong 1 phút")
    assert f"450 điểm tại {len(DISTRICTS)} quận/huyện" in text
    assert "450 mất kết nối" in text


def test_storm_of_recoveries_text() -> None:
    g, log = make(storm={"changes": 10})
    five = list(DISTRICTS)[:5]
    g.add([e for d in five for e in log.outage(d, T0)[:3]], T0)
    assert one(g.flush(T0 + 2)).kind == "storm"
    r = fire(g, [e for d in five for e in log.recovery(d, T0 + 300)[:3]], T0 + 300)
    assert (r.kind, r.status) == ("storm", "resolved")
    first = text_of(r, CTX).splitlines()[0]
    assert "SỰ CỐ DIỆN RỘNG" not in first and "KHÔI PHỤC" in first


@pytest.mark.parametrize("fmt", CHATS)
@pytest.mark.parametrize("which", ["storm", "city", "resolved-450"])
def test_texts_stay_within_the_chat_limits(fmt: str, which: str) -> None:
    if which == "storm":
        n = storm_450()
    elif which == "city":
        n = city_450_long_reasons()
        assert len(text_of(n, CTX)) > TEXT_LIMIT[fmt]  # it has to be cut
    else:
        g, log = make(group_by="city", storm={"changes": 1000})
        fire(g, log.all(ALL_POINTS[:450], "down", T0), T0)
        n = fire(g, log.all(ALL_POINTS[:450], "up", T0 + 60), T0 + 60)
        assert n.kind == "resolved" and len(n.alerts) == 450
    text = doc_of(n, fmt)["text"]
    assert 0 < len(text) <= TEXT_LIMIT[fmt]
    assert len(text.encode("utf-16-le")) // 2 <= 4096  # Telegram counts UTF-16 units
    assert text.splitlines()[0] == text_of(n, CTX).splitlines()[0]
    if which == "city":
        assert text.endswith("…")


def test_district_names_are_intact_in_every_format() -> None:
    n, _ = district_outage()
    for fmt, r in RECEIVERS.items():
        body = render(n, r, CTX).body
        assert "Huyện Ba Vì".encode() in body, fmt
        assert b"\\u" not in body, fmt
        body.decode("utf-8")


def test_points_of_the_outage_are_in_every_json_format() -> None:
    n, _ = district_outage()
    want = set(points_of("ba-vi"))
    assert {a["point"] for a in doc_of(n, "confmon")["alerts"]} == want
    assert {a["labels"]["point"] for a in doc_of(n, "alertmanager")["alerts"]} == want
    assert {a["labels"]["point"] for a in doc_of(n, "alertmanager-api")} == want
