"""The report as CSV for spreadsheets: one file, one block per table.

Each block is a line with its name (``report``, ``summary``, ``incidents``, ``degraded``,
``gaps``, ``districts``, ``rooms``, ``notes``), a heading row, its rows, and an empty line.
``report`` is two columns, ``field,value``. Times are local (``2026-11-26 08:05:12``, in
the time zone the ``report`` block names), durations in seconds, ratios from 0 to 1, RTT
and jitter in milliseconds; an empty cell is a figure that is not known. Every text cell
goes through :func:`monitor.inventory.writer.csv_cell`, so a name such as ``=HYPERLINK(...)``
is text to the spreadsheet, never a formula.
"""

from __future__ import annotations

import csv
import datetime
import io
import zoneinfo
from collections.abc import Callable, Iterable

from monitor.inventory.writer import csv_cell
from monitor.report.compute import Figures, Period, Report, Times
from monitor.text import printable

__all__ = ["SECTIONS", "render"]

#: the blocks, in order
SECTIONS = ("report", "summary", "incidents", "degraded", "gaps", "districts", "rooms", "notes")

_TIMES = ("up", "degraded", "down", "unreachable", "maintenance", "unknown", "not_running")
_FIGURES = ("worst_rtt_ms", "worst_jitter_ms", "worst_loss_ratio", "worst_mos")


def _text(value: str) -> str:
    return csv_cell(printable(value))


def _number(value: float | None, places: int = 3) -> str:
    return "" if value is None else f"{value:.{places}f}"


def _times(t: Times) -> list[str]:
    return [_number(getattr(t, name)) for name in _TIMES]


def _figures(f: Figures) -> list[str]:
    ms = (None if v is None else v * 1000 for v in (f.rtt, f.jitter))
    return [*(_number(v) for v in ms), _number(f.loss, 6), _number(f.mos, 2)]


#: the columns an incident and a degraded period share, first in both blocks
_PERIOD = (
    "number",
    "district",
    "district_name",
    "start",
    "end",
    "before_window",
    "duration_seconds",
    "time_to_detect_seconds",
    "time_to_recover_seconds",
    "reason",
)


def _period(p: Period, when: Callable[[float | None], str]) -> list[str]:
    return [
        str(p.number),
        _text(p.district),
        _text(p.district_name),
        when(p.start),
        when(p.end),
        "yes" if p.before_window else "no",
        _number(p.duration),
        _number(p.time_to_detect),
        _number(p.time_to_recover),
        _text(p.reason),
    ]


def render(report: Report) -> str:
    tz = zoneinfo.ZoneInfo(report.meta.timezone)

    def when(t: float | None) -> str:
        if t is None:
            return ""
        return datetime.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")

    def block(name: str, heading: list[str], rows: Iterable[list[str]]) -> None:
        w.writerow([name])
        w.writerow(heading)
        w.writerows(rows)
        w.writerow([])

    m, s = report.meta, report.summary
    block(
        "report",
        ["field", "value"],
        [
            ["title", _text(m.title)],
            ["from", when(m.start)],
            ["to", when(m.end)],
            ["requested_to", when(m.requested_end)],
            ["timezone", _text(m.timezone)],
            ["generated_at", when(m.generated_at)],
            ["source", _text(m.source)],
            ["inventory", _text(m.inventory or "")],
            ["interval_seconds", _number(m.interval)],
            ["confmon_version", _text(m.version)],
        ],
    )
    block(
        "summary",
        [
            "rooms",
            "districts",
            "rooms_monitored",
            "ready_at_start",
            "readiness_at_start",
            "readiness_target",
            "availability",
            "rooms_out",
            "rooms_degraded",
            "outages",
            "degraded_periods",
            "gaps",
            "worst_district",
            *(f"{t}_seconds" for t in _TIMES),
        ],
        [
            [
                str(s.rooms),
                str(s.districts),
                str(s.rooms_monitored),
                str(s.ready_at_start),
                _number(s.readiness_at_start, 6),
                _number(s.readiness_target, 6),
                _number(s.availability, 6),
                str(s.rooms_out),
                str(s.rooms_degraded),
                str(s.outages),
                str(s.degraded_periods),
                str(s.gaps),
                _text(s.worst_district or ""),
                *_times(s.times),
            ]
        ],
    )
    block(
        "incidents",
        [
            *_PERIOD,
            "cause",
            "cause_name",
            "rooms",
            "rooms_down",
            "rooms_unreachable",
        ],
        (
            [
                *_period(i, when),
                _text(i.cause),
                _text(i.cause_name),
                str(i.rooms),
                str(i.rooms_by_state.get("down", 0)),
                str(i.rooms_by_state.get("unreachable", 0)),
            ]
            for i in report.incidents
        ),
    )
    block(
        "degraded",
        [*_PERIOD, "point", "name", "rtt_ms", "jitter_ms", "loss_ratio", "mos"],
        (
            [*_period(p, when), _text(p.point), _text(p.name), *_figures(p.figures)]
            for p in report.degraded
        ),
    )
    block(
        "gaps",
        ["kind", "cause", "start", "end", "duration_seconds", "rooms", "districts", "reason"],
        (
            [
                g.kind,
                _text(g.cause),
                when(g.start),
                when(g.end),
                _number(g.duration),
                str(g.rooms),
                _text(" ".join(g.districts)),
                _text(g.reason),
            ]
            for g in report.gaps
        ),
    )
    block(
        "districts",
        [
            "district",
            "name",
            "rooms",
            "availability",
            "out_seconds",
            "rooms_out",
            "rooms_degraded",
            *(f"{t}_seconds" for t in _TIMES),
            *_FIGURES,
        ],
        (
            [
                _text(d.id),
                _text(d.name),
                str(d.rooms),
                _number(d.availability, 6),
                _number(d.out_seconds),
                str(d.rooms_out),
                str(d.rooms_degraded),
                *_times(d.times),
                *_figures(d.worst),
            ]
            for d in report.districts
        ),
    )
    block(
        "rooms",
        [
            "point",
            "name",
            "district",
            "level",
            "at_start",
            "availability",
            "changes",
            *(f"{t}_seconds" for t in _TIMES),
            *_FIGURES,
        ],
        (
            [
                _text(r.id),
                _text(r.name),
                _text(r.district),
                _text(r.level),
                r.at_start,
                _number(r.availability, 6),
                str(r.changes),
                *_times(r.times),
                *_figures(r.worst),
            ]
            for r in report.rooms
        ),
    )
    block("notes", ["code", "text"], ([n.code, _text(n.text)] for n in report.notes))
    return buf.getvalue()
