"""The report as JSON for scripts, in the shape ``docs/report.schema.json`` describes
(JSON Schema 2020-12; ``format`` is ``confmon-report``, ``version`` 1, and a new version
is only made for a change a script would trip on).

Units are the base ones, as in the metrics: seconds (durations, RTT, jitter), ratios from
0 to 1 (availability, readiness, loss); MOS from 1 to 4.5; ``null`` is a figure that is not
known. Times are ISO 8601 with the report's UTC offset. Texts are written as stored, with
:func:`monitor.text.printable` applied, and non-ASCII letters as they are (UTF-8).
"""

from __future__ import annotations

import datetime
import json
import zoneinfo
from typing import Any

from monitor.report.compute import Figures, Period, Report, Segment, Times
from monitor.text import printable

__all__ = ["FORMAT", "VERSION", "render"]

FORMAT = "confmon-report"
VERSION = 1


def _times(t: Times) -> dict[str, float]:
    return {
        "up": t.up,
        "degraded": t.degraded,
        "down": t.down,
        "unreachable": t.unreachable,
        "maintenance": t.maintenance,
        "unknown": t.unknown,
        "not_running": t.not_running,
    }


def _figures(f: Figures) -> dict[str, float | None]:
    return {"rtt": f.rtt, "jitter": f.jitter, "loss": f.loss, "mos": f.mos}


def render(report: Report) -> str:
    tz = zoneinfo.ZoneInfo(report.meta.timezone)

    def when(t: float | None) -> str | None:
        if t is None:
            return None
        return datetime.datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")

    def period(p: Period) -> dict[str, Any]:
        return {
            "number": p.number,
            "district": printable(p.district),
            "district_name": printable(p.district_name),
            "start": when(p.start),
            "end": when(p.end),
            "before_window": p.before_window,
            "duration": p.duration,
            "time_to_detect": p.time_to_detect,
            "time_to_recover": p.time_to_recover,
            "reason": printable(p.reason),
        }

    def segment(s: Segment) -> dict[str, Any]:
        return {"start": when(s.start), "end": when(s.end), "worst": s.worst, "rooms": s.rooms}

    m, s = report.meta, report.summary
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "report": {
            "title": printable(m.title),
            "from": when(m.start),
            "to": when(m.end),
            "requested_from": when(m.requested_start),
            "requested_to": when(m.requested_end),
            "timezone": m.timezone,
            "generated_at": when(m.generated_at),
            "source": printable(m.source),
            "inventory": None if m.inventory is None else printable(m.inventory),
            "interval_seconds": m.interval,
            "confmon_version": m.version,
        },
        "summary": {
            "rooms": s.rooms,
            "districts": s.districts,
            "rooms_monitored": s.rooms_monitored,
            "ready_at_start": s.ready_at_start,
            "at_start": s.at_start,
            "readiness_at_start": s.readiness_at_start,
            "readiness_target": s.readiness_target,
            "availability": s.availability,
            "seconds": _times(s.times),
            "not_monitored_share": s.times.not_monitored_share,
            "rooms_out": s.rooms_out,
            "rooms_degraded": s.rooms_degraded,
            "outages": s.outages,
            "degraded_periods": s.degraded_periods,
            "gaps": s.gaps,
            "worst_district": s.worst_district,
        },
        "notes": [
            {"code": n.code, "text": n.text, "at": when(n.at), "count": n.count}
            for n in report.notes
        ],
        "incidents": [
            {
                **period(i),
                "cause": printable(i.cause),
                "cause_name": printable(i.cause_name),
                "rooms": i.rooms,
                "rooms_by_state": i.rooms_by_state,
                "points": [printable(p) for p in i.points],
            }
            for i in report.incidents
        ],
        "degraded": [
            {
                **period(p),
                "point": printable(p.point),
                "name": printable(p.name),
                "figures": _figures(p.figures),
            }
            for p in report.degraded
        ],
        "gaps": [
            {
                "kind": g.kind,
                "cause": printable(g.cause),
                "start": when(g.start),
                "end": when(g.end),
                "duration": g.duration,
                "rooms": g.rooms,
                "districts": [printable(d) for d in g.districts],
                "reason": printable(g.reason),
            }
            for g in report.gaps
        ],
        "districts": [
            {
                "id": printable(d.id),
                "name": printable(d.name),
                "rooms": d.rooms,
                "availability": d.availability,
                "seconds": _times(d.times),
                "out_seconds": d.out_seconds,
                "rooms_out": d.rooms_out,
                "rooms_degraded": d.rooms_degraded,
                "worst": _figures(d.worst),
                "timeline": [segment(x) for x in d.timeline],
            }
            for d in report.districts
        ],
        "rooms": [
            {
                "id": printable(r.id),
                "name": printable(r.name),
                "district": printable(r.district),
                "level": printable(r.level),
                "at_start": r.at_start,
                "availability": r.availability,
                "seconds": _times(r.times),
                "changes": r.changes,
                "worst": _figures(r.worst),
            }
            for r in report.rooms
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
