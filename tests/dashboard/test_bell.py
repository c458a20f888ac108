"""The dashboard's bell: once per big incident, again only for a new one."""

from __future__ import annotations

from monitor.dashboard.bell import Bell
from tests.dashboard.test_view import snapshot


def test_a_cut_district_rings_once_and_again_only_when_it_happens_again() -> None:
    s = snapshot()  # Ba Vì cut (its 29 communes behind it), one room down, one degraded
    bell = Bell()
    assert bell.update(s.incidents()) is True
    assert bell.update(s.incidents()) is False  # the same outage, next frame
    for p in s.points.values():
        if p.district == "ba-vi":
            p.state = "up"
    assert bell.update(s.incidents()) is False  # over: nothing to ring
    s.points["ba-vi"].state = "down"
    assert bell.update(s.incidents()) is True  # a new outage


def test_single_rooms_and_degraded_ones_do_not_ring_but_many_rooms_do() -> None:
    s = snapshot()
    for p in s.points.values():
        if p.district == "ba-vi":
            p.state = "up"
    bell = Bell(rooms=10)
    assert bell.update(s.incidents()) is False  # one room down, one degraded
    # eleven rooms of one cause down behind a commune-level uplink: loud
    ids = [pid for pid in s.points if pid.startswith("chuong-my.")][:12]
    s.points[ids[0]].state = "down"
    for pid in ids[1:]:
        s.points[pid].state = "unreachable"
        s.points[pid].cause = ids[0]
    assert bell.update(s.incidents()) is True
    assert Bell(rooms=20).update(s.incidents()) is False
