"""The report as one self-contained HTML file: readable on screen, printed on A4.

Nothing is loaded from anywhere: the CSS is inline, the charts are inline SVG, the fonts
are the reader's own (a list of families that have the Vietnamese letters). The page is
UTF-8 and says so; every text from outside (names, reasons, the log's path) goes through
:func:`monitor.text.printable` and is HTML-escaped, in the tables and in the charts' tooltips.

For print: ``@page`` is A4 with the page number at the foot; tables repeat their heading
row on each page and never cut a row in two; the charts are not split; the appendix of
every room starts on a page of its own.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

from monitor.report.compute import NOT_RUNNING, District, Report, Room, Segment
from monitor.report.words import (
    COLUMNS,
    CONDITION,
    HEADINGS,
    METHOD,
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
from monitor.vietnamese import state_counts

__all__ = ["render"]

#: each condition's colour (the dashboard's, made darker for paper)
COLOURS = {
    "up": "#2f9e5b",
    "degraded": "#e0a11b",
    "down": "#d0342c",
    "unreachable": "#8e3fb0",
    "unknown": "#a3a9b0",
    "maintenance": "#3d7cc9",
    NOT_RUNNING: "url(#not-running)",
}
_LEGEND_ORDER = ("up", "degraded", "down", "unreachable", "maintenance", "unknown", NOT_RUNNING)

_CSS = """
@page {
  size: A4 portrait;
  margin: 14mm 12mm 16mm 12mm;
  @bottom-center { content: "Trang " counter(page) " / " counter(pages); font: 8pt sans-serif; color: #555; }
}
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  font-family: "Noto Sans", "DejaVu Sans", "Liberation Sans", Arial, "Segoe UI", sans-serif;
  font-size: 10pt; line-height: 1.35; color: #1b1f24; background: #fff;
  max-width: 1100px; margin: 0 auto; padding: 16px 20px;
}
header { border-bottom: 2px solid #1b1f24; padding-bottom: 6px; margin-bottom: 10px; }
header .org { font-weight: bold; text-transform: uppercase; font-size: 10pt; margin: 0; }
header h1 { font-size: 16pt; text-transform: uppercase; margin: 6px 0 2px; }
header .when { font-size: 11pt; margin: 0 0 2px; }
header .meta { font-size: 8pt; color: #555; margin: 0; word-break: break-all; }
h2 { font-size: 12pt; margin: 14px 0 6px; border-bottom: 1px solid #c9ced4; padding-bottom: 2px;
  break-after: avoid; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 6px; margin: 6px 0; }
.card { border: 1px solid #c9ced4; border-radius: 3px; padding: 5px 7px; break-inside: avoid; }
.card .k { font-size: 8pt; color: #555; }
.card .v { font-size: 13pt; font-weight: bold; }
.card .s { font-size: 8pt; color: #333; }
.notes { border-left: 3px solid #e0a11b; background: #fff8e6; padding: 4px 8px; margin: 6px 0;
  font-size: 9pt; }
.notes p { margin: 2px 0; }
figure { margin: 4px 0 8px; break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
.legend { font-size: 8pt; margin: 2px 0 0; }
.legend span { display: inline-block; margin-right: 10px; white-space: nowrap; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 3px;
  vertical-align: -1px; border: 1px solid #777; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; font-size: 8.5pt; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { border: 1px solid #c9ced4; padding: 2px 4px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: bold; }
table.narrow th { white-space: nowrap; }
td.n, th.n { text-align: right; }
td.n, td.t, td.name { white-space: nowrap; }
td.reason { font-size: 8pt; word-break: break-word; }
tr.district td { background: #f5f6f8; font-weight: bold; }
tr.district { break-after: avoid; }
.empty { color: #555; font-style: italic; margin: 2px 0 8px; }
.bad { color: #b3261e; font-weight: bold; }
.method { font-size: 8.5pt; color: #333; }
.closing { break-inside: avoid; }
.sign { display: flex; justify-content: flex-end; margin-top: 18px; }
.sign div { text-align: center; width: 45%; font-size: 9.5pt; }
.sign .date { font-style: italic; margin: 0 0 4px; }
.sign .role { font-weight: bold; text-transform: uppercase; margin: 0; }
.sign .hint { font-style: italic; font-size: 8.5pt; color: #555; margin-bottom: 48px; }
section.appendix { break-before: page; }
section.appendix table { font-size: 7pt; line-height: 1.2; }
section.appendix td, section.appendix th { padding: 1px 3px; }
@media print {
  /* 1px each side: the outer half of a collapsed table border is not cut at the margin */
  body { max-width: none; padding: 0 1px; font-size: 9.5pt; }
}
"""


def _e(text: str) -> str:
    """Outside text for HTML: control characters escaped, then markup."""
    return html.escape(printable(text), quote=True)


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>"


def _table(
    headings: Iterable[tuple[str, str]], rows: Iterable[str], empty: str, *, narrow: bool = False
) -> str:
    """A table, or the sentence ``empty`` when it has no rows; ``narrow``: few columns, whose
    headings are kept on one line."""
    body = "".join(rows)
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(
        f'<th class="{cls}">{_e(COLUMNS[key])}</th>' if cls else f"<th>{_e(COLUMNS[key])}</th>"
        for key, cls in headings
    )
    table = '<table class="narrow">' if narrow else "<table>"
    return f"{table}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(report: Report) -> str:
    """The whole document."""
    clock = Clock(report)
    meta = report.meta
    title = f"{HEADINGS['title']} — {meta.title}"
    body = [
        _header(report, clock),
        _summary(report, clock),
        _notes(report, clock),
        f"<h2>{_e(HEADINGS['timeline'])}</h2>",
        _timeline(report, clock),
        f"<h2>{_e(HEADINGS['availability'])}</h2>",
        _availability(report),
        f"<h2>{_e(HEADINGS['incidents'])}</h2>",
        _incidents(report, clock),
        f"<h2>{_e(HEADINGS['degraded'])}</h2>",
        _degraded(report, clock),
        f"<h2>{_e(HEADINGS['gaps'])}</h2>",
        _gaps(report, clock),
        f"<h2>{_e(HEADINGS['districts'])}</h2>",
        _districts(report),
        f"<h2>{_e(HEADINGS['rooms_hit'])}</h2>",
        _rooms([r for r in report.rooms if r.troubled], report),
        '<div class="closing">',
        f"<h2>{_e(HEADINGS['method'])}</h2>",
        f'<p class="method">{_e(METHOD)}</p>',
        _signature(report, clock),
        "</div>",
        '<section class="appendix">',
        f"<h2>{_e(HEADINGS['rooms'])}</h2>",
        _rooms(list(report.rooms), report),
        "</section>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="vi">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="confmon {_e(meta.version)}">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _header(report: Report, clock: Clock) -> str:
    meta = report.meta
    source = f"nhật ký sự kiện {meta.source}"
    if meta.inventory:
        source += f", danh mục {meta.inventory}"
    return (
        "<header>"
        f'<p class="org">{_e(meta.title)}</p>'
        f"<h1>{_e(HEADINGS['title'])}</h1>"
        f'<p class="when">Phiên họp {_e(clock.window(meta.start, meta.end))} '
        f"(giờ {_e(meta.timezone)})</p>"
        f'<p class="meta">Lập lúc {_e(clock.time(meta.generated_at))} '
        f"{_e(clock.date(meta.generated_at))} bằng confmon {_e(meta.version)} từ {_e(source)}</p>"
        "</header>"
    )


def _card(key: str, value: str, sub: str = "", bad: bool = False) -> str:
    cls = ' class="v bad"' if bad else ' class="v"'
    sub_html = f'<div class="s">{_e(sub)}</div>' if sub else ""
    return f'<div class="card"><div class="k">{_e(key)}</div><div{cls}>{_e(value)}</div>{sub_html}</div>'


def _summary(report: Report, clock: Clock) -> str:
    s = report.summary
    worst = report.district(s.worst_district) if s.worst_district else None
    target = s.readiness_target
    ready_bad = (
        s.readiness_at_start is not None and target is not None and s.readiness_at_start < target
    )
    cards = [
        _card("Số điểm cầu", str(s.rooms), f"{s.districts} quận, huyện, thị xã"),
        _card(
            "Sẵn sàng khi bắt đầu",
            percent(s.readiness_at_start),
            f"{s.ready_at_start}/{s.rooms} điểm cầu"
            + (f"; mục tiêu {percent(target)}" if target is not None else ""),
            bad=ready_bad,
        ),
        _card(
            "Độ khả dụng cả phiên",
            percent(s.availability),
            "theo thời gian, không tính bảo trì",
            bad=s.availability is not None and s.availability < 1.0,
        ),
        _card(
            "Điểm cầu từng mất kết nối",
            str(s.rooms_out),
            f"{s.rooms_degraded} điểm cầu từng có chất lượng kém",
            bad=s.rooms_out > 0,
        ),
        _card("Sự cố mất kết nối", str(s.outages), f"{s.degraded_periods} lần chất lượng kém"),
        _card(
            "Đơn vị kém nhất",
            worst.name if worst is not None else "không có",
            f"độ khả dụng {percent(worst.availability)}" if worst is not None else "",
        ),
        _card(
            "Không giám sát",
            percent(s.times.not_monitored_share),
            f"thời gian; {s.gaps} lần gián đoạn",
        ),
        _card("Điểm cầu có dữ liệu", f"{s.rooms_monitored}/{s.rooms}", ""),
    ]
    return f'<h2>{_e(HEADINGS["summary"])}</h2><div class="cards">{"".join(cards)}</div>'


def _notes(report: Report, clock: Clock) -> str:
    if not report.notes:
        return ""
    lines = "".join(f"<p>{_e(note_text(n, clock))}</p>" for n in report.notes)
    return f'<div class="notes"><p><b>{_e(HEADINGS["notes"])}:</b></p>{lines}</div>'


def _ticks(report: Report, clock: Clock) -> list[float]:
    """Times for the axis: a round step giving at most 8 ticks, on the local clock."""
    start, end = report.meta.start, report.meta.end
    span = max(end - start, 1.0)
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
    step = next((s for s in steps if span / s <= 8), 86400)
    local = clock.local(start)
    midnight = start - (
        local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    )
    first = midnight + math.ceil((start - midnight) / step) * step
    out = []
    t = first
    while t <= end + 1e-6:
        out.append(t)
        t += step
    return out


def _legend(states: Iterable[str]) -> str:
    items = []
    for st in states:
        fill = COLOURS[st]
        style = (
            "background: repeating-linear-gradient(45deg, #d5d9de 0 2px, #fff 2px 4px)"
            if st == NOT_RUNNING
            else f"background: {fill}"
        )
        items.append(f'<span><i style="{style}"></i>{_e(CONDITION[st])}</span>')
    return f'<p class="legend">{"".join(items)}</p>'


_PATTERN = (
    '<defs><pattern id="not-running" width="4" height="4" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="4" height="4" fill="#ffffff"/>'
    '<rect width="2" height="4" fill="#d5d9de"/></pattern></defs>'
)


def _segment_title(d: District, s: Segment, clock: Clock) -> str:
    what = state_counts(s.rooms)
    if s.rooms.get(NOT_RUNNING):
        what = ", ".join(x for x in (what, f"{s.rooms[NOT_RUNNING]} {CONDITION[NOT_RUNNING]}") if x)
    return f"{d.name} {clock.time(s.start)}–{clock.time(s.end)}: {what or 'tất cả hoạt động'}"


def _timeline(report: Report, clock: Clock) -> str:
    width, label, x0, x1, row, top = 1000, 200, 207, 990, 18, 4
    start, end = report.meta.start, report.meta.end
    span = max(end - start, 1e-9)

    def x(t: float) -> float:
        return x0 + (min(max(t, start), end) - start) / span * (x1 - x0)

    height = top + row * len(report.districts) + 26
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(HEADINGS["timeline"])}" font-size="12.5" '
        'font-family="Noto Sans, DejaVu Sans, Liberation Sans, Arial, sans-serif">',
        _PATTERN,
    ]
    ticks = _ticks(report, clock)
    bottom = top + row * len(report.districts)
    for t in ticks:
        out.append(
            f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{bottom + 3}" '
            'stroke="#9aa1a9" stroke-width="0.5"/>'
        )
        out.append(
            f'<text x="{x(t):.1f}" y="{bottom + 17}" text-anchor="middle" fill="#333">'
            f"{_e(clock.minute(t))}</text>"
        )
    for i, d in enumerate(report.districts):
        y = top + i * row
        out.append(
            f'<text x="{label}" y="{y + row - 5}" text-anchor="end" fill="#1b1f24">{_e(d.name)}</text>'
        )
        out.append(
            f'<rect x="{x0}" y="{y + 1}" width="{x1 - x0}" height="{row - 3}" fill="#f1f3f5"/>'
        )
        for s in d.timeline:
            a, b = x(s.start), x(s.end)
            out.append(
                f'<rect x="{a:.2f}" y="{y + 1}" width="{max(b - a, 0.8):.2f}" height="{row - 3}" '
                f'fill="{COLOURS[s.worst]}"><title>{_e(_segment_title(d, s, clock))}</title></rect>'
            )
    out.append("</svg>")
    return f"<figure>{''.join(out)}{_legend(_LEGEND_ORDER)}</figure>"


def _availability(report: Report) -> str:
    width, label, x0, x1, row, top = 1000, 200, 207, 895, 16, 4
    target = report.summary.readiness_target
    height = top + row * len(report.districts) + 22
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(HEADINGS["availability"])}" font-size="12.5" '
        'font-family="Noto Sans, DejaVu Sans, Liberation Sans, Arial, sans-serif">'
    ]
    bottom = top + row * len(report.districts)
    for i, d in enumerate(report.districts):
        y = top + i * row
        out.append(
            f'<text x="{label}" y="{y + row - 5}" text-anchor="end" fill="#1b1f24">{_e(d.name)}</text>'
        )
        a = d.availability
        tip = f"{d.name}: {percent(a)}"
        if a is None:
            out.append(
                f'<rect x="{x0}" y="{y + 1}" width="{x1 - x0}" height="{row - 3}" '
                f'fill="url(#not-running)"><title>{_e(tip)}</title></rect>'
            )
        else:
            good = (x1 - x0) * a
            lost = (x1 - x0) - good
            if 0 < lost < 2:  # a short outage stays visible
                good, lost = (x1 - x0) - 2, 2
            out.append(
                f'<rect x="{x0}" y="{y + 1}" width="{good:.2f}" height="{row - 3}" '
                f'fill="{COLOURS["up"]}"><title>{_e(tip)}</title></rect>'
            )
            if lost > 0:
                out.append(
                    f'<rect x="{x0 + good:.2f}" y="{y + 1}" width="{lost:.2f}" height="{row - 3}" '
                    f'fill="{COLOURS["down"]}"><title>{_e(tip)}</title></rect>'
                )
        bad = a is not None and a < 1.0
        colour, weight = ("#b3261e", ' font-weight="bold"') if bad else ("#1b1f24", "")
        out.append(
            f'<text x="{x1 + 6}" y="{y + row - 5}" fill="{colour}"{weight}>{_e(percent(a))}</text>'
        )
    for frac, text in ((0.0, "0%"), (0.5, "50%"), (1.0, "100%")):
        xx = x0 + (x1 - x0) * frac
        out.append(
            f'<text x="{xx:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#333">{text}</text>'
        )
    if target is not None:
        xt = x0 + (x1 - x0) * target
        out.append(
            f'<line x1="{xt:.1f}" y1="{top}" x2="{xt:.1f}" y2="{bottom}" stroke="#1b1f24" '
            'stroke-width="0.8" stroke-dasharray="3,2"/>'
        )
    out.insert(1, _PATTERN)
    out.append("</svg>")
    legend = (
        '<p class="legend"><span><i style="background: #2f9e5b"></i>khả dụng</span>'
        '<span><i style="background: #d0342c"></i>mất kết nối, không truy cập được</span>'
        + (
            f"<span>- - - mục tiêu sẵn sàng {_e(percent(target))}</span>"
            if target is not None
            else ""
        )
        + "</p>"
    )
    return f"<figure>{''.join(out)}{legend}</figure>"


def _incidents(report: Report, clock: Clock) -> str:
    rows = []
    for i in report.incidents:
        cause = (
            i.cause_name
            if i.cause_name == i.district_name
            else f"{i.cause_name} ({i.district_name})"
        )
        start = clock.time(i.start) + (" (trước khung giờ)" if i.before_window else "")
        rows.append(
            "<tr>"
            + _td(str(i.number), "n")
            + _td(cause)
            + _td(start, "t")
            + _td(clock.end(i.end), "t")
            + _td(seconds(i.duration), "n")
            + _td(seconds(i.time_to_detect), "n")
            + _td(seconds(i.time_to_recover), "n")
            + _td(incident_rooms(i))
            + _td(i.reason, "reason")
            + "</tr>"
        )
    headings = [
        ("number", "n"),
        ("cause", ""),
        ("start", ""),
        ("end", ""),
        ("duration", "n"),
        ("detect", "n"),
        ("recover", "n"),
        ("rooms", ""),
        ("reason", ""),
    ]
    return _table(headings, rows, "Không có sự cố mất kết nối trong khung thời gian.", narrow=True)


def _degraded(report: Report, clock: Clock) -> str:
    rows = []
    for p in report.degraded:
        f = p.figures
        figures = f"RTT {figure_rtt(f.rtt)}, mất gói {figure_loss(f.loss)}, MOS {figure_mos(f.mos)}"
        rows.append(
            "<tr>"
            + _td(str(p.number), "n")
            + _td(f"{p.name} ({p.district_name})" if p.point != p.district else p.name)
            + _td(clock.time(p.start), "t")
            + _td(clock.end(p.end), "t")
            + _td(seconds(p.duration), "n")
            + _td(f"{p.reason} — {figures}", "reason")
            + "</tr>"
        )
    headings = [
        ("number", "n"),
        ("room", ""),
        ("start", ""),
        ("end", ""),
        ("duration", "n"),
        ("crossed", ""),
    ]
    return _table(headings, rows, "Không có điểm cầu nào có chất lượng kém.", narrow=True)


def _gaps(report: Report, clock: Clock) -> str:
    rows = []
    names = {d.id: d.name for d in report.districts}
    for g in report.gaps:
        where = (
            "tất cả"
            if len(g.districts) == len(report.districts)
            else ", ".join(names.get(d, d) for d in g.districts)
        )
        rows.append(
            "<tr>"
            + _td(gap_kind(g))
            + _td(clock.time(g.start), "t")
            + _td(clock.end(g.end), "t")
            + _td(seconds(g.duration), "n")
            + _td(f"{g.rooms} ({where})")
            + _td(g.reason, "reason")
            + "</tr>"
        )
    headings = [
        ("kind", ""),
        ("start", ""),
        ("end", ""),
        ("duration", "n"),
        ("rooms", ""),
        ("reason", ""),
    ]
    return _table(headings, rows, "Không có gián đoạn giám sát.", narrow=True)


def _districts(report: Report) -> str:
    rows = []
    for d in report.districts:
        w = d.worst
        bad = d.availability is not None and d.availability < 1.0
        rows.append(
            "<tr>"
            + _td(d.name, "name")
            + _td(str(d.rooms), "n")
            + (
                f'<td class="n bad">{_e(percent(d.availability))}</td>'
                if bad
                else _td(percent(d.availability), "n")
            )
            + _td(seconds(d.out_seconds), "n")
            + _td(str(d.rooms_out), "n")
            + _td(str(d.rooms_degraded), "n")
            + _td(percent(d.times.not_monitored_share), "n")
            + _td(figure_rtt(w.rtt), "n")
            + _td(figure_loss(w.loss), "n")
            + _td(figure_mos(w.mos), "n")
            + "</tr>"
        )
    headings = [
        ("district", ""),
        ("rooms", "n"),
        ("availability", "n"),
        ("out", "n"),
        ("rooms_out", "n"),
        ("degraded", "n"),
        ("not_monitored", "n"),
        ("rtt", "n"),
        ("loss", "n"),
        ("mos", "n"),
    ]
    return _table(headings, rows, "")


def _room_row(r: Room) -> str:
    w = r.worst
    bad = r.availability is not None and r.availability < 1.0
    return (
        "<tr>"
        + _td(r.name, "name")
        + (
            f'<td class="n bad">{_e(percent(r.availability))}</td>'
            if bad
            else _td(percent(r.availability), "n")
        )
        + _td(seconds(r.times.out), "n")
        + _td(seconds(r.times.degraded), "n")
        + _td(seconds(r.times.not_monitored), "n")
        + _td(figure_rtt(w.rtt), "n")
        + _td(figure_loss(w.loss), "n")
        + _td(figure_mos(w.mos), "n")
        + "</tr>"
    )


def _rooms(rooms: list[Room], report: Report) -> str:
    """Rooms by district, each district a group of rows kept on one page."""
    names = {d.id: d.name for d in report.districts}
    groups: dict[str, list[str]] = {}
    for r in rooms:
        groups.setdefault(r.district, []).append(_room_row(r))
    if not groups:
        return f'<p class="empty">{_e("Không có điểm cầu nào mất kết nối hoặc có chất lượng kém.")}</p>'
    headings = [
        ("room", ""),
        ("availability", "n"),
        ("out", "n"),
        ("degraded", "n"),
        ("not_monitored", "n"),
        ("rtt", "n"),
        ("loss", "n"),
        ("mos", "n"),
    ]
    head = "".join(
        f'<th class="{cls}">{_e(COLUMNS[key])}</th>' if cls else f"<th>{_e(COLUMNS[key])}</th>"
        for key, cls in headings
    )
    bodies = "".join(
        f'<tbody class="group"><tr class="district"><td colspan="{len(headings)}">'
        f"{_e(names.get(did, did))}</td></tr>{''.join(rows)}</tbody>"
        for did, rows in groups.items()
    )
    return f"<table><thead><tr>{head}</tr></thead>{bodies}</table>"


def _signature(report: Report, clock: Clock) -> str:
    when = clock.local(report.meta.generated_at)
    return (
        '<div class="sign"><div>'
        f'<p class="date">Ngày {when:%d} tháng {when:%m} năm {when:%Y}</p>'
        '<p class="role">Người lập báo cáo</p>'
        '<p class="hint">(Ký, ghi rõ họ tên)</p></div></div>'
    )
