"""The dashboard as an operator sees it, rendered at fixed terminal sizes."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from monitor.dashboard.model import PointView, Snapshot
from monitor.dashboard.view import SYMBOL, render
from monitor.inventory import load_inventory
from tests.helpers import CONFIGS

NOW = 1_800_000_000.0


def snapshot() -> Snapshot:
    """The 450 Hanoi points: Ba Vì's HQ down (communes unreachable), one commune down, one degraded."""
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    s = Snapshot(
        name=inv.settings.name, url="http://127.0.0.1:9108", connected=True, last_message=NOW - 0.5
    )
    for p in inv.points.values():
        s.points[p.id] = PointView(
            p.id,
            p.name,
            p.district,
            p.level,
            p.parent,
            "up",
            NOW - 3600,
            "",
            0.012,
            0.002,
            0.0,
            4.4,
        )
    s.points["ba-vi"].state = "down"
    s.points["ba-vi"].since = NOW - 120
    for c in inv.points["ba-vi"].children:
        s.points[c].state = "unreachable"
        s.points[c].since = NOW - 118
        s.points[c].cause = "ba-vi"
    s.points["dong-anh.xuan-non"].state = "down"
    s.points["dong-anh.xuan-non"].since = NOW - 300
    s.points["soc-son.minh-tri"].state = "degraded"
    s.points["soc-son.minh-tri"].mos = 3.1
    s.events.append(
        {"point": "ba-vi", "from": "up", "to": "down", "at": NOW - 120, "reason": "2 failed cycles"}
    )
    return s


def screen(s: Snapshot, width: int, height: int, color: bool = False) -> str:
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        record=True,
        color_system="truecolor" if color else None,
        force_terminal=color,
    )
    console.print(render(s, width, height, now=NOW))
    return console.export_text(styles=False)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (200, 60)])
def test_fits_the_terminal(width: int, height: int) -> None:
    """Every size renders within its width and height."""
    lines = screen(snapshot(), width, height).rstrip("\n").split("\n")
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)


def test_120x40_shows_every_district_and_the_worst_first() -> None:
    """At 120×40: all 30 districts with Vietnamese names, counts, and the down points on top."""
    text = screen(snapshot(), 120, 40)
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    for d in inv.districts():
        assert d.name in text
    assert (
        "● 418 up" in text
        and "✖ 2 down" in text
        and "○ 29 unreachable" in text
        and "◐ 1 degraded" in text
    )
    assert "readiness 93.1% (target 98%) ✖" in text
    attention = text[text.index("Needs attention") :]
    first = [line for line in attention.splitlines() if "✖" in line or "○" in line or "◐" in line]
    # the outage first, as one row with the rooms behind it; then the room down alone
    assert "Huyện Ba Vì — uplink down 14:58:00 · 29 unreachable" in first[0]
    assert "Xã Xuân Nộn (Đông Anh) — down since 14:55:00" in first[1]
    assert "Xã Minh Trí (Sóc Sơn) — degraded" in first[2]
    assert sum(" — " in line for line in text.splitlines()) == 3  # no row per commune
    assert "Huyện Ba Vì" in text[text.index("Events") :]
    # Ba Vì's row: HQ down, its 29 communes unreachable, 0/30 up
    row = next(line for line in text.splitlines() if line.startswith("Huyện Ba Vì"))
    assert "HQ✖" in row and "○" * 29 in row and "0/30" in row


def test_columns_align_despite_diacritics() -> None:
    """The commune cells start in the same column on every district row."""
    text = screen(snapshot(), 120, 40)
    rows = [line for line in text.splitlines() if "HQ" in line and "/" in line]
    assert len(rows) == 30
    assert len({row.index("HQ") for row in rows}) == 1


def test_80x24_degrades_to_bars_with_every_district() -> None:
    """At 80×24 each district is a bar; all 30 are there and Ba Vì's bar is unreachable."""
    text = screen(snapshot(), 80, 24)
    for name in ("Ba Đình", "Mỹ Đức", "Ứng Hòa", "Sơn Tây"):
        assert name in text
    ba_vi = next(line for line in text.splitlines() if "Ba Vì" in line and "○" in line)
    assert "0/30" in ba_vi


def test_symbols_carry_the_state_without_colour() -> None:
    """With no colour at all, each state still has its own symbol on screen."""
    assert len(set(SYMBOL.values())) == len(SYMBOL)
    text = screen(snapshot(), 120, 40)
    for state in ("up", "down", "unreachable", "degraded"):
        assert SYMBOL[state] in text


def test_stale_banner_when_the_server_is_gone() -> None:
    """Disconnected or silent for long: a banner says so, and the last state stays on screen."""
    s = snapshot()
    s.connected = False
    s.error = "connection refused"
    s.last_message = NOW - 42
    text = screen(s, 120, 40)
    assert "NO DATA FROM THE SERVER for 0:42" in text and "connection refused" in text
    assert "Huyện Ba Vì" in text


def test_frame_renders_quickly_enough_to_measure() -> None:
    """Rendering one 450-point frame works repeatedly (timing itself is measured in bench/)."""
    s = snapshot()
    start = time.perf_counter()
    for _ in range(3):
        screen(s, 120, 40, color=True)
    assert time.perf_counter() - start < 30  # only a guard against a hang, not a benchmark


def test_lost_monitoring_is_a_gap_not_an_outage() -> None:
    """A district with no fresh data is shown as a gap in monitoring ("?" count, not red), and
    the header says how many rooms are not monitored, apart from rooms down."""
    s = snapshot()
    for c in s.points.values():
        if c.district == "ba-vi":
            c.state = "unknown"
    for pid in ("dong-anh.xuan-non", "soc-son.minh-tri"):
        s.points[pid].state = "up"
    text = screen(s, 120, 40)
    assert "30 not monitored (no fresh data)" in text
    assert "rooms down" not in text and "room down" not in text
    ba_vi = next(line for line in text.splitlines() if line.startswith("Huyện Ba Vì"))
    assert "  ?/30" in ba_vi, ba_vi
    # with a real outage as well, both are said
    s.points["dong-anh.xuan-non"].state = "down"
    assert "1 room down" in screen(s, 120, 40)


def test_a_server_whose_broker_is_away_says_why_no_results_arrive() -> None:
    s = snapshot()
    s.apply_summary(
        {
            "name": s.name,
            "agents": [{"id": "agent-1", "online": True}, {"id": "agent-2", "online": False}],
            "broker": {
                "broker_connected": False,
                "broker_error": "broker mqtt://nhq:1883 unreachable: refused",
            },
        }
    )
    text = screen(s, 160, 40)
    assert "no results: broker mqtt://nhq:1883 unreachable" in text
    assert "agents 1/2 online" in text
    s.apply_summary({"name": s.name, "broker": {"broker_connected": True, "broker_error": None}})
    assert "no results" not in screen(s, 160, 40)


def test_an_outage_is_one_incident_and_a_lost_agent_one_gap() -> None:
    """Rooms unreachable behind a down uplink join its incident; the rooms of an agent gone
    offline are one gap; a room whose uplink is up again (recovering) stands alone."""
    s = snapshot()
    for pid in ("soc-son", *[c for c in s.points if c.startswith("soc-son.")]):
        s.points[pid].state = "unknown"
        s.points[pid].cause = "agent:soc-son-1"
    s.points["phuc-tho.ngoc-tao"].state = "unreachable"
    s.points["phuc-tho.ngoc-tao"].cause = "phuc-tho"  # its uplink is up: a row of its own
    incidents = s.incidents()
    assert [(i.cause, i.state, i.size) for i in incidents] == [
        ("ba-vi", "down", 30),
        ("dong-anh.xuan-non", "down", 1),
        ("phuc-tho.ngoc-tao", "unreachable", 1),
        ("agent:soc-son-1", "unknown", 27),
    ]
    text = screen(s, 160, 40)
    assert "agent soc-son-1 offline since 14:00:00 · 27 rooms not monitored" in text


def test_events_of_one_outage_are_one_line() -> None:
    """The headquarters' change and its 29 rooms' a cycle later are one line, led by the
    headquarters; the recovery is another; a change of another cause stays apart."""
    s = snapshot()
    s.events.clear()
    s.events.append(
        {"point": "ba-vi", "from": "up", "to": "down", "at": NOW - 120, "cause": "ba-vi"}
    )
    for c in [p for p in s.points if p.startswith("ba-vi.")]:
        s.events.append(
            {"point": c, "from": "up", "to": "unreachable", "at": NOW - 116, "cause": "ba-vi"}
        )
    s.events.append(
        {
            "point": "dong-anh.xuan-non",
            "from": "up",
            "to": "down",
            "at": NOW - 100,
            "cause": "dong-anh.xuan-non",
        }
    )
    s.events.append(
        {"point": "ba-vi", "from": "down", "to": "up", "at": NOW - 30, "cause": "ba-vi"}
    )
    groups = s.event_groups()
    assert [(g.first["point"], g.first["to"], g.size) for g in groups] == [
        ("ba-vi", "up", 1),
        ("dong-anh.xuan-non", "down", 1),
        ("ba-vi", "down", 30),
    ]
    text = screen(s, 120, 40)
    assert "14:58:00 Huyện Ba Vì ●→✖ down · 29 rooms ○ unreachable" in text
    assert text.count("Huyện Ba Vì ") <= 4  # grid row, attention, two event lines


def test_rooms_judged_before_their_headquarters_join_it() -> None:
    """A room's change that arrives before its cause's own (judged a cycle earlier) is
    counted in the group the cause's change then leads."""
    s = snapshot()
    s.events.clear()
    s.events.append(
        {
            "point": "ba-vi.tan-linh",
            "from": "up",
            "to": "unreachable",
            "at": NOW - 125,
            "cause": "ba-vi",
        }
    )
    s.events.append(
        {"point": "ba-vi", "from": "up", "to": "down", "at": NOW - 120, "cause": "ba-vi"}
    )
    (g,) = s.event_groups()
    assert g.first["point"] == "ba-vi" and dict(g.followers) == {"unreachable": 1}


def test_a_bad_room_stands_out_in_its_row() -> None:
    """A cell not up is in reverse video (a block, with or without colour), the district's
    name too; a degraded room is marked beside the count, which alone would say 27/27."""
    from rich.console import Group
    from rich.style import Style

    frame = render(snapshot(), 120, 40, now=NOW)
    assert isinstance(frame, Group)
    rows = {str(t).split("  ")[0].strip(): t for t in frame.renderables if hasattr(t, "spans")}

    def style_at(text: object, char: str) -> Style:
        assert hasattr(text, "get_style_at_offset")
        i = str(text).index(char)
        return text.get_style_at_offset(Console(), i)  # type: ignore[no-any-return]

    dong_anh = rows["Huyện Đông Anh"]
    assert style_at(dong_anh, "✖").reverse
    assert style_at(dong_anh, "Huyện").reverse  # the district is marked
    # and only those: its rooms up, its count and whatever is beside the grid are not
    assert not style_at(dong_anh, "●").reverse
    assert not style_at(dong_anh, "24/25").reverse
    assert not style_at(rows["Quận Ba Đình"], "Quận").reverse  # all up: not marked
    assert not style_at(rows["Quận Ba Đình"], "●").reverse
    assert "27/27◐" in str(rows["Huyện Sóc Sơn"])


def test_when_not_every_district_fits_the_worst_are_shown() -> None:
    """With notes under the header (as in the demo) at 80×24 not all 30 bars fit: the
    districts left out are healthy ones, and the note says so; a down district is never
    among them, wherever it is in the inventory."""
    s = snapshot()
    s.notes = ["demo: scenario uplink-loss", "demo: lab on 127.20.0.1", "demo: alerts printed"]
    s.points["thanh-tri"].state = "down"  # a district in the middle of the list
    text = screen(s, 80, 24)
    assert "more districts, all up (enlarge the terminal)" in text
    for name in ("Ba Vì", "Thanh Trì", "Đông Anh", "Sóc Sơn"):  # down, down, a room down, degraded
        assert any(name in line and "/" in line for line in text.splitlines()), name
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24


def test_a_wide_screen_shows_the_worst_incident_in_detail() -> None:
    """At 200×60 the room beside the lists shows the worst incident's detail; at 120×40 it
    does not fit and is left out."""
    s = snapshot()
    s.points["ba-vi"].reason = "2 failed cycles (sip: no response within 1s)"
    wide = screen(s, 200, 60)
    assert "Worst incident" in wide
    assert "29 rooms unreachable behind it" in wide
    # the pane is narrower than the lists beside it: a long reason goes on over two lines
    assert "reason   2 failed cycles (sip: no response" in wide
    assert re.search(r"\n.* {10}within 1s\)", wide), wide
    assert "Worst incident" not in screen(s, 120, 40)
    # the incident's row keeps room for its reason
    (row,) = [ln for ln in wide.splitlines() if "Huyện Ba Vì — uplink down" in ln]
    assert "· 29 unreachable · 2 failed cycles (sip: no res" in row, row


def test_a_short_grid_keeps_the_worst_districts() -> None:
    """At 120×30 the grid has rows for 24 districts: Mỹ Đức, the last of the inventory, is
    kept when it is down, and the note says the districts left out are all up."""
    s = snapshot()
    s.points["my-duc"].state = "down"
    text = screen(s, 120, 30)
    assert any(line.startswith("Huyện Mỹ Đức") for line in text.splitlines())
    assert "more districts, all up" in text


def test_a_district_without_fresh_data_is_one_gap_row() -> None:
    """Rooms with no fresh data (their probe lost, the broker away) are a gap in monitoring:
    one row for their district, in the gap's colour, not a row per room."""
    s = snapshot()
    for p in s.points.values():
        if p.district == "dong-anh":
            p.state, p.cause, p.reason = "unknown", p.id, "no fresh result for 20s"
    gaps = [i for i in s.incidents() if i.cause == "gap:dong-anh"]
    assert len(gaps) == 1 and gaps[0].size == 25
    text = screen(s, 120, 40)
    assert "Huyện Đông Anh: 25 rooms not monitored since 14:00:00" in text
    assert sum("not monitored since" in line for line in text.splitlines()) == 1


def test_at_80x24_a_district_without_data_is_a_gap_not_zero() -> None:
    s = snapshot()
    for p in s.points.values():
        if p.district == "dong-anh":
            p.state = "unknown"
    row = next(
        line for line in screen(s, 80, 24).splitlines() if "Đông Anh" in line and "?" in line
    )
    assert "  ?/25" in row and "0/25" not in row


def test_a_degraded_room_says_what_crossed_before_its_figures() -> None:
    s = snapshot()
    s.points["soc-son.minh-tri"].reason = "sip: 503 Service Unavailable"
    row = next(line for line in screen(s, 160, 40).splitlines() if "Minh Trí" in line)
    assert "degraded since 14:00:00 · sip: 503 Service Unavailable · rtt 12 ms" in row


def test_a_narrow_header_keeps_the_rooms_down() -> None:
    """At 80 columns the conference's long name goes last, so the count of rooms down is
    never what gets cut off."""
    first = screen(snapshot(), 80, 24).splitlines()[0]
    assert first.startswith("ready 93.1% ✖ (≥98%)   31 rooms down")
    assert "readiness 93.1% (target 98%)" in screen(snapshot(), 120, 40).splitlines()[0]
