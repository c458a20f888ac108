"""Which state changes become which notifications (monitor.alerts.grouping.Groups).

Everything runs on a virtual clock: ``now`` is a float passed to ``add`` and ``flush``.
The inventory is a small facts function: districts (their headquarters' id is the
district's id, level ``district``) with communes ``<district>.c1..``, level ``commune``.
"""

from __future__ import annotations

import datetime
import itertools
import json
from collections.abc import Iterable
from typing import Any

import pytest

from monitor.alerts.config import AlertsSettings, Receiver
from monitor.alerts.grouping import Groups, Notification, PointFacts
from monitor.core.events import Event, State

#: 2026-12-01 14:52:55 in Hanoi (UTC+7)
T0 = datetime.datetime(2026, 12, 1, 7, 52, 55, tzinfo=datetime.UTC).timestamp()

BA_VI = [
    "Thị trấn Tây Đằng", "Xã Phú Cường", "Xã Cổ Đô", "Xã Vạn Thắng", "Xã Phong Vân",
    "Xã Phú Đông", "Xã Phú Hồng", "Xã Phú Châu", "Xã Thái Hòa", "Xã Đồng Thái",
    "Xã Phú Sơn", "Xã Minh Châu", "Xã Vật Lại", "Xã Chu Minh", "Xã Tòng Bạt",
    "Xã Cẩm Lĩnh", "Xã Sơn Đà", "Xã Đông Quang", "Xã Tiên Phong", "Xã Thụy An",
    "Xã Cam Thượng", "Xã Thuần Mỹ", "Xã Tản Lĩnh", "Xã Ba Trại", "Xã Minh Quang",
    "Xã Ba Vì", "Xã Vân Hòa", "Xã Yên Bài", "Xã Khánh Thượng",
]  # fmt: skip
SOC_SON = [
    "Thị trấn Sóc Sơn", "Xã Bắc Sơn", "Xã Minh Trí", "Xã Hồng Kỳ", "Xã Nam Sơn",
    "Xã Trung Giã", "Xã Tân Hưng", "Xã Minh Phú", "Xã Phù Linh", "Xã Bắc Phú",
    "Xã Tân Minh", "Xã Quang Tiến", "Xã Hiền Ninh", "Xã Tân Dân", "Xã Tiên Dược",
    "Xã Việt Long", "Xã Xuân Giang", "Xã Mai Đình", "Xã Đức Hoà", "Xã Thanh Xuân",
    "Xã Đông Xuân", "Xã Kim Lũ", "Xã Phú Cường", "Xã Phú Minh", "Xã Phù Lỗ",
]  # fmt: skip
#: more districts, so that a city-wide storm has 450+ points
OTHERS = {
    "dong-anh": "Huyện Đông Anh", "gia-lam": "Huyện Gia Lâm", "thanh-tri": "Huyện Thanh Trì",
    "me-linh": "Huyện Mê Linh", "phuc-tho": "Huyện Phúc Thọ", "dan-phuong": "Huyện Đan Phượng",
    "hoai-duc": "Huyện Hoài Đức", "quoc-oai": "Huyện Quốc Oai", "thach-that": "Huyện Thạch Thất",
    "chuong-my": "Huyện Chương Mỹ", "thanh-oai": "Huyện Thanh Oai",
    "thuong-tin": "Huyện Thường Tín", "phu-xuyen": "Huyện Phú Xuyên", "ung-hoa": "Huyện Ứng Hòa",
}  # fmt: skip

DISTRICTS: dict[str, tuple[str, list[str]]] = {
    "ba-vi": ("Huyện Ba Vì", BA_VI),
    "soc-son": ("Huyện Sóc Sơn", SOC_SON),
    **{
        d: (name, [f"Xã {name.removeprefix('Huyện ')} số {i}" for i in range(1, 29)])
        for d, name in OTHERS.items()
    },
}

FACTS: dict[str, PointFacts] = {}
for _d, (_dname, _communes) in DISTRICTS.items():
    FACTS[_d] = PointFacts(_dname, _d, _dname, "district")
    for _i, _cname in enumerate(_communes, 1):
        FACTS[f"{_d}.c{_i}"] = PointFacts(_cname, _d, _dname, "commune")


def facts(point: str) -> PointFacts | None:
    return FACTS.get(point)


def points_of(district: str) -> list[str]:
    """The district's headquarters, then its communes."""
    return [district] + [f"{district}.c{i}" for i in range(1, len(DISTRICTS[district][1]) + 1)]


ALL_POINTS = [p for d in DISTRICTS for p in points_of(d)]
assert len(ALL_POINTS) >= 450

REASONS = {
    "down": "2 failed cycles (icmp: timeout, sip: no response)",
    "degraded": "loss 7% > 2%",
    "up": "all probes within thresholds",
    "maintenance": "maintenance window",
    "unknown": "no fresh result for 20s",
}


def receiver(**kw: Any) -> Receiver:
    spec: dict[str, Any] = {"name": "ops", "url": "https://hooks.example.vn/confmon"}
    if kw.get("format", "confmon") == "confmon":
        spec["secret_env"] = "CONFMON_HOOK_SECRET"  # the native format is signed
    elif "{secret}" in kw.get("url", ""):
        spec["secret_env"] = "CONFMON_BOT_TOKEN"
    return Receiver.model_validate({**spec, **kw})


def settings(**kw: Any) -> AlertsSettings:
    spec: dict[str, Any] = {"group_wait": 2.0, "repeat_interval": 3600.0}
    return AlertsSettings.model_validate({**spec, **kw})


class Log:
    """Events as the event log stores them: increasing ids, ``previous`` tracked."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.state: dict[str, State] = {}

    def ev(self, point: str, state: str, at: float, *, cause: str = "", reason: str = "") -> Event:
        new = State(state)
        before = self.state.get(point, State.UP)
        self.state[point] = new
        if not reason:
            reason = f"uplink {cause} is down" if state == "unreachable" else REASONS[state]
        return Event(
            point=point,
            previous=before,
            state=new,
            reason=reason,
            at=at,
            metrics={"rtt": 12.5, "loss": 0.0} if state == "up" else {"rtt": None, "loss": 1.0},
            cause=cause or point,
            name=FACTS[point].name,
            district=FACTS[point].district,
            id=next(self._ids),
        )

    def outage(self, district: str, at: float) -> list[Event]:
        """The headquarters down, then its communes unreachable behind it."""
        hq, *communes = points_of(district)
        out = [self.ev(hq, "down", at)]
        out += [self.ev(p, "unreachable", at + 0.001 * i, cause=hq) for i, p in enumerate(communes)]
        return out

    def recovery(self, district: str, at: float) -> list[Event]:
        """Back up; a recovery names the cause of the state it leaves."""
        return [self.ev(p, "up", at, cause=district) for p in points_of(district)]

    def all(self, points: Iterable[str], state: str, at: float, *, cause: str = "") -> list[Event]:
        return [self.ev(p, state, at, cause=cause) for p in points]


def make(rkw: dict[str, Any] | None = None, **skw: Any) -> tuple[Groups, Log]:
    return Groups(receiver(**(rkw or {})), settings(**skw), facts), Log()


def one(notes: list[Notification]) -> Notification:
    assert len(notes) == 1, [(n.kind, n.group["key"]) for n in notes]
    return notes[0]


def points(n: Notification) -> set[str]:
    return {a["point"] for a in n.alerts}


def firing_points(n: Notification) -> set[str]:
    return {a["point"] for a in n.alerts if not a["was"]}


def recovered(n: Notification) -> dict[str, str]:
    return {a["point"]: a["was"] for a in n.alerts if a["was"]}


def fire(g: Groups, events: list[Event], now: float) -> Notification:
    """Add ``events`` at ``now`` and return the one message due after group_wait."""
    g.add(events, now)
    return one(g.flush(now + g.settings.group_wait))


# --- a district outage ------------------------------------------------------------------------


def test_district_outage_is_one_message_naming_the_cause_then_one_resolved() -> None:
    g, log = make()
    hq, *communes = log.outage("ba-vi", T0)
    assert g.add([hq], T0) == 1
    assert g.add(communes, T0 + 1.0) == 29
    assert g.flush(T0) == []
    assert g.flush(T0 + 1.99) == []
    assert g.next_due() == T0 + 2.0

    n = one(g.flush(T0 + 2.0))
    assert (n.kind, n.status, n.receiver) == ("firing", "firing", "ops")
    assert n.created_at == T0 + 2.0
    assert n.group["key"] == "district:ba-vi"
    assert n.group["district_name"] == "Huyện Ba Vì"
    assert n.group["rooms"] == 30
    assert n.group["counts"] == {"down": 1, "unreachable": 29}
    [cause] = n.group["causes"]
    assert cause["point"] == "ba-vi" and cause["name"] == "Huyện Ba Vì"
    assert cause["rooms"] == 30
    assert (cause["state"], cause["since"]) == ("down", T0)
    assert firing_points(n) == set(points_of("ba-vi")) and len(n.alerts) == 30
    names = {a["point"]: a["name"] for a in n.alerts}
    assert names["ba-vi.c2"] == "Xã Phú Cường"
    assert {a["cause"] for a in n.alerts} == {"ba-vi"}

    # nothing more while it stays the same (no reminder before repeat_interval)
    assert g.flush(T0 + 2.5) == []
    assert g.flush(T0 + 600) == []

    g.add(log.recovery("ba-vi", T0 + 300), T0 + 300)
    assert g.flush(T0 + 301) == []
    r = one(g.flush(T0 + 302))
    assert (r.kind, r.status) == ("resolved", "resolved")
    assert r.group["key"] == "district:ba-vi" and r.group["rooms"] == 0
    assert r.group["started"] == T0
    assert recovered(r) == {"ba-vi": "down", **{p: "unreachable" for p in points_of("ba-vi")[1:]}}
    assert {a["state"] for a in r.alerts} == {"up"}

    assert g.flush(T0 + 303) == []
    assert g.flush(T0 + 100_000) == []
    assert g.next_due() is None


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "district",
            {"district:ba-vi": {"ba-vi", "ba-vi.c3"}, "district:soc-son": {"soc-son.c2"}},
        ),
        ("cause", {"cause:ba-vi": {"ba-vi", "ba-vi.c3"}, "cause:soc-son.c2": {"soc-son.c2"}}),
        (
            "point",
            {
                "point:ba-vi": {"ba-vi"},
                "point:ba-vi.c3": {"ba-vi.c3"},
                "point:soc-son.c2": {"soc-son.c2"},
            },
        ),
        ("city", {"city": {"ba-vi", "ba-vi.c3", "soc-son.c2"}}),
    ],
)
def test_group_by_gives_the_group_keys(group_by: str, expected: dict[str, set[str]]) -> None:
    g, log = make(group_by=group_by)
    g.add(
        [
            log.ev("ba-vi", "down", T0),
            log.ev("ba-vi.c3", "unreachable", T0, cause="ba-vi"),
            log.ev("soc-son.c2", "down", T0),
        ],
        T0,
    )
    notes = g.flush(T0 + 2)
    assert {n.group["key"]: points(n) for n in notes} == expected
    assert {n.kind for n in notes} == {"firing"}


def test_group_by_cause_titles_the_group_with_the_cause() -> None:
    g, log = make(group_by="cause")
    n = fire(g, log.outage("ba-vi", T0), T0)
    assert n.group["key"] == "cause:ba-vi" and n.group["rooms"] == 30
    assert n.group["causes"][0]["name"] == "Huyện Ba Vì"


def test_two_districts_down_at_once_are_two_messages() -> None:
    g, log = make()
    g.add(log.outage("ba-vi", T0) + log.outage("soc-son", T0), T0)
    notes = g.flush(T0 + 2)
    assert {n.group["key"]: n.group["rooms"] for n in notes} == {
        "district:ba-vi": 30,
        "district:soc-son": 26,
    }
    by_key = {n.group["key"]: n for n in notes}
    assert by_key["district:soc-son"].group["district_name"] == "Huyện Sóc Sơn"
    assert points(by_key["district:soc-son"]) == set(points_of("soc-son"))
    assert [c["point"] for c in by_key["district:soc-son"].group["causes"]] == ["soc-son"]


# --- dedup --------------------------------------------------------------------------------------


def test_down_and_up_again_within_group_wait_sends_nothing() -> None:
    g, log = make()
    g.add([log.ev("ba-vi.c5", "down", T0)], T0)
    g.add([log.ev("ba-vi.c5", "up", T0 + 1)], T0 + 1)
    assert g.flush(T0 + 2) == []
    assert g.flush(T0 + 10_000) == []
    assert g.next_due() is None


def test_a_change_that_leaves_the_firing_set_as_sent_sends_nothing() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    # c1 flaps through unreachable and back, c2 drops and comes back: same set as sent
    g.add([log.ev("ba-vi.c1", "unreachable", T0 + 100, cause="ba-vi")], T0 + 100)
    g.add([log.ev("ba-vi.c2", "down", T0 + 100.5)], T0 + 100.5)
    g.add([log.ev("ba-vi.c1", "down", T0 + 101)], T0 + 101)
    g.add([log.ev("ba-vi.c2", "up", T0 + 101.5)], T0 + 101.5)
    assert g.flush(T0 + 102) == []
    assert g.flush(T0 + 200) == []
    # a real change is still told
    g.add([log.ev("ba-vi.c1", "unreachable", T0 + 300, cause="ba-vi")], T0 + 300)
    n = one(g.flush(T0 + 302))
    assert n.kind == "firing" and n.alerts[0]["state"] == "unreachable"


def test_partial_recovery_lists_the_remaining_and_the_recovered() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi.c1", "down", T0), log.ev("ba-vi.c2", "down", T0)], T0)
    g.add([log.ev("ba-vi.c2", "up", T0 + 100)], T0 + 100)
    n = one(g.flush(T0 + 102))
    assert (n.kind, n.status) == ("firing", "firing")
    assert firing_points(n) == {"ba-vi.c1"}
    assert recovered(n) == {"ba-vi.c2": "down"}
    back = next(a for a in n.alerts if a["was"])
    assert back["state"] == "up" and back["since"] == T0 + 100
    assert n.group["rooms"] == 1 and n.group["counts"] == {"down": 1}
    assert [c["point"] for c in n.group["causes"]] == ["ba-vi.c1"]


# --- reminders ----------------------------------------------------------------------------------


def test_repeat_at_last_sent_plus_repeat_interval_not_before() -> None:
    g, log = make(repeat_interval="1h")
    fire(g, log.outage("ba-vi", T0), T0)  # sent at T0 + 2
    assert g.next_due() == T0 + 2 + 3600
    assert g.flush(T0 + 2 + 3599) == []
    n = one(g.flush(T0 + 2 + 3600))
    assert (n.kind, n.status) == ("repeat", "firing")
    assert firing_points(n) == set(points_of("ba-vi")) and not recovered(n)
    assert n.group["rooms"] == 30
    assert g.flush(T0 + 2 + 3601) == []
    assert g.flush(T0 + 2 + 7199) == []
    assert one(g.flush(T0 + 2 + 7200)).kind == "repeat"


def test_repeat_interval_zero_never_repeats() -> None:
    g, log = make(repeat_interval=0)
    fire(g, log.outage("ba-vi", T0), T0)
    assert g.next_due() is None
    assert g.flush(T0 + 3600 * 24 * 7) == []


def test_repeat_every_overrides_repeat_interval() -> None:
    g, log = make(repeat_interval="1h")
    g.repeat_every = 60.0
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    assert g.next_due() == T0 + 62
    assert g.flush(T0 + 61.9) == []
    assert one(g.flush(T0 + 62)).kind == "repeat"
    assert one(g.flush(T0 + 122)).kind == "repeat"


def test_an_acknowledged_outage_gets_no_reminders_but_its_recovery_is_told() -> None:
    acked: set[str] = set()
    g, log = make(repeat_interval="1h")
    g.acked = acked.__contains__
    fire(g, log.outage("ba-vi", T0), T0)  # sent at T0 + 2
    acked.add("ba-vi")  # the operator pressed `a` on the dashboard
    assert g.flush(T0 + 2 + 3600) == []
    assert g.next_due() == T0 + 2 + 7200  # no busy loop: the next one is due later
    assert g.flush(T0 + 2 + 7200) == []
    acked.clear()  # not acknowledged any more: reminders again
    assert one(g.flush(T0 + 2 + 10800)).kind == "repeat"
    acked.add("ba-vi")
    # the recovery is news, acknowledged or not
    up = fire(g, [log.ev(p, "up", T0 + 11000) for p in points_of("ba-vi")], T0 + 11000)
    assert up.status == "resolved"


def test_an_alertmanager_api_still_hears_of_an_acknowledged_alert() -> None:
    """An Alertmanager resolves an alert it has not heard of for a while: the re-sends go on
    (silence it in the Alertmanager instead)."""
    g, log = make(
        {"format": "alertmanager-api", "url": "http://127.0.0.1:9093"}, repeat_interval="1h"
    )
    g.repeat_every = 60.0
    g.acked = {"ba-vi"}.__contains__
    fire(g, log.outage("ba-vi", T0), T0)
    assert one(g.flush(T0 + 62)).kind == "repeat"


def test_a_new_message_restarts_the_reminder_clock() -> None:
    g, log = make(repeat_interval="1h")
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    fire(g, [log.ev("ba-vi.c2", "down", T0 + 1800)], T0 + 1800)  # sent at T0 + 1802
    assert g.flush(T0 + 3602) == []
    assert one(g.flush(T0 + 1802 + 3600)).kind == "repeat"


# --- monitoring gaps ----------------------------------------------------------------------------


def test_a_down_point_going_unknown_keeps_its_alert() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi", "down", T0)], T0)
    g.add([log.ev("ba-vi", "unknown", T0 + 100, cause="agent:hn-03")], T0 + 100)
    assert g.flush(T0 + 102) == []
    assert g.flush(T0 + 3000) == []
    assert g.firing("district:ba-vi") == {"ba-vi": "down"}
    rep = one(g.flush(T0 + 3602))  # the reminder still shows it down
    assert rep.kind == "repeat" and rep.alerts[0]["state"] == "down"
    # data again, and up: now it is resolved
    g.add([log.ev("ba-vi", "up", T0 + 4000)], T0 + 4000)
    assert one(g.flush(T0 + 4002)).kind == "resolved"


def test_a_frozen_alert_keeps_what_it_said() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi", "down", T0)], T0)
    g.add(
        [log.ev("ba-vi", "unknown", T0 + 100, cause="agent:hn-03", reason="agent hn-03 offline")],
        T0 + 100,
    )
    rep = one(g.flush(T0 + 3602))
    [a] = rep.alerts
    assert a["state"] == "down"
    assert (a["since"], a["cause"], a["reason"]) == (T0, "ba-vi", REASONS["down"])
    assert [c["point"] for c in rep.group["causes"]] == ["ba-vi"]


def test_an_agent_lost_is_one_gap_message_and_one_gap_resolved() -> None:
    g, log = make({"states": ["down", "unreachable", "degraded", "unknown"]})
    lost = ALL_POINTS[:200]
    assert len({FACTS[p].district for p in lost}) > 1  # several districts, one message
    g.add(log.all(lost, "unknown", T0, cause="agent:hn-03"), T0)
    n = one(g.flush(T0 + 2))
    assert (n.kind, n.status) == ("gap", "firing")
    assert n.group["key"] == "gap:agent:hn-03"
    assert n.group["rooms"] == 200 and n.group["counts"] == {"unknown": 200}
    assert firing_points(n) == set(lost)
    assert g.flush(T0 + 100) == []

    g.add(log.all(lost, "up", T0 + 500, cause="agent:hn-03"), T0 + 500)
    r = one(g.flush(T0 + 502))
    assert (r.kind, r.status) == ("gap-resolved", "resolved")
    assert r.group["key"] == "gap:agent:hn-03"
    assert set(recovered(r)) == set(lost) and set(recovered(r).values()) == {"unknown"}
    assert g.flush(T0 + 100_000) == []


@pytest.mark.parametrize("cause", ["", "mqtt-broker"])
def test_a_gap_of_another_cause_is_gap_all(cause: str) -> None:
    g, log = make({"states": ["down", "unknown"]})
    n = fire(g, log.all(["ba-vi.c1", "soc-son.c1"], "unknown", T0, cause=cause), T0)
    assert (n.kind, n.group["key"]) == ("gap", "gap:all")
    assert points(n) == {"ba-vi.c1", "soc-son.c1"}


def test_unknown_is_not_told_unless_asked() -> None:
    g, log = make()
    g.add(log.all(ALL_POINTS[:200], "unknown", T0, cause="agent:hn-03"), T0)
    assert g.flush(T0 + 2) == []
    assert g.flush(T0 + 10_000) == []


# --- maintenance --------------------------------------------------------------------------------


def test_a_firing_point_entering_maintenance_leaves_silently() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    g.add([log.ev("ba-vi.c1", "maintenance", T0 + 100)], T0 + 100)
    assert g.flush(T0 + 102) == []
    assert g.firing("district:ba-vi") == {}
    assert g.flush(T0 + 10_000) == []  # no reminder either
    g.add([log.ev("ba-vi.c1", "up", T0 + 20_000)], T0 + 20_000)
    assert g.flush(T0 + 20_002) == []


def test_maintenance_is_told_when_asked() -> None:
    g, log = make({"states": ["down", "maintenance"]})
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    g.add([log.ev("ba-vi.c1", "maintenance", T0 + 100)], T0 + 100)
    n = one(g.flush(T0 + 102))
    assert n.kind == "firing" and n.alerts[0]["state"] == "maintenance"


def test_after_maintenance_a_new_outage_starts_anew() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    g.add([log.ev("ba-vi.c1", "maintenance", T0 + 100)], T0 + 100)
    assert g.flush(T0 + 102) == []
    g.add([log.ev("ba-vi.c1", "up", T0 + 200)], T0 + 200)
    assert g.flush(T0 + 202) == []
    n = fire(g, [log.ev("ba-vi.c1", "down", T0 + 5000)], T0 + 5000)
    r = fire(g, [log.ev("ba-vi.c1", "up", T0 + 5100)], T0 + 5100)
    assert n.group["started"] == T0 + 5000
    assert r.group["started"] == T0 + 5000


def test_a_point_in_maintenance_going_unknown_stays_silent() -> None:
    g, log = make()
    fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    g.add([log.ev("ba-vi.c1", "maintenance", T0 + 100)], T0 + 100)
    assert g.flush(T0 + 102) == []
    g.add([log.ev("ba-vi.c1", "unknown", T0 + 7200)], T0 + 7200)
    assert g.flush(T0 + 7202) == []


# --- filters ------------------------------------------------------------------------------------


def test_receiver_districts_filter() -> None:
    g, log = make({"districts": ["soc-son"]})
    assert g.add(log.outage("ba-vi", T0), T0) == 0
    assert g.flush(T0 + 2) == []
    n = fire(g, log.outage("soc-son", T0 + 10), T0 + 10)
    assert n.group["key"] == "district:soc-son" and points(n) == set(points_of("soc-son"))


def test_receiver_levels_filter() -> None:
    g, log = make({"levels": ["district"]})
    n = fire(g, log.outage("ba-vi", T0), T0)
    assert points(n) == {"ba-vi"}
    assert n.group["rooms"] == 1 and n.group["counts"] == {"down": 1}


def test_receiver_states_filter_only_down() -> None:
    g, log = make({"states": ["down"]})
    g.add([log.ev("ba-vi.c1", "degraded", T0), log.ev("soc-son.c1", "degraded", T0)], T0)
    assert g.flush(T0 + 2) == []
    g.add([log.ev("ba-vi.c1", "up", T0 + 50)], T0 + 50)
    g.add(log.all(["ba-vi.c2"], "unreachable", T0 + 60, cause="ba-vi"), T0 + 60)
    assert g.flush(T0 + 100) == []
    n = fire(g, [log.ev("ba-vi.c3", "down", T0 + 200)], T0 + 200)
    assert points(n) == {"ba-vi.c3"}


# --- the storm guard ----------------------------------------------------------------------------

FIVE = ["ba-vi", "soc-son", "dong-anh", "gia-lam", "thanh-tri"]


def test_storm_is_one_summary_instead_of_a_message_per_group() -> None:
    g, log = make(storm={"changes": 10, "window": "1m"})
    events = [e for d in FIVE for e in log.outage(d, T0)[:3]]  # 15 changes, 5 groups
    g.add(events, T0)
    n = one(g.flush(T0 + 2))
    assert (n.kind, n.status) == ("storm", "firing")
    assert n.group["groups"] == 5 and n.group["districts"] == 5
    assert n.group["rooms"] == 15 and n.group["changes"] == 15
    assert len(n.alerts) == 15
    assert {c["point"] for c in n.group["causes"]} == set(FIVE)
    # each group counts as told: nothing more, and one district's recovery is its own message
    assert g.flush(T0 + 100) == []
    g.add(log.recovery("ba-vi", T0 + 300)[:3], T0 + 300)
    r = one(g.flush(T0 + 302))
    assert (r.kind, r.group["key"]) == ("resolved", "district:ba-vi")
    assert set(recovered(r)) == {"ba-vi", "ba-vi.c1", "ba-vi.c2"}


def test_below_the_storm_threshold_each_group_has_its_message() -> None:
    g, log = make(storm={"changes": 10, "window": "1m"})
    events = [e for d in FIVE for e in log.outage(d, T0)[:2]]  # 10 changes: not more than 10
    g.add(events, T0)
    notes = g.flush(T0 + 2)
    assert sorted(n.group["key"] for n in notes) == sorted(f"district:{d}" for d in FIVE)
    assert {n.kind for n in notes} == {"firing"}


def test_storm_changes_leave_the_window() -> None:
    g, log = make(storm={"changes": 10, "window": "1m"})
    g.add([e for d in FIVE for e in log.outage(d, T0)[:3]], T0)
    assert one(g.flush(T0 + 2)).kind == "storm"
    # the service flushes when next_due() says: a minute without changes ends the storm
    assert g.next_due() == T0 + 60
    assert g.flush(T0 + 60) == [] and g.storm_since is None
    # two minutes later, two districts recover: 6 changes in the window, no storm
    g.add(log.recovery("ba-vi", T0 + 120)[:3] + log.recovery("soc-son", T0 + 120)[:3], T0 + 120)
    notes = g.flush(T0 + 122)
    assert sorted((n.kind, n.group["key"]) for n in notes) == [
        ("resolved", "district:ba-vi"),
        ("resolved", "district:soc-son"),
    ]


# --- send_resolved ------------------------------------------------------------------------------


def test_send_resolved_false_sends_no_resolved_message() -> None:
    g, log = make({"send_resolved": False})
    assert fire(g, log.outage("ba-vi", T0), T0).kind == "firing"
    g.add(log.recovery("ba-vi", T0 + 300), T0 + 300)
    assert g.flush(T0 + 302) == []
    assert g.flush(T0 + 100_000) == []  # and no reminder: the group is over
    # the group is over for real: the next outage is a new firing message
    assert fire(g, log.outage("ba-vi", T0 + 200_000), T0 + 200_000).kind == "firing"


def test_send_resolved_false_sends_no_gap_resolved() -> None:
    g, log = make({"states": ["down", "unknown"], "send_resolved": False})
    assert fire(g, log.all(ALL_POINTS[:5], "unknown", T0, cause="agent:hn-03"), T0).kind == "gap"
    g.add(log.all(ALL_POINTS[:5], "up", T0 + 100), T0 + 100)
    assert g.flush(T0 + 102) == []


def test_send_resolved_false_applies_to_a_storm_of_recoveries() -> None:
    g, log = make({"send_resolved": False}, storm={"changes": 10, "window": "1m"})
    g.add([e for d in FIVE for e in log.outage(d, T0)[:3]], T0)
    assert one(g.flush(T0 + 2)).kind == "storm"
    g.add([e for d in FIVE for e in log.recovery(d, T0 + 300)[:3]], T0 + 300)
    assert [(n.kind, n.status) for n in g.flush(T0 + 302)] == []


# --- persistence --------------------------------------------------------------------------------


def restarted(g: Groups) -> Groups:
    """A new Groups from ``g``'s dump, through JSON as the service stores it."""
    other = Groups(g.receiver, g.settings, facts)
    other.load(json.loads(json.dumps(g.dump())))
    return other


def test_dump_load_goes_on_identically_after_a_restart() -> None:
    g, log = make()
    outage = log.outage("ba-vi", T0)
    fire(g, outage, T0)
    h = restarted(g)
    assert h.next_due() == g.next_due() == T0 + 2 + 3600
    recovery = log.recovery("ba-vi", T0 + 300)
    # the restarted one is replayed the old events too: they are skipped
    assert h.add(outage + recovery, T0 + 300) == 30
    assert g.add(recovery, T0 + 300) == 30
    a, b = one(g.flush(T0 + 302)), one(h.flush(T0 + 302))
    assert b.kind == "resolved"
    assert a == b
    assert h.flush(T0 + 100_000) == []


def test_dump_load_with_a_group_pending() -> None:
    g, log = make()
    g.add(log.outage("ba-vi", T0), T0)
    h = restarted(g)
    assert h.last_event == g.last_event == 30
    assert h.next_due() == T0 + 2
    assert h.flush(T0 + 1) == []
    assert h.flush(T0 + 2) == g.flush(T0 + 2)


def test_events_at_or_below_last_event_are_skipped() -> None:
    g, log = make()
    outage = log.outage("ba-vi", T0)
    g.add(outage, T0)
    assert g.add(outage, T0 + 1) == 0
    assert one(g.flush(T0 + 2)).group["rooms"] == 30
    recovery = log.recovery("ba-vi", T0 + 300)
    g.add(recovery, T0 + 300)
    # a replay of the older events (after a restart) does not bring the outage back
    assert g.add(outage + recovery, T0 + 301) == 0
    assert one(g.flush(T0 + 302)).kind == "resolved"
    assert g.flush(T0 + 10_000) == []


# --- next_due -----------------------------------------------------------------------------------


def test_next_due() -> None:
    g, log = make(repeat_interval="1h")
    assert g.next_due() is None
    g.add([log.ev("ba-vi.c1", "down", T0 + 5)], T0 + 5)
    g.add([log.ev("soc-son.c1", "down", T0 + 6)], T0 + 6)
    assert g.next_due() == T0 + 5 + 2
    assert len(g.flush(T0 + 7)) == 1
    assert g.next_due() == T0 + 6 + 2
    assert len(g.flush(T0 + 8)) == 1
    assert g.next_due() == T0 + 7 + 3600
    g.add(log.recovery("ba-vi", T0 + 100)[1:2] + log.recovery("soc-son", T0 + 100)[1:2], T0 + 100)
    assert g.next_due() == T0 + 102
    assert len(g.flush(T0 + 102)) == 2
    assert g.next_due() is None


# --- an uplink that is not down yet -------------------------------------------------------------


def test_communes_unreachable_before_their_headquarters_is_down_wait_for_it() -> None:
    """The communes of a cut district reach fail_after a cycle before their headquarters
    (it has missed one cycle: "not answering"): the message waits for the headquarters,
    so the outage is one message naming it, not one for the communes and another later."""
    g, log = make()
    g.settle = 15.0  # (fail_after + 1) × interval at the defaults
    hq, *communes = points_of("ba-vi")
    g.add([log.ev(p, "unreachable", T0, cause=hq) for p in communes], T0)
    assert g.flush(T0 + 2.0) == [] and g.flush(T0 + 4.9) == []  # held: the cause is not down
    g.add([log.ev(hq, "down", T0 + 5.0)], T0 + 5.0)
    n = one(g.flush(T0 + 7.0))
    assert n.group["causes"][0]["point"] == hq and n.group["rooms"] == 30
    assert n.group["counts"] == {"down": 1, "unreachable": len(communes)}
    assert g.flush(T0 + 60.0) == []


def test_a_hold_for_an_uplink_is_bounded() -> None:
    """An uplink whose state never settles (it answers again, or its receiver does not
    hear of it): the rooms are told after ``settle`` at the latest."""
    g, log = make({"levels": ["commune"]})  # the headquarters is filtered out
    g.settle = 15.0
    hq, *communes = points_of("ba-vi")
    g.add([log.ev(p, "unreachable", T0, cause=hq) for p in communes], T0)
    assert g.flush(T0 + 14.0) == []
    n = one(g.flush(T0 + 15.0))
    assert n.group["rooms"] == len(communes)


def test_rooms_down_before_their_uplink_is_judged_wait_for_it() -> None:
    """A commune probed just after the cut is down on its own before its headquarters
    missed a cycle: held while the uplink is in doubt, then one message naming it."""
    doubt = {"now": True}
    g, log = make()
    g.settle = 15.0
    hq, *communes = points_of("ba-vi")
    g.doubtful = lambda point, since: point != hq and doubt["now"]  # the HQ has no uplink
    g.add([log.ev(p, "down", T0) for p in communes[:5]], T0)
    assert g.flush(T0 + 2.0) == []  # the headquarters has not been judged since
    g.add(
        [log.ev(hq, "down", T0 + 4.0)]
        + [log.ev(p, "unreachable", T0 + 4.0, cause=hq) for p in communes],
        T0 + 4.0,
    )
    doubt["now"] = False  # judged: down
    n = one(g.flush(T0 + 4.1))
    assert [c["point"] for c in n.group["causes"]] == [hq]
    assert n.group["counts"] == {"down": 1, "unreachable": len(communes)}


def test_a_room_down_with_its_uplink_answering_is_told_at_once() -> None:
    g, log = make()
    g.settle = 15.0
    g.doubtful = lambda point, since: False
    n = fire(g, [log.ev("ba-vi.c1", "down", T0)], T0)
    assert n.group["causes"][0]["point"] == "ba-vi.c1"


def test_a_gap_closing_bit_by_bit_is_one_message_when_it_is_over() -> None:
    """An agent's points come back a few at a time: no message per step, one at the end
    listing every room of the gap."""
    g, log = make({"states": ["down", "unreachable", "unknown"]})
    rooms = points_of("ba-vi") + points_of("soc-son")
    gap = fire(g, log.all(rooms, "unknown", T0, cause="agent:hn-03"), T0)
    assert gap.kind == "gap" and gap.group["rooms"] == len(rooms)
    g.add(log.all(rooms[:40], "up", T0 + 10), T0 + 10)
    assert g.flush(T0 + 13) == []
    g.add(log.all(rooms[40:], "up", T0 + 20), T0 + 20)
    back = one(g.flush(T0 + 23))
    assert back.kind == "gap-resolved" and len(back.alerts) == len(rooms)


def test_a_storm_arriving_over_many_ticks_is_one_summary_and_one_recovery() -> None:
    """Districts cut at once become due on different ticks (each judged on its own cycle):
    the storm guard still speaks for all of them, with one summary at the start, updates
    at most every group_interval, and one last summary when the storm is over."""
    g, log = make(storm={"changes": 10, "window": "1m"})
    sent: list[Notification] = []
    t = T0
    for i, d in enumerate(FIVE):
        g.add(log.outage(d, T0 + 0.7 * i)[:4], T0 + 0.7 * i)
        while t < T0 + 0.7 * (i + 1):
            sent += g.flush(t)
            t += 0.25
    while t < T0 + 40:
        sent += g.flush(t)
        t += 0.25
    assert [n.kind for n in sent] == ["storm", "storm"], [(n.kind, n.group["key"]) for n in sent]
    assert sent[-1].group["rooms"] == 20  # the update carries all five districts
    for d in FIVE:
        g.add(log.recovery(d, T0 + 50)[:4], T0 + 50)
    sent = []
    t = T0 + 50
    while t < T0 + 200:
        due = g.next_due()
        if due is not None and due <= t:
            sent += g.flush(t)
        t += 0.25
    assert [(n.kind, n.status) for n in sent] == [("storm", "resolved")]
    assert g.storm_since is None
    assert fire(g, log.outage("ba-vi", T0 + 300)[:2], T0 + 300).kind == "firing"  # back to normal


def test_rooms_judged_a_cycle_after_their_headquarters_add_no_message() -> None:
    """A commune still up when its headquarters went down turns unreachable a cycle later:
    the first message already counted every room behind the cut uplink, no second one."""
    g, log = make()
    hq, *communes = points_of("ba-vi")
    g.behind = lambda point: len(communes) if point == hq else 0
    first = fire(
        g,
        [log.ev(hq, "down", T0)] + [log.ev(p, "unreachable", T0, cause=hq) for p in communes[:20]],
        T0,
    )
    assert first.group["rooms"] == 1 + len(communes)
    assert first.group["causes"][0]["rooms"] == 1 + len(communes)
    g.add([log.ev(p, "unreachable", T0 + 5, cause=hq) for p in communes[20:]], T0 + 5)
    assert g.flush(T0 + 60) == []
    assert len(g.notified["district:ba-vi"]) == 1 + len(communes)
    # a machine receiver hears of each alert
    m, mlog = make({"format": "alertmanager", "url": "http://127.0.0.1:9093/hook"})
    fire(
        m,
        [mlog.ev(hq, "down", T0)]
        + [mlog.ev(p, "unreachable", T0, cause=hq) for p in communes[:20]],
        T0,
    )
    m.add([mlog.ev(p, "unreachable", T0 + 5, cause=hq) for p in communes[20:]], T0 + 5)
    assert len(m.flush(T0 + 60)) == 1
