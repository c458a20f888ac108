"""Rendering a :class:`Snapshot` as rich renderables, sized to the terminal.

- 100×30 and larger: a district grid (one row per district: name, headquarters,
  one cell per commune, up/total) beside "needs attention" and the event log.
- smaller (e.g. 80×24): one bar per district in two columns, then the worst points.

Every state has a colour *and* a symbol, so the screen reads the same without
colour (``NO_COLOR``, colour-blind operators).
"""

from __future__ import annotations

import datetime
import itertools
import textwrap
import time
import zoneinfo
from collections import Counter

from rich.console import Group, RenderableType
from rich.text import Text

from monitor.dashboard.model import STATE_ORDER, DistrictView, Incident, PointView, Snapshot
from monitor.dashboard.ui import Ui, district_rooms
from monitor.text import printable

__all__ = ["LEGEND", "STYLE", "SYMBOL", "render"]

SYMBOL = {
    "up": "●",
    "degraded": "◐",
    "down": "✖",
    "unreachable": "○",
    "unknown": "?",
    "maintenance": "◆",
}
STYLE = {
    "up": "green",
    "degraded": "yellow",
    "down": "bold red",
    "unreachable": "magenta",
    "unknown": "dim",
    "maintenance": "blue",
}
LABEL = {
    "up": "up",
    "degraded": "degraded",
    "down": "down",
    "unreachable": "unreachable",
    "unknown": "unknown",
    "maintenance": "maint.",
}
LEGEND = tuple(SYMBOL)
STALE_AFTER = 5.0  # seconds without a message before the banner shows
#: columns the incident and event lists keep before a wide screen adds the detail pane
ATTENTION_WIDTH = 88


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"


def _cell(state: str) -> tuple[str, str]:
    return SYMBOL.get(state, "?"), STYLE.get(state, "dim")


def _figures(
    rtt: float | None, jitter: float | None, loss: float | None, mos: float | None, mos_digits: int
) -> str:
    """The figures that were measured, with their units: "rtt 12 ms jitter 2 ms loss 0%"."""
    parts = [
        f"rtt {_ms(rtt)} ms" if rtt is not None else "",
        f"jitter {_ms(jitter)} ms" if jitter is not None else "",
        f"loss {loss:.0%}" if loss is not None else "",
        f"MOS {mos:.{mos_digits}f}" if mos is not None else "",
    ]
    return " ".join(p for p in parts if p)


def _styled(text: str, style: str) -> Text:
    """``text`` in ``style``, as a span: a Text built with a style of its own would lend it
    to everything appended after (a reverse-video name would cover its whole row)."""
    out = Text()
    out.append(text, style)
    return out


def _standout(state: str) -> str:
    """A grid cell's style: a point not up is in reverse video (a block of its colour, and
    a block still without colour), so one bad room in a row of ● is not missed."""
    style = STYLE.get(state, "dim")
    return style if state == "up" else f"reverse {style}"


def _header(s: Snapshot, width: int, now: float, tz: zoneinfo.ZoneInfo) -> list[RenderableType]:
    local = datetime.datetime.fromtimestamp(now, tz)
    right = Text(f" {local:%H:%M:%S} {local.tzname()}", "bold")
    # counted from the points on screen, so the header always agrees with the grid
    counts = Counter(p.state for p in s.points.values()) if s.points else Counter(s.counts)
    counted = len(s.points) - counts["maintenance"]
    readiness = (counts["up"] + counts["degraded"]) / counted if counted > 0 else s.readiness
    ready_ok = readiness >= s.readiness_target
    gap = counts["unknown"]
    # points without fresh data are a gap in monitoring, not an outage: when they alone keep
    # readiness under the target, say so in the gap's colour, not in the outage's red
    known = counted - gap
    outage_ok = known <= 0 or (counts["up"] + counts["degraded"]) / known >= s.readiness_target
    style = "bold green" if ready_ok else ("bold yellow" if outage_ok and gap else "bold red")
    down = counts["down"] + counts["unreachable"]
    room = width - right.cell_len

    def build(compact: bool) -> Text:
        line = Text()
        mark = "✔" if ready_ok else "✖"
        target = f"{s.readiness_target:.0%}"
        if compact:  # the facts first, the conference's name last
            line.append(f"ready {readiness:.1%} {mark} (≥{target})", style)
        else:
            line.append(s.name, "bold")
            line.append(f"   readiness {readiness:.1%} (target {target}) {mark}", style)
        if down:
            line.append(f"   {down} room{'s' if down != 1 else ''} down", "bold red")
        if gap:
            gap_text = f"? {gap} not monitored" + ("" if compact else " (no fresh data)")
            line.append(f"   {gap_text}", "bold yellow")
        if s.broker_error:
            line.append(f"   ⚠ no results: {printable(s.broker_error, 80)}", "bold yellow")
        if compact:
            line.append(f"   {s.name}", "bold")
        return line

    line = build(compact=False)
    if line.cell_len > room:  # a narrow screen: rooms down must not be what is cut off
        line = build(compact=True)
    line.truncate(max(10, room), overflow="ellipsis", pad=True)
    line.append_text(right)
    tally = Text()
    for state in LEGEND:
        sym, style = _cell(state)
        tally.append(f"{sym} {counts[state]} {LABEL[state]}", style)
        tally.append("   ")
    tally.truncate(width, overflow="ellipsis")
    info = Text(style="dim")
    if s.agents:
        online = sum(s.agents.values())
        info.append(
            f"agents {online}/{len(s.agents)} online · ",
            "" if online == len(s.agents) else "bold red",
        )
    if s.last_cycle is not None:
        info.append(f"last cycle {s.last_cycle:.2f} s · ")
    age = now - s.last_message if s.last_message else None
    info.append("data " + ("never" if age is None else f"{age:.1f} s old") + f" · {s.url}")
    info.truncate(width, overflow="ellipsis")
    out: list[RenderableType] = [line, tally, info]
    for note in s.notes:
        out.append(_fit(Text(f"ℹ {note}", "cyan"), width))
    if not s.connected or age is None or age > STALE_AFTER:
        why = f": {s.error}" if s.error else ""
        banner = Text(
            f" ⚠ NO DATA FROM THE SERVER for {('?' if age is None else _ago(age))} — "
            f"showing the last known state; reconnecting{why} ",
            "bold white on red",
        )
        banner.truncate(width, overflow="ellipsis", pad=True)
        out.append(banner)
    return out


def _fit(text: Text, width: int) -> Text:
    """``text`` cut or padded to exactly ``width`` cells."""
    text.truncate(max(0, width), overflow="ellipsis", pad=True)
    return text


def _short(name: str) -> str:
    """District name without its kind, for narrow screens (Quận Ba Đình -> Ba Đình)."""
    for prefix in ("Thị xã ", "Thành phố ", "Quận ", "Huyện "):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _badness(d: DistrictView) -> tuple[int, int]:
    """Sort key of a district, worst first: its worst state, then how many rooms are not
    up (a stable sort keeps the inventory's order among equals)."""
    every = [d.hq, *d.communes]
    worst = min((p.state for p in every), key=STATE_ORDER.index)
    return (STATE_ORDER.index(worst), -sum(p.state != "up" for p in every))


def _grid(
    districts: list[DistrictView], name_width: int, max_rows: int, count_width: int = 8
) -> list[Text]:
    """One line per district: name, headquarters, one cell per commune, up/total (and the
    degraded rooms: ◐, with their number when ``count_width`` leaves room for it)."""
    lines = []
    if len(districts) > max_rows:  # not all fit: the worst first, so the healthy are left out
        districts = sorted(districts, key=_badness)
    shown = districts if len(districts) <= max_rows else districts[: max(0, max_rows - 1)]
    widest = max((len(d.communes) for d in districts), default=0)
    for d in shown:
        every = [d.hq, *d.communes]
        worst = min((p.state for p in every), key=STATE_ORDER.index)
        # a district with a room not up is marked: its name in reverse video, in the colour
        # of its worst state (it reads without colour too)
        name = Text()  # the style on the name only: a Text's own style would cover the row
        name.append(d.hq.name, "" if worst == "up" else f"reverse {STYLE[worst]}")
        line = _fit(name, name_width)
        line.append(" HQ")
        line.append(SYMBOL.get(d.hq.state, "?"), _standout(d.hq.state))
        line.append(" ")
        cells = Text()
        # runs of one state as one span: a row of 30 cells is a handful of spans to render
        for state, run in itertools.groupby(c.state for c in d.communes):
            cells.append(SYMBOL.get(state, "?") * len(list(run)), _standout(state))
        line.append_text(_fit(cells, widest))
        up = sum(p.state in ("up", "degraded") for p in every)
        blind = sum(p.state == "unknown" for p in every)
        degraded = sum(p.state == "degraded" for p in every)
        if blind == len(every):  # nothing known: a gap in monitoring, not a dead district
            count = Text(f" {'?':>3}/{len(every)}", "yellow")
        else:
            count = Text(
                f" {up:>3}/{len(every)}",
                "bold red" if up + blind < len(every) else ("yellow" if blind else ""),
            )
        if degraded:  # ready, but not well: the count alone would say 30/30
            mark = SYMBOL["degraded"] + (str(degraded) if count_width > 8 else "")
            count.append(mark, STYLE["degraded"])
        line.append_text(_fit(count, count_width))
        lines.append(line)
    if len(shown) < len(districts):
        hidden = districts[len(shown) :]
        healthy = all(p.state == "up" for d in hidden for p in (d.hq, *d.communes))
        lines.append(Text(f"… {len(hidden)} more districts{', all up' if healthy else ''}", "dim"))
    return lines


def _clock(at: float, tz: zoneinfo.ZoneInfo) -> str:
    return datetime.datetime.fromtimestamp(at, tz).strftime("%H:%M:%S")


def _where(s: Snapshot, p: PointView) -> str:
    """The district of a point that is not a headquarters, for names that exist twice
    ("Xã Phú Cường" is in Sóc Sơn and in Ba Vì)."""
    if p.parent is None:
        return ""
    hq = s.points.get(p.district)
    return f" ({_short(hq.name) if hq else p.district})"


def _rooms(n: int) -> str:
    return f"{n} room{'s' if n != 1 else ''}"


def _incident_line(s: Snapshot, i: Incident, tz: zoneinfo.ZoneInfo, width: int) -> Text:
    """One incident: what, where, since when, how many rooms it takes, whether someone
    acknowledged it, and why (last: on a narrow pane the reason is what gets cut)."""
    since = _clock(i.since, tz)
    ack = s.acks.get(i.cause)
    acked = Text(f" · ✔ acked by {ack[0]} {_clock(ack[1], tz)}", "green") if ack else Text()
    if i.head is None:  # a gap in monitoring: an agent gone, or no fresh data
        line = _styled(f" {SYMBOL['unknown']} ", STYLE["unknown"])
        if i.cause.startswith("agent:"):
            line.append(f"agent {i.cause.removeprefix('agent:')} offline", "bold yellow")
            line.append(f" since {since} · {_rooms(len(i.behind))} not monitored", "yellow")
        else:
            hq = s.points.get(i.cause.removeprefix("gap:"))
            line.append(f"{hq.name if hq else i.cause}: ", "bold yellow")
            line.append(f"{_rooms(len(i.behind))} not monitored since {since}", "yellow")
            reason = i.behind[0].reason if i.behind else ""
            if reason:
                line.append(f" · {reason}", "dim")
        line.append_text(acked)
        return _fit(line, width)
    p = i.head
    sym, style = _cell(p.state)
    line = _styled(f" {sym} ", style)
    line.append(p.name + _where(s, p), style)
    if i.behind:
        what = "uplink down" if p.state == "down" else p.state
        line.append(f" — {what} {since}", style)
        line.append(f" · {len(i.behind)} unreachable", STYLE["unreachable"])
        line.append_text(acked)
    else:
        line.append(f" — {p.state} since {since}", style)
        line.append_text(acked)
        if p.state == "degraded":
            # what crossed first (it carries its figure: "jitter 32 ms > 30 ms"), then the rest
            if p.reason:
                line.append(f" · {p.reason}", "")
            line.append(" · " + _figures(p.rtt, p.jitter, p.loss, p.mos, 1), "dim")
            return _fit(line, width)
    if p.reason:
        line.append(f" · {p.reason}", "dim")
    return _fit(line, width)


def _attention(s: Snapshot, rows: int, width: int, tz: zoneinfo.ZoneInfo) -> list[Text]:
    """One row per incident, worst first: an outage with the rooms behind it, then single
    rooms down, then degraded ones, then gaps in monitoring."""
    lines = [Text("Needs attention", "bold")]
    incidents = s.incidents()
    fits = len(incidents) <= rows
    shown = incidents if fits else incidents[: max(0, rows - 1)]
    lines.extend(_incident_line(s, i, tz, width) for i in shown)
    if not fits:
        rest = incidents[len(shown) :]
        rooms = sum(i.size for i in rest)
        lines.append(Text(f"   … and {len(rest)} more ({_rooms(rooms)})", "dim"))
    if not incidents:
        lines.append(Text(" ✔ every point is up", "green"))
    return lines


def _events(s: Snapshot, rows: int, tz: zoneinfo.ZoneInfo, width: int) -> list[Text]:
    """The latest state changes, newest first; a district's outage is one line."""
    lines = [Text("Events", "bold")]
    groups = s.event_groups()[: max(0, rows)]
    for g in groups:
        e = g.first
        p = s.points.get(e["point"])
        name = p.name + _where(s, p) if p else str(e.get("name") or e["point"])
        line = Text(f" {_clock(float(e['at']), tz)} ")
        line.append(name)
        line.append(f" {SYMBOL.get(e['from'], '?')}", STYLE.get(e["from"], ""))
        line.append("→")
        line.append(f"{SYMBOL.get(e['to'], '?')} {e['to']}", STYLE.get(e["to"], ""))
        for state, n in sorted(g.followers.items(), key=lambda kv: -kv[1]):
            line.append(f" · {_rooms(n)} ", "")
            line.append(f"{SYMBOL.get(state, '?')} {state}", STYLE.get(state, ""))
        lines.append(_fit(line, width))
    if not groups:
        lines.append(Text(" no state changes yet", "dim"))
    return lines


def _bars(districts: list[DistrictView], width: int, rows: int) -> list[Text]:
    """Compact view: one bar per district (worst states first), in two columns."""
    cols = 2 if width >= 70 else 1
    col_width = width // cols - 1
    name_width = min(14, max(8, col_width // 3))
    bar_width = max(5, col_width - name_width - 9)  # " " + " NNN/NNN"
    order = ("down", "unreachable", "degraded", "unknown", "maintenance", "up")
    if -(-len(districts) // cols) > rows:  # not all fit: the worst first
        districts = sorted(districts, key=_badness)
    cells: list[Text] = []
    for d in districts:
        every = [d.hq, *d.communes]
        line = _fit(Text(_short(d.hq.name)), name_width)
        line.append(" ")
        counts = {st: sum(p.state == st for p in every) for st in order}
        used = 0
        for st in order:
            n = counts[st]
            if not n:
                continue
            # never round a bad state away: it gets at least one cell
            w = bar_width - used if st == "up" else max(1, round(n / len(every) * bar_width))
            w = min(w, bar_width - used)
            line.append(SYMBOL[st] * w, STYLE[st])
            used += w
        up = counts["up"] + counts["degraded"]
        blind = counts["unknown"]
        if blind == len(every):  # nothing known: a gap in monitoring, not a dead district
            line.append(f" {'?':>3}/{len(every):<3}", "yellow")
        else:
            bad = up + blind < len(every)
            line.append(
                f" {up:>3}/{len(every):<3}", "bold red" if bad else ("yellow" if blind else "")
            )
        cells.append(_fit(line, col_width))
    per_col = -(-len(cells) // cols)
    fits = per_col <= rows
    if not fits:  # the first (worst) ones in every column but the last line, then a note
        per_col = max(0, rows - 1)
    shown = cells[: per_col * cols]
    lines = []
    for r in range(per_col):
        line = Text()
        for c in range(cols):
            i = c * per_col + r
            if i < len(shown):
                line.append_text(shown[i])
                line.append(" ")
        lines.append(line)
    if not fits:
        hidden = districts[len(shown) :]
        healthy = all(p.state == "up" for d in hidden for p in (d.hq, *d.communes))
        lines.append(
            Text(
                f"… {len(hidden)} more districts{', all up' if healthy else ''}"
                " (enlarge the terminal)",
                "dim",
            )
        )
    return lines


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], width: int) -> str:
    """The last ``width`` values as bars from ▁ to █ (the largest is █; a missing one, a
    point that did not answer, is ✕)."""
    values = values[-width:]
    top = max((v for v in values if v is not None), default=0.0)
    out = []
    for v in values:
        if v is None:
            out.append("✕")
        elif top <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)


def _search_screen(s: Snapshot, ui: Ui, width: int, rows: int, tz: zoneinfo.ZoneInfo) -> list[Text]:
    if ui.mode == "district":
        found = district_rooms(s, ui.district or "")
        hq = s.points.get(ui.district or "")
        prompt = Text(f" {hq.name if hq else ui.district}", "bold")
        prompt.append(f"   {_rooms(len(found))}, worst first", "dim")
        enter = "Enter details"
    else:
        found = ui.matches(s)
        prompt = Text(" District: " if ui.kind == "district" else " Search: ", "bold")
        prompt.append(ui.query + "▏")
        prompt.append("   (diacritics optional: ba vi finds Ba Vì)", "dim")
        enter = "Enter its rooms" if ui.kind == "district" else "Enter details"
    lines = [_fit(prompt, width), Text()]
    if ui.query and not found:
        lines.append(Text(" nothing matches", "dim"))
    shown = found[: max(0, rows - 4)]
    for n, p in enumerate(shown):
        sym, style = _cell(p.state)
        line = _styled(f" {sym} ", style)
        line.append(p.name + _where(s, p), style)
        line.append(f"  {p.state} since {_clock(p.since, tz)}  ", "")
        line.append(p.reason, "dim")
        line = _fit(line, width)
        if n == min(ui.cursor, len(found) - 1):
            line.stylize("reverse")
        lines.append(line)
    if len(found) > len(shown):
        lines.append(Text(f"   … {len(found) - len(shown)} more: type more of the name", "dim"))
    lines.append(Text(f" ↑↓ choose · {enter} · Esc back", "dim"))
    return lines


def _detail_screen(
    s: Snapshot, ui: Ui, width: int, rows: int, now: float, tz: zoneinfo.ZoneInfo
) -> list[Text]:
    p = s.points.get(ui.point or "")
    if p is None:
        return [Text(" this point is no longer in the inventory · Esc back", "yellow")]
    sym, style = _cell(p.state)
    title = _styled(f" {sym} ", style)
    title.append(p.name, f"bold {style}")
    hq = s.points.get(p.district)
    where = [p.id, p.level, hq.name if hq and hq is not p else "", p.host]
    title.append("   " + " · ".join(w for w in where if w), "dim")
    lines = [_fit(title, width), Text()]

    def row(label: str, value: str, value_style: str = "") -> None:
        # a long value (a reason) goes on over the next lines: a narrow pane cuts nothing
        parts = textwrap.wrap(value, max(20, width - 10), max_lines=3, placeholder=" …") or [""]
        for n, part in enumerate(parts):
            line = Text(f" {label if n == 0 else '':<9}", "bold")
            line.append(part, value_style)
            lines.append(_fit(line, width))

    row("state", f"{p.state} since {_clock(p.since, tz)} ({_ago(now - p.since)} ago)", style)
    row("reason", p.reason or "-")
    if p.cause and p.cause != p.id:
        cause = s.points.get(p.cause)
        row("cause", f"behind {cause.name} ({p.cause})" if cause else p.cause, "magenta")
    behind = [
        q for q in s.points.values() if q.cause == p.id and q is not p and q.state == "unreachable"
    ]
    if behind:
        row("behind", f"{_rooms(len(behind))} unreachable behind it", STYLE["unreachable"])
    figures = [
        f"rtt {_ms(p.rtt)} ms",
        f"jitter {_ms(p.jitter)} ms",
        "loss -" if p.loss is None else f"loss {p.loss:.1%}",
        "MOS -" if p.mos is None else f"MOS {p.mos:.2f}",
    ]
    if p.state in ("down", "unreachable", "unknown"):
        row("figures", "none now: it does not answer (its last ones are below)", "dim")
    else:
        row("figures", " · ".join(figures))
    history = list(s.history.get(p.id, ()))
    span = max(10, width - 24)
    if history:
        minutes = (history[-1][0] - history[0][0]) / 60
        rtts = [h[1] for h in history]
        losses = [h[2] for h in history]
        top_rtt = max((v for v in rtts if v is not None), default=None)
        top_loss = max((v for v in losses if v is not None), default=None)
        row("RTT", f"{sparkline(rtts, span)}  max {_ms(top_rtt)} ms")
        row("loss", sparkline(losses, span) + ("" if top_loss is None else f"  max {top_loss:.0%}"))
        lines.append(
            Text(f"           the last {minutes:.0f} min, a bar per read of the points", "dim")
        )
    probes = s.probes.get(p.id, [])
    if probes:
        lines.append(Text())
        lines.append(Text(" Probes (latest result)", "bold"))
    for r in probes:
        line = _styled(f" {'✔' if r.ok else '✖'} {r.probe:<6}", "green" if r.ok else "bold red")
        line.append(f" {_clock(r.at, tz)} ", "dim")
        line.append(_figures(r.rtt, r.jitter, r.loss, r.mos, 2))
        phases = " ".join(
            f"{name} {'-' if sec is None else f'{sec * 1000:.0f}'}ms{'' if ok else '✖'}"
            for name, ok, sec in r.phases
        )
        if phases:
            when = "" if r.phases_at is None else f" at {_clock(r.phases_at, tz)}"
            line.append(f"  [{phases}{when}]", "dim")
        if r.error or r.warning:
            line.append(f"  {r.error or r.warning}", "bold red" if r.error else "yellow")
        lines.append(_fit(line, width))
    lines.append(Text())
    lines.append(Text(" Recent changes", "bold"))
    mine = [e for e in s.events if e["point"] == p.id][::-1][: max(0, rows - len(lines) - 2)]
    for e in mine:
        line = Text(f" {_clock(float(e['at']), tz)} ")
        line.append(f"{SYMBOL.get(e['from'], '?')}", STYLE.get(e["from"], ""))
        line.append("→")
        line.append(f"{SYMBOL.get(e['to'], '?')} {e['to']}  ", STYLE.get(e["to"], ""))
        line.append(str(e.get("reason") or ""), "dim")
        lines.append(_fit(line, width))
    if not mine:
        lines.append(Text(" none since the dashboard started", "dim"))
    lines.append(Text(" Esc back · a acknowledge its incident · q quit", "dim"))
    return lines


def render(
    s: Snapshot,
    width: int,
    height: int,
    now: float | None = None,
    tz: str = "Asia/Ho_Chi_Minh",
    ui: Ui | None = None,
) -> RenderableType:
    """One frame for a ``width``×``height`` terminal: the city, or (``ui``) a search or a
    point's detail.

    Built from plain lines of text (no rich tables): layout by hand is several
    times cheaper, which keeps a 450-point frame well inside its 20 ms budget.
    """
    now = time.time() if now is None else now
    zone = zoneinfo.ZoneInfo(tz)
    header = _header(s, width, now, zone)
    if ui is not None and ui.message and time.monotonic() < ui.message_until:
        header.append(_fit(Text(f"ℹ {ui.message}", "bold cyan"), width))
    if ui is not None and ui.mode != "main":
        rows = height - len(header)
        body = (
            _detail_screen(s, ui, width, rows, now, zone)
            if ui.mode == "detail"
            else _search_screen(s, ui, width, rows, zone)
        )
        return Group(*header, *body[:rows])
    if height < 30:
        header = [h for i, h in enumerate(header) if i != 2]  # drop the info line on small screens
    body_rows = height - len(header) - 1
    districts = s.districts()
    longest = max((Text(d.hq.name).cell_len for d in districts), default=10)
    widest = max((len(d.communes) for d in districts), default=0)
    name_width = min(longest, 24)
    count_width = 12 if width >= 150 else 8  # " NNN/NNN", + "◐NN" on wide screens
    grid_width = name_width + 5 + widest + count_width
    if width >= 100 and height >= 30 and width - grid_width >= 42:
        side = width - grid_width - 2
        # a wide screen also shows the worst incident's detail in a pane of its own
        # the lists keep room for a whole row (a name with its district, since, the reason)
        pane = min(64, side - ATTENTION_WIDTH) if side - ATTENTION_WIDTH >= 40 else 0
        if pane:
            side -= pane + 2
        left = _grid(districts, name_width, body_rows - 1, count_width)
        att_rows = max(3, (body_rows - 4) * 3 // 5)
        right = _attention(s, att_rows, side, zone)
        right += [Text(), *_events(s, max(2, body_rows - len(right) - 2), zone, side)]
        far: list[Text] = []
        worst = next((i.head for i in s.incidents() if i.head is not None), None)
        if pane and worst is not None:
            shown = Ui()
            shown.open(worst.id, back="main")
            far = [Text("Worst incident", "bold")]
            far += _detail_screen(s, shown, pane, body_rows - 2, now, zone)[:-1]  # no key hints
        lines: list[RenderableType] = [*header, Text()]
        for i in range(min(body_rows - 1, max(len(left), len(right), len(far)))):
            line = _fit(left[i] if i < len(left) else Text(), grid_width)
            line.append("  ")
            if pane:
                line.append_text(_fit(right[i] if i < len(right) else Text(), side))
                line.append("  ")
                if i < len(far):
                    line.append_text(far[i])
            elif i < len(right):
                line.append_text(right[i])
            lines.append(_fit(line, width))
        legend = Text("  ".join(f"{SYMBOL[st]} {st}" for st in LEGEND), "dim")
        legend.append("  ·  / search · d district · Enter worst · a ack · q quit", "dim")
        lines.append(_fit(legend, width))
        return Group(*lines)
    bar_rows = min(15, max(1, body_rows - 5))
    bars = _bars(districts, width, bar_rows)
    rest = max(1, body_rows - len(bars) - 2)  # the attention title and column heads
    return Group(*header, *bars, *_attention(s, rest, width, zone))
