"""The report as Markdown, for a chat (Slack, Mattermost, Telegram with Markdown, a wiki).

Short on purpose: the summary, the incidents, degraded periods and gaps, one line per
district, and the rooms that were out or degraded; every room is in the CSV and the HTML.
Texts from outside are made printable, then every character that Markdown would read as
markup in a table cell is escaped (``|``, ``*``, ``_``, brackets, ``<`` ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from monitor.report.compute import Report
from monitor.report.words import (
    COLUMNS,
    HEADINGS,
    Clock,
    figure_loss,
    figure_mos,
    figure_rtt,
    gap_kind,
    incident_rooms,
    note_text,
    percent,
    seconds,
)
from monitor.text import printable

__all__ = ["render"]

#: what Markdown may read as markup inside a line; ``_`` only where it can start or end
#: emphasis (between two letters, as in ``Asia/Ho_Chi_Minh``, it is plain text)
_MARKUP = re.compile(r"[\\`*\[\]<>|~&#]|(?<![^\W_])_|_(?![^\W_])")


def _m(text: str) -> str:
    """Outside text for Markdown: control characters escaped, then the markup characters."""
    return _MARKUP.sub(lambda m: "\\" + m.group(), printable(text))


def _table(columns: list[tuple[str, bool]], rows: Iterable[list[str]], empty: str) -> list[str]:
    """A GitHub-style table; ``columns`` are (heading key, right-aligned); cells are escaped."""
    body = [f"| {' | '.join(_m(c) for c in row)} |" for row in rows]
    if not body:
        return [f"_{_m(empty)}_", ""]
    head = f"| {' | '.join(_m(COLUMNS[k]) for k, _ in columns)} |"
    rule = f"|{'|'.join('---:' if right else '---' for _, right in columns)}|"
    return [head, rule, *body, ""]


def render(report: Report) -> str:
    clock = Clock(report)
    meta, s = report.meta, report.summary
    worst = report.district(s.worst_district) if s.worst_district else None
    target = f"; mục tiêu {percent(s.readiness_target)}" if s.readiness_target is not None else ""
    out = [
        f"# {_m(HEADINGS['title'])}",
        "",
        f"**{_m(meta.title)}** · phiên họp {_m(clock.window(meta.start, meta.end))} "
        f"(giờ {_m(meta.timezone)})",
        "",
        f"## {_m(HEADINGS['summary'])}",
        "",
        f"- Số điểm cầu: {s.rooms} ({s.districts} quận, huyện, thị xã)",
        f"- Sẵn sàng khi bắt đầu: {_m(percent(s.readiness_at_start))} "
        f"({s.ready_at_start}/{s.rooms} điểm cầu{_m(target)})",
        f"- Độ khả dụng cả phiên: **{_m(percent(s.availability))}**",
        f"- Điểm cầu từng mất kết nối: {s.rooms_out}; từng có chất lượng kém: {s.rooms_degraded}",
        f"- Sự cố mất kết nối: **{s.outages}**; lần chất lượng kém: {s.degraded_periods}",
        "- Đơn vị kém nhất: "
        + (f"{_m(worst.name)} ({_m(percent(worst.availability))})" if worst else "không có"),
        f"- Không giám sát: {_m(percent(s.times.not_monitored_share))} thời gian "
        f"({s.gaps} lần gián đoạn)",
        "",
    ]
    for note in report.notes:
        out += [f"> {_m(note_text(note, clock))}", ""]

    out += [f"## {_m(HEADINGS['incidents'])}", ""]
    out += _table(
        [
            ("number", True),
            ("cause", False),
            ("start", False),
            ("end", False),
            ("duration", True),
            ("detect", True),
            ("recover", True),
            ("rooms", False),
            ("reason", False),
        ],
        (
            [
                str(i.number),
                i.cause_name
                if i.cause_name == i.district_name
                else f"{i.cause_name} ({i.district_name})",
                clock.time(i.start) + (" (trước khung giờ)" if i.before_window else ""),
                clock.end(i.end),
                seconds(i.duration),
                seconds(i.time_to_detect),
                seconds(i.time_to_recover),
                incident_rooms(i),
                i.reason,
            ]
            for i in report.incidents
        ),
        "Không có sự cố mất kết nối trong khung thời gian.",
    )
    out += [f"## {_m(HEADINGS['degraded'])}", ""]
    out += _table(
        [
            ("number", True),
            ("room", False),
            ("start", False),
            ("end", False),
            ("duration", True),
            ("crossed", False),
        ],
        (
            [
                str(p.number),
                f"{p.name} ({p.district_name})" if p.point != p.district else p.name,
                clock.time(p.start),
                clock.end(p.end),
                seconds(p.duration),
                p.reason,
            ]
            for p in report.degraded
        ),
        "Không có điểm cầu nào có chất lượng kém.",
    )
    out += [f"## {_m(HEADINGS['gaps'])}", ""]
    out += _table(
        [("kind", False), ("start", False), ("end", False), ("duration", True), ("rooms", True)],
        (
            [gap_kind(g), clock.time(g.start), clock.end(g.end), seconds(g.duration), str(g.rooms)]
            for g in report.gaps
        ),
        "Không có gián đoạn giám sát.",
    )
    out += [f"## {_m(HEADINGS['districts'])}", ""]
    out += _table(
        [
            ("district", False),
            ("rooms", True),
            ("availability", True),
            ("out", True),
            ("rooms_out", True),
            ("rtt", True),
            ("loss", True),
            ("mos", True),
        ],
        (
            [
                d.name,
                str(d.rooms),
                percent(d.availability),
                seconds(d.out_seconds),
                str(d.rooms_out),
                figure_rtt(d.worst.rtt),
                figure_loss(d.worst.loss),
                figure_mos(d.worst.mos),
            ]
            for d in report.districts
        ),
        "",
    )
    names = {d.id: d.name for d in report.districts}
    out += [f"## {_m(HEADINGS['rooms_hit'])}", ""]
    out += _table(
        [
            ("room", False),
            ("district", False),
            ("availability", True),
            ("out", True),
            ("degraded", True),
        ],
        (
            [
                r.name,
                names.get(r.district, r.district),
                percent(r.availability),
                seconds(r.times.out),
                seconds(r.times.degraded),
            ]
            for r in report.rooms
            if r.troubled
        ),
        "Không có điểm cầu nào mất kết nối hoặc có chất lượng kém.",
    )
    out.append(
        f"_confmon {_m(meta.version)}, lập lúc {_m(clock.time(meta.generated_at))} "
        f"{_m(clock.date(meta.generated_at))}; từng điểm cầu: xem bản CSV hoặc HTML._"
    )
    return "\n".join(out) + "\n"
