"""The report's figures from event logs built by hand (real EventLog files): exact
durations, availabilities, incidents and gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.core.events import State
from monitor.report.compute import EmptyWindow, Report, compute
from monitor.report.source import read_log
from tests.report.logs import T0, change, first_results, inventory, write_log

NOW = T0 + 7200.0


def report(
    db: Path, start: float = 0.0, end: float = 600.0, *, with_inventory: bool = True
) -> Report:
    """The report over T0+start .. T0+end."""
    extract = read_log(db, T0 + start, T0 + end, NOW)
    return compute(
        extract,
        T0 + start,
        T0 + end,
        now=NOW,
        inventory=inventory() if with_inventory else None,
        timezone="Asia/Ho_Chi_Minh",
        title="Hội nghị thử",
    )


def outage() -> list:  # type: ignore[type-arg]
    """Ba Vì's uplink down from +100 (first failed result +93) to +200 (first good +195)."""
    communes = ("d.a", "d.b", "d.c")
    return [
        *first_results(-10),
        change(
            "d", State.UP, State.DOWN, 100, evidence=93, reason="2 failed cycles (sip: no response)"
        ),
        *(
            change(
                c,
                State.UP,
                State.UNREACHABLE,
                101,
                cause="d",
                evidence=96,
                reason="uplink d is down",
            )
            for c in communes
        ),
        change("d", State.DOWN, State.UP, 200, cause="d", evidence=195),
        *(change(c, State.UNREACHABLE, State.UP, 201, cause="d", evidence=196) for c in communes),
    ]


async def test_a_district_outage_is_one_incident_with_its_rooms_counted(tmp_path: Path) -> None:
    """HQ down 100 s, its 3 communes unreachable 100 s: one incident of 4 rooms, 101 s, found
    7 s after the first failed result, back 6 s after the first good one."""
    r = report(await write_log(tmp_path / "e.sqlite3", outage()))
    [i] = r.incidents
    assert (i.cause, i.cause_name, i.district_name) == ("d", "Huyện Ba Vì", "Huyện Ba Vì")
    assert i.rooms == 4 and i.rooms_by_state == {"down": 1, "unreachable": 3}
    assert i.points[0] == "d"
    assert (i.start, i.end, i.duration) == (T0 + 100, T0 + 201, 101.0)
    assert i.time_to_detect == pytest.approx(7.0) and i.time_to_recover == pytest.approx(6.0)
    assert i.reason == "2 failed cycles (sip: no response)" and not i.before_window
    hq = next(room for room in r.rooms if room.id == "d")
    assert hq.times.down == pytest.approx(100.0) and hq.times.up == pytest.approx(500.0)
    assert hq.availability == pytest.approx(500 / 600)
    commune = next(room for room in r.rooms if room.id == "d.a")
    assert commune.times.unreachable == pytest.approx(100.0)
    d = r.district("d")
    assert d.rooms == 4 and d.rooms_out == 4
    assert d.availability == pytest.approx((2400 - 400) / 2400)
    assert d.out_seconds == pytest.approx(101.0)
    assert [(s.worst, s.rooms) for s in d.timeline] == [
        ("up", {}),
        ("down", {"down": 1}),
        ("down", {"down": 1, "unreachable": 3}),
        ("unreachable", {"unreachable": 3}),
        ("up", {}),
    ]
    assert r.district("m").availability == 1.0
    s = r.summary
    assert (s.rooms, s.districts, s.rooms_out, s.outages, s.worst_district) == (5, 2, 4, 1, "d")
    assert s.availability == pytest.approx((3000 - 400) / 3000)
    assert s.readiness_at_start == 1.0 and s.at_start == {"up": 5}
    assert s.times.not_monitored == 0.0 and r.gaps == ()


async def test_the_state_at_the_start_is_the_last_change_before_it(tmp_path: Path) -> None:
    """A room down since before the window and never back: out the whole window, an incident
    that began before it (at the stored change) and is ongoing at its end."""
    events = [*first_results(-100), change("m", State.UP, State.DOWN, -30, evidence=-38)]
    r = report(await write_log(tmp_path / "e.sqlite3", events))
    [i] = r.incidents
    assert i.cause == "m" and i.before_window and i.end is None
    assert i.start == T0 - 30 and i.duration == pytest.approx(630.0)
    assert i.time_to_detect == pytest.approx(8.0) and i.time_to_recover is None
    m = next(room for room in r.rooms if room.id == "m")
    assert m.at_start == "down" and m.times.down == pytest.approx(600.0)
    assert m.availability == 0.0 and m.changes == 0
    assert r.summary.readiness_at_start == pytest.approx(4 / 5)


async def test_maintenance_is_left_out_of_availability(tmp_path: Path) -> None:
    """100 s of maintenance, up otherwise: 100% available, the 100 s counted apart."""
    events = [
        *first_results(-10),
        change("m", State.UP, State.MAINTENANCE, 200),
        change("m", State.MAINTENANCE, State.UP, 300),
    ]
    r = report(await write_log(tmp_path / "e.sqlite3", events))
    m = next(room for room in r.rooms if room.id == "m")
    assert m.times.maintenance == pytest.approx(100.0) and m.availability == 1.0
    assert r.incidents == () and r.summary.worst_district is None


async def test_time_without_a_running_monitor_is_not_monitored_not_up(tmp_path: Path) -> None:
    """The monitor stopped from +300 to +400 while a room was down: the 100 s count as not
    running for every room (not as up, nor down), one gap row; availability leaves them out."""
    events = [*first_results(-10), change("m", State.UP, State.DOWN, 250, evidence=244)]
    runs = [(-60.0, 300.0, 300.0), (400.0, 3600.0, 3600.0)]
    r = report(await write_log(tmp_path / "e.sqlite3", events, runs))
    m = next(room for room in r.rooms if room.id == "m")
    assert m.times.down == pytest.approx(250.0) and m.times.not_running == pytest.approx(100.0)
    assert m.availability == pytest.approx(250 / 500)
    hq = next(room for room in r.rooms if room.id == "d")
    assert hq.times.up == pytest.approx(500.0) and hq.availability == 1.0
    [gap] = r.gaps
    assert (gap.kind, gap.start, gap.end, gap.rooms) == ("not_running", T0 + 300, T0 + 400, 5)
    assert r.summary.times.not_running == pytest.approx(500.0)


async def test_a_monitor_that_died_ran_until_its_last_heartbeat(tmp_path: Path) -> None:
    """A run with no stop whose heartbeat is old covers only up to the heartbeat."""
    r = report(await write_log(tmp_path / "e.sqlite3", first_results(-10), [(-60.0, 450.0, None)]))
    [gap] = r.gaps
    assert (gap.kind, gap.start, gap.end) == ("not_running", T0 + 450, None)
    assert r.rooms[0].times.not_running == pytest.approx(150.0)


async def test_a_lost_agent_is_a_gap_not_an_outage(tmp_path: Path) -> None:
    """Rooms unknown for 50 s because their agent went away: one gap row for the agent,
    counted as not monitored, no incident, availability unchanged."""
    events = [
        *first_results(-10),
        *(
            change(
                p, State.UP, State.UNKNOWN, 100, cause="agent:north", reason="agent north offline"
            )
            for p in ("d", "d.a")
        ),
        *(change(p, State.UNKNOWN, State.UP, 150, cause="agent:north") for p in ("d", "d.a")),
    ]
    r = report(await write_log(tmp_path / "e.sqlite3", events))
    [gap] = r.gaps
    assert (gap.kind, gap.cause, gap.rooms, gap.duration) == ("agent", "agent:north", 2, 50.0)
    assert gap.reason == "agent north offline" and gap.districts == ("d",)
    assert r.incidents == () and r.summary.availability == 1.0
    assert r.summary.times.unknown == pytest.approx(100.0)


async def test_a_degraded_period_says_what_crossed_with_its_figures(tmp_path: Path) -> None:
    """Degraded from +60 to +90: a period with its reason and figures; the room's worst loss
    and MOS come from its changes; degraded time is available."""
    bad = {"rtt": 0.04, "jitter": 0.012, "loss": 0.05, "mos": 3.1}
    events = [
        *first_results(-10),
        change(
            "d.b",
            State.UP,
            State.DEGRADED,
            60,
            evidence=50,
            metrics=bad,
            reason="loss 5.0% > 2.0% (13 of 250 packets)",
        ),
        change("d.b", State.DEGRADED, State.UP, 90, evidence=82),
    ]
    r = report(await write_log(tmp_path / "e.sqlite3", events))
    [p] = r.degraded
    assert (p.point, p.name, p.district_name) == ("d.b", "Xã Ba Trại", "Huyện Ba Vì")
    assert (p.start, p.end, p.duration) == (T0 + 60, T0 + 90, 30.0)
    assert (p.time_to_detect, p.time_to_recover) == (10.0, 8.0)
    assert p.reason.startswith("loss 5.0% > 2.0%") and p.figures.loss == 0.05
    room = next(room for room in r.rooms if room.id == "d.b")
    assert room.worst.loss == 0.05 and room.worst.mos == 3.1 and room.worst.rtt == 0.04
    assert room.times.degraded == pytest.approx(30.0) and room.availability == 1.0
    assert r.summary.rooms_degraded == 1 and r.incidents == ()


async def test_a_log_without_runs_is_read_from_its_changes_with_a_note(tmp_path: Path) -> None:
    """An older confmon's log (no runs table): the timeline alone, and a note saying so."""
    r = report(await write_log(tmp_path / "e.sqlite3", outage(), runs=None))
    assert [n.code for n in r.notes] == ["no_runs"]
    assert r.summary.times.not_running == 0.0 and len(r.incidents) == 1


async def test_without_an_inventory_the_rooms_are_the_logs(tmp_path: Path) -> None:
    """No -c: the rooms and names come from the log, districts named by their headquarters."""
    r = report(await write_log(tmp_path / "e.sqlite3", outage()), with_inventory=False)
    assert [room.id for room in r.rooms] == ["d", "d.a", "d.b", "d.c", "m"]
    assert r.district("d").name == "d"  # the events of this log carry ids as names
    assert "no_inventory" in [n.code for n in r.notes]


async def test_a_window_the_log_knows_nothing_of_is_refused(tmp_path: Path) -> None:
    """A window ending before the first change, or one when no monitor ran: EmptyWindow."""
    db = await write_log(tmp_path / "e.sqlite3", first_results(100), [(90.0, 3600.0, 3600.0)])
    with pytest.raises(EmptyWindow, match="before the event log's first state change"):
        report(db, 0, 50)
    db2 = await write_log(tmp_path / "f.sqlite3", first_results(-10), [(-60.0, 100.0, 100.0)])
    with pytest.raises(EmptyWindow, match="no monitor was writing the event log"):
        report(db2, 200, 300)


async def test_a_window_ending_in_the_future_stops_at_now(tmp_path: Path) -> None:
    """--to later than now: the figures go up to now, and a note says so."""
    db = await write_log(tmp_path / "e.sqlite3", first_results(-10))
    r = report(db, 0, NOW - T0 + 3600)
    assert r.meta.end == NOW and r.meta.requested_end == NOW + 3600
    assert "window_in_future" in [n.code for n in r.notes]


async def test_a_flapping_uplink_under_rooms_still_out_is_one_incident(tmp_path: Path) -> None:
    """The headquarters down, up for 10 s, down again while its commune stays unreachable:
    one incident (the stretches of one cause overlap); recovery from its last stretch."""
    events = [
        *first_results(-10),
        change("d", State.UP, State.DOWN, 100, evidence=92),
        change("d.a", State.UP, State.UNREACHABLE, 101, cause="d", evidence=95),
        change("d", State.DOWN, State.UP, 150, evidence=146),
        change("d", State.UP, State.DOWN, 160, evidence=155),
        change("d", State.DOWN, State.UP, 300, evidence=290),
        change("d.a", State.UNREACHABLE, State.UP, 302, cause="d", evidence=291),
    ]
    r = report(await write_log(tmp_path / "e.sqlite3", events))
    [i] = r.incidents
    assert (i.start, i.end, i.rooms) == (T0 + 100, T0 + 302, 2)
    assert i.time_to_detect == pytest.approx(8.0) and i.time_to_recover == pytest.approx(12.0)
    hq = next(room for room in r.rooms if room.id == "d")
    assert hq.times.down == pytest.approx(190.0) and hq.changes == 4
