"""Keys on the dashboard: search a point without diacritics, open its detail, go back."""

from __future__ import annotations

import io
from collections import deque

from rich.console import Console

from monitor.dashboard.ui import Ui, fold, search
from monitor.dashboard.view import render, sparkline
from tests.dashboard.test_view import NOW, snapshot


def frame(ui: Ui, width: int = 100, height: int = 30) -> str:
    s = SNAP
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    console.print(render(s, width, height, now=NOW, ui=ui))
    return console.export_text()


SNAP = snapshot()


def test_folding_drops_diacritics_and_reads_d_for_đ() -> None:
    assert fold("Huyện Ba Vì") == "huyen ba vi"
    assert fold("Đông Anh") == "dong anh"
    assert fold("Xã Phú Cường") == "xa phu cuong"


def test_search_finds_with_or_without_diacritics_and_names_the_district() -> None:
    """ "ba vi" finds Huyện Ba Vì first (its name starts a word with it); "phu cuong" finds
    both Xã Phú Cường, each with its own district, so the operator can tell them apart."""
    found = search(SNAP, "ba vi")
    assert found[0].id == "ba-vi"
    assert [p.id for p in search(SNAP, "Ba Vì")][:1] == ["ba-vi"]
    twins = search(SNAP, "phu cuong")
    assert len(twins) == 2 and {p.district for p in twins} == {"soc-son", "ba-vi"}
    ui = Ui()
    for key in "/phu cuong":
        ui.key(key, SNAP)
    text = frame(ui)
    assert "Xã Phú Cường (Sóc Sơn)" in text and "Xã Phú Cường (Ba Vì)" in text
    assert search(SNAP, "") == [] and search(SNAP, "zzz") == []


def test_keys_open_a_detail_and_esc_goes_back() -> None:
    ui = Ui()
    assert ui.key("/", SNAP) is False and ui.mode == "search"
    for key in "dong anh xuan":  # 'q' or 'n' here are letters of the query, not commands
        assert ui.key(key, SNAP) is False
    assert ui.key("enter", SNAP) is False
    assert (ui.mode, ui.point) == ("detail", "dong-anh.xuan-non")
    text = frame(ui)
    assert "Xã Xuân Nộn" in text and "down since 14:55:00 (5:00 ago)" in text
    assert ui.key("esc", SNAP) is False and ui.mode == "search"
    assert ui.key("esc", SNAP) is False and ui.mode == "main"
    assert ui.key("q", SNAP) is True


def test_enter_on_the_city_opens_the_worst_incident() -> None:
    ui = Ui()
    ui.key("enter", SNAP)
    assert (ui.mode, ui.point) == ("detail", "ba-vi")
    text = frame(ui)
    assert "29 rooms unreachable behind it" in text
    assert "none now: it does not answer" in text  # no stale figures for a point down


def test_the_detail_draws_rtt_and_loss_over_the_last_minutes() -> None:
    s = snapshot()
    s.history["soc-son.minh-tri"] = deque(
        [(NOW - 300 + 5 * i, 0.010 + 0.010 * (i >= 30), 0.0 if i < 50 else 0.08) for i in range(60)]
    )
    ui = Ui()
    ui.open("soc-son.minh-tri", back="main")
    console = Console(width=100, height=30, file=io.StringIO(), record=True, color_system=None)
    console.print(render(s, 100, 30, now=NOW, ui=ui))
    text = console.export_text()
    rtt = next(line for line in text.splitlines() if line.startswith(" RTT"))
    assert "▅" * 30 + "█" * 30 in rtt and "max 20 ms" in rtt  # 10 ms is half of 20 ms
    loss = next(line for line in text.splitlines() if line.startswith(" loss"))
    assert "▁" * 50 + "█" * 10 in loss and "max 8%" in loss
    assert "the last 5 min" in text


def test_sparkline_marks_missing_answers() -> None:
    assert sparkline([0.0, 0.5, 1.0, None], 10) == "▁▅█✕"
    assert sparkline([1.0] * 50, 20) == "█" * 20  # the last ones that fit


def test_d_picks_a_district_and_lists_its_rooms_worst_first() -> None:
    ui = Ui()
    ui.key("d", SNAP)
    assert len(ui.matches(SNAP)) == 30  # every district before anything is typed
    for key in "dong anh":
        ui.key(key, SNAP)
    assert [p.id for p in ui.matches(SNAP)] == ["dong-anh"]
    ui.key("enter", SNAP)
    assert (ui.mode, ui.district) == ("district", "dong-anh")
    text = frame(ui, height=40)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "Xã Xuân Nộn" in line)
    assert all("✖" not in line for line in lines[first + 1 :])  # the room down comes first
    assert "Huyện Đông Anh   25 rooms, worst first" in text
    ui.key("enter", SNAP)
    assert (ui.mode, ui.point) == ("detail", "dong-anh.xuan-non")
    ui.key("esc", SNAP)
    assert ui.mode == "district"
    ui.key("down", SNAP)
    ui.key("enter", SNAP)
    assert ui.point != "dong-anh.xuan-non"  # the next one
    ui.key("esc", SNAP)
    ui.key("esc", SNAP)
    assert ui.mode == "main"
