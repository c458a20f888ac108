"""A :class:`~monitor.alerts.grouping.Notification` as each receiver format wants it.

* ``confmon``: the native JSON (contract, ../shared/design.md), English field names,
  signed by the sender (``X-Confmon-Signature: sha256=<hex HMAC-SHA256 of the body>``).
* ``alertmanager``: the payload Alertmanager's webhook receiver sends (version 4), so
  a receiver written for Alertmanager works unchanged: one alert per point, labels
  ``alertname, point, district, level, severity``, ``endsAt`` of a firing alert the zero
  time, as Alertmanager writes it.
* ``alertmanager-api``: the list that Prometheus POSTs to ``/api/v2/alerts``; firing
  alerts carry an ``endsAt`` :data:`AM_RESEND` × 4 ahead and are re-sent every
  :data:`AM_RESEND` while they fire (what Prometheus does), resolved ones end now.
* ``slack`` (incoming webhook), ``telegram`` (Bot API ``sendMessage``) and ``zalo``
  (Zalo Bot Platform ``sendMessage``, Telegram-like ``{chat_id, text}``): one text in
  Vietnamese, the language the council's officials read: names with their diacritics,
  the district, the cause, since when, how many rooms.

The body is rendered once, when the notification is enqueued, and stored: every retry
sends the same bytes (and so the same signature), whatever changed since.
"""

from __future__ import annotations

import datetime
import json
import zoneinfo
from dataclasses import dataclass
from typing import Any

from monitor.alerts.config import Receiver
from monitor.alerts.grouping import Notification
from monitor.vietnamese import STATE_VI as _STATE_VI
from monitor.vietnamese import duration as _span
from monitor.vietnamese import state_counts as _counts

__all__ = ["AM_RESEND", "Context", "Rendered", "render", "text_of"]

#: how often firing alerts are re-sent to an Alertmanager API (Prometheus: resend_delay 1m)
AM_RESEND = 60.0
#: the longest text each chat takes (Telegram 4,096 characters; Zalo's bot API 2,000)
TEXT_LIMIT = {"telegram": 4000, "zalo": 2000, "slack": 3000}
#: rooms listed one by one in a text; beyond, they are counted
LISTED = 10

_SEVERITY = {
    "down": "critical",
    "unreachable": "critical",
    "degraded": "warning",
    "unknown": "info",
    "maintenance": "info",
    "test": "none",
}
_ALERTNAME = {
    "down": "ConfmonPointDown",
    "unreachable": "ConfmonPointUnreachable",
    "degraded": "ConfmonPointDegraded",
    "unknown": "ConfmonMonitoringGap",
    "maintenance": "ConfmonPointMaintenance",
    "test": "ConfmonTest",
}
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Context:
    """What every format needs besides the notification."""

    monitor: str
    timezone: str
    #: where a person can look (the API's URL), for links; may be empty
    external_url: str = ""


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    #: a one-line summary for logs, the API and the demo's printout
    summary: str
    #: the whole human text (chat formats; the summary for the others)
    text: str


def render(n: Notification, receiver: Receiver, ctx: Context) -> Rendered:
    """The bytes to POST for ``n`` to ``receiver``."""
    text = text_of(n, ctx)
    summary = text.splitlines()[0] if text else n.kind
    fmt = receiver.format
    doc: Any
    if fmt == "confmon":
        doc = _native(n, ctx)
    elif fmt == "alertmanager":
        doc = _am_webhook(n, receiver, ctx, text)
    elif fmt == "alertmanager-api":
        doc = _am_api(n, ctx, text)
    elif fmt == "slack":
        doc = {"text": _slack(_cut(text, TEXT_LIMIT["slack"])), "unfurl_links": False}
    else:  # telegram, zalo
        chat: str | int = receiver.chat_id if receiver.chat_id is not None else ""
        doc = {"chat_id": chat, "text": _cut(text, TEXT_LIMIT[fmt])}
        if fmt == "telegram":
            doc["disable_web_page_preview"] = True
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Rendered(body, "application/json; charset=utf-8", summary, text)


def _slack(text: str) -> str:
    """Slack's mrkdwn reads ``&``, ``<`` and ``>`` as markup: escaped as it documents."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 2].rstrip() + " …"


# --- the JSON formats --------------------------------------------------------------------


def _native(n: Notification, ctx: Context) -> dict[str, Any]:
    return {
        "version": "1",
        "status": n.status,
        "kind": n.kind,
        "receiver": n.receiver,
        "monitor": ctx.monitor,
        "group": n.group,
        "alerts": [
            {
                "point": a["point"],
                "name": a["name"],
                "district": a["district"],
                "district_name": a["district_name"],
                "level": a["level"],
                "state": a["state"],
                "previous": a["previous"],
                "since": a["since"],
                "reason": a["reason"],
                "cause": a["cause"],
                "metrics": a["metrics"],
                **({"resolved_from": a["was"]} if a.get("was") else {}),
            }
            for a in n.alerts
        ],
        "sent_at": n.created_at,
    }


def _iso(t: float | None) -> str:
    if t is None:
        return _ZERO_TIME
    return (
        datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _labels(a: dict[str, Any]) -> dict[str, str]:
    state = a.get("was") or a["state"]
    return {
        "alertname": _ALERTNAME.get(state, "ConfmonPoint"),
        "point": a["point"],
        "district": a["district"],
        "level": a["level"],
        "severity": _SEVERITY.get(state, "info"),
    }


def _annotations(a: dict[str, Any], ctx: Context) -> dict[str, str]:
    state = a.get("was") or a["state"]
    where = f" ({a['district_name']})" if a["district_name"] not in ("", a["name"]) else ""
    out = {
        "summary": f"{a['name']}{where}: {_STATE_VI.get(state, state)}",
        "name": a["name"],
        "description": a["reason"],
        "cause": a["cause"],
    }
    if a.get("was"):
        out["summary"] = f"{a['name']}{where}: {_STATE_VI['up']}"
    return out


def _fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted names and
    values, each followed by 0xff), so an alert has one id whether it reaches a receiver
    from confmon directly or through an Alertmanager."""
    h = 0xCBF29CE484222325
    for key in sorted(labels):
        for byte in key.encode() + b"\xff" + labels[key].encode() + b"\xff":
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _group_labels(n: Notification) -> dict[str, str]:
    g = n.group
    if "district" in g:
        return {"district": g["district"]}
    by, _, value = str(g.get("key", "")).partition(":")
    return {by: value} if value else {}


def _am_webhook(n: Notification, receiver: Receiver, ctx: Context, text: str) -> dict[str, Any]:
    alerts: list[dict[str, Any]] = []
    started = n.group.get("started")
    for a in _with_replaced(n.alerts):
        labels = _labels(a)
        resolved = bool(a.get("was"))
        alerts.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": labels,
                "annotations": _annotations(a, ctx),
                "startsAt": _iso(
                    (a.get("prior_since") or started or a["since"]) if resolved else a["since"]
                ),
                "endsAt": _iso(a["since"] or n.created_at) if resolved else _ZERO_TIME,
                "generatorURL": ctx.external_url,
                "fingerprint": _fingerprint(labels),
            }
        )
    group = _group_labels(n)
    common = _common([dict(a["labels"]) for a in alerts])
    common_ann = _common([dict(a["annotations"]) for a in alerts])
    key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return {
        "receiver": receiver.name,
        "status": n.status,
        "alerts": alerts,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": common_ann,
        "externalURL": ctx.external_url,
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _with_replaced(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``alerts`` and, for each whose state changed since the last message (down to
    unreachable, say), the old one as resolved: Alertmanager knows an alert by its labels,
    and the alert name says the state."""
    out = list(alerts)
    for a in alerts:
        if a.get("replaces"):
            old = {**a, "was": a["replaces"], "replaces": None}
            old["prior_since"] = a.get("replaced_since") or a.get("prior_since")
            out.append(old)
    return out


def _am_api(n: Notification, ctx: Context, text: str) -> list[dict[str, Any]]:
    out = []
    started = n.group.get("started")
    for a in _with_replaced(n.alerts):
        resolved = bool(a.get("was"))
        # as Prometheus does: startsAt always, a resolved alert's the start of its trouble
        starts = (a.get("prior_since") or started or a["since"]) if resolved else a["since"]
        out.append(
            {
                "labels": _labels(a),
                "annotations": _annotations(a, ctx),
                "startsAt": _iso(starts if starts is not None else n.created_at),
                "endsAt": _iso(n.created_at if resolved else n.created_at + 4 * AM_RESEND),
                "generatorURL": ctx.external_url,
            }
        )
    return out


# --- the text the chats show ----------------------------------------------------------------


def _clock(t: float | None, tz: zoneinfo.ZoneInfo, now: float | None = None) -> str:
    """``HH:MM:SS``, with the date (``dd/mm``) when it is not the day of ``now``."""
    if t is None:
        return "?"
    when = datetime.datetime.fromtimestamp(t, tz=tz)
    if now is not None and when.date() != datetime.datetime.fromtimestamp(now, tz=tz).date():
        return when.strftime("%H:%M:%S %d/%m")
    return when.strftime("%H:%M:%S")


def _title(n: Notification) -> str:
    g = n.group
    if "district_name" in g:
        return str(g["district_name"])
    key = str(g.get("key", ""))
    if key.startswith("gap:agent:"):
        return f"agent {key.removeprefix('gap:agent:')}"
    if key == "gap:all":
        return _where(n)
    causes = g.get("causes") or []
    if key.startswith(("cause:", "point:")) and causes:
        return str(causes[0]["name"])
    if n.alerts and key.startswith(("cause:", "point:")):
        return str(n.alerts[0]["name"])
    return "toàn thành phố"


def _where(n: Notification) -> str:
    """The districts a message's rooms are in: one by name, a few by name, many counted."""
    names = list(dict.fromkeys(a["district_name"] or a["district"] for a in n.alerts))
    if len(names) == 1:
        return str(names[0])
    if 1 < len(names) <= 3:
        return ", ".join(names)
    return f"{len(names)} quận/huyện" if names else "toàn thành phố"


def text_of(n: Notification, ctx: Context) -> str:
    """The Vietnamese text of ``n`` (chat formats; the summary line of the others)."""
    tz = zoneinfo.ZoneInfo(ctx.timezone)
    g = n.group
    prefix = f"[{ctx.monitor}] "
    lines: list[str]
    firing = [a for a in n.alerts if not a.get("was")]
    resolved = [a for a in n.alerts if a.get("was")]
    if n.kind == "test":
        return (
            f"🧪 {prefix}TIN NHẮN THỬ tới {n.receiver}: không phải sự cố. "
            f"Gửi lúc {_clock(n.created_at, tz)}."
        )
    if n.kind in ("gap", "gap-resolved"):
        where = _title(n)
        if n.kind == "gap":
            reason = firing[0]["reason"] if firing else ""
            lines = [
                f"⚪ {prefix}MẤT GIÁM SÁT · {where}",
                f"{len(firing)} điểm không có dữ liệu từ {_clock(g.get('since'), tz)}"
                + (f" ({reason})" if reason else "")
                + ": không phải sự cố tại các điểm, confmon không nhận được kết quả đo.",
            ]
        else:
            back = max((a["since"] for a in resolved if a.get("since")), default=None)
            lines = [
                f"⚪ {prefix}GIÁM SÁT TRỞ LẠI · {where}",
                f"{len(resolved)} điểm lại có dữ liệu lúc {_clock(back or n.created_at, tz)}.",
            ]
        return "\n".join(lines)
    if n.kind == "storm" and not firing:
        return "\n".join(
            [
                f"✅ {prefix}ĐÃ KHÔI PHỤC DIỆN RỘNG: {len(resolved)} điểm hoạt động trở lại "
                f"({g.get('changes', 0)} thay đổi trong {_span(float(g.get('window', 0)))})",
            ]
        )
    if n.kind == "storm":
        lines = [
            f"⚠️ {prefix}SỰ CỐ DIỆN RỘNG: {g.get('changes', 0)} thay đổi trong "
            f"{_span(float(g.get('window', 0)))}, {g.get('rooms', 0)} điểm tại "
            f"{g.get('districts', 0)} quận/huyện",
        ]
        if g.get("counts"):
            lines.append(_counts(g["counts"]))
        for c in (g.get("causes") or [])[:LISTED]:
            lines.append(
                f"• {c['name']}: {_STATE_VI.get(c.get('state', ''), '')} ({c['rooms']} điểm)"
            )
        if resolved:
            lines.append(f"{len(resolved)} điểm đã khôi phục.")
        return "\n".join(lines)
    title = _title(n)
    if n.status == "resolved":
        first = max((a["since"] for a in resolved if a.get("since")), default=None)
        started = g.get("since")
        lines = [f"✅ {prefix}ĐÃ KHÔI PHỤC · {title}"]
        lasted = ""
        earliest = _earliest_problem(n)
        if earliest is not None:
            lasted = f" (sự cố kéo dài {_span((first or n.created_at) - earliest)})"
        lines.append(
            f"{len(resolved)} điểm hoạt động trở lại lúc {_clock(first or started or n.created_at, tz)}"
            + lasted
        )
        for a in resolved[:LISTED]:
            if a["point"] != a.get("cause"):
                continue
            lines.append(f"• {a['name']}: {_STATE_VI.get(a['state'], a['state'])}")
        return "\n".join(lines)
    mark = (
        "🔁"
        if n.kind == "repeat"
        else (
            "🔴"
            if g.get("counts", {}).get("down") or g.get("counts", {}).get("unreachable")
            else "🟡"
        )
    )
    head = "VẪN CÒN SỰ CỐ" if n.kind == "repeat" else "SỰ CỐ"
    lines = [f"{mark} {prefix}{head} · {title}"]
    causes = g.get("causes") or []
    for c in causes[:LISTED]:
        state = _STATE_VI.get(c.get("state", ""), c.get("state", ""))
        rooms = f" · {c['rooms']} điểm bị ảnh hưởng" if c["rooms"] > 1 else ""
        reason = f" ({c['reason']})" if c.get("reason") else ""
        lines.append(
            f"• {c['name']}: {state} từ {_clock(c.get('since'), tz, n.created_at)}{reason}{rooms}"
        )
    if len(causes) > LISTED:
        lines.append(f"… và {len(causes) - LISTED} nguyên nhân khác")
    if g.get("rooms", 0) > 1 and g.get("counts"):
        waiting = g["rooms"] - sum(g["counts"].values())
        pending = f", {waiting} đang chờ kết quả đo" if waiting > 0 else ""
        lines.append(f"Tổng: {g['rooms']} điểm — {_counts(g['counts'])}{pending}")
    if resolved:
        names = ", ".join(a["name"] for a in resolved[:LISTED])
        more = f" và {len(resolved) - LISTED} điểm khác" if len(resolved) > LISTED else ""
        lines.append(f"Đã khôi phục: {names}{more}")
    if ctx.external_url:
        lines.append(ctx.external_url)
    return "\n".join(lines)


def _earliest_problem(n: Notification) -> float | None:
    """When the trouble a resolved message ends began, if the group says (``since``)."""
    value = n.group.get("started")
    return float(value) if isinstance(value, int | float) else None
