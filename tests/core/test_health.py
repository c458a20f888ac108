"""The health model: hysteresis, topology, staleness, degradation, maintenance, roll-ups."""

from __future__ import annotations

import datetime
import re
import zoneinfo

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.health import Event, HealthModel, State
from monitor.core.results import ProbeResult
from monitor.inventory import Inventory, parse_inventory

CONFIG = """
monitor: {interval: 5s, fail_after: 2, recover_after: 2, stale_after: 20s}
thresholds: {rtt: 150ms, jitter: 30ms, loss: 2%, mos: 3.6}
profiles:
  room: {icmp: {}, http: {}, media: {}}
maintenance:
  - {points: [m], start: "2026-11-26 08:00", end: "2026-11-26 10:00", reason: "router swap"}
points:
  - id: d
    name: "Huyện Ba Vì"
    host: 10.0.0.1
    profile: room
    points:
      - {id: d.a, name: "Xã Tản Lĩnh", host: 10.0.1.1}
      - {id: d.b, name: "Xã Ba Trại", host: 10.0.1.2}
      - {id: d.c, name: "Xã Ba Vì", host: 10.0.1.3}
  - {id: m, name: "Quận Ba Đình", host: 10.0.0.2, profile: room}
"""

T0 = 1_800_000_000.0


def inventory(text: str = CONFIG) -> Inventory:
    return parse_inventory(text)


def r(probe: str, ok: bool, at: float, **kw: float | None) -> ProbeResult:
    return ProbeResult(
        probe=probe, target="x", ok=ok, at=at, duration=0.01, error=None if ok else "no reply", **kw
    )  # type: ignore[arg-type]


def cycle(
    model: HealthModel, pid: str, ok: bool, at: float, **kw: float | None
) -> list[tuple[str, State, State]]:
    events = model.ingest(pid, [r("icmp", ok, at, **kw)], at)
    return [(e.point, e.previous, e.state) for e in events]


def test_unknown_until_first_result_then_up() -> None:
    """Points start unknown; one good cycle shows them up."""
    m = HealthModel(inventory(), now=T0)
    assert m.points["d"].state is State.UNKNOWN
    assert cycle(m, "d", True, T0 + 1) == [("d", State.UNKNOWN, State.UP)]


def test_down_only_after_fail_after_failures_and_up_after_recover_after() -> None:
    """fail_after=2 failed cycles make DOWN; recover_after=2 good ones make UP again."""
    m = HealthModel(inventory(), now=T0)
    cycle(m, "m", True, T0)
    assert cycle(m, "m", False, T0 + 5) == []
    assert cycle(m, "m", False, T0 + 10) == [("m", State.UP, State.DOWN)]
    assert "2 failed cycles (icmp: no reply)" in m.points["m"].reason
    assert cycle(m, "m", True, T0 + 15) == []
    assert cycle(m, "m", True, T0 + 20) == [("m", State.DOWN, State.UP)]


def test_single_failures_between_successes_never_go_down() -> None:
    """Alternating fail/ok never reaches fail_after in a row."""
    m = HealthModel(inventory(), now=T0)
    for i in range(20):
        assert cycle(m, "m", i % 2 == 0, T0 + 5 * i) in ([], [("m", State.UNKNOWN, State.UP)])
    assert m.points["m"].state is State.UP


def test_parent_down_makes_children_unreachable_not_down() -> None:
    """When the district HQ fails, its communes are unreachable: one root cause."""
    m = HealthModel(inventory(), now=T0)
    for pid in ("d", "d.a", "d.b", "d.c"):
        cycle(m, pid, True, T0)
    events = []
    for step in (1, 2, 3):
        at = T0 + 5 * step
        # children happen to be probed before the parent in each cycle
        for pid in ("d.a", "d.b", "d.c", "d"):
            events += cycle(m, pid, False, at)
    states = {pid: m.points[pid].state for pid in ("d", "d.a", "d.b", "d.c")}
    assert states == {
        "d": State.DOWN,
        "d.a": State.UNREACHABLE,
        "d.b": State.UNREACHABLE,
        "d.c": State.UNREACHABLE,
    }
    assert not any(to is State.DOWN and pid != "d" for pid, _, to in events)
    assert m.points["d.a"].reason == "uplink d is down"
    # the parent recovers, and so do the children, in any order: never a flash of DOWN
    for step in (4, 5, 6):
        at = T0 + 5 * step
        for pid in ("d", "d.a", "d.b", "d.c"):
            events += cycle(m, pid, True, at)
    assert all(m.points[pid].state is State.UP for pid in ("d", "d.a", "d.b", "d.c"))
    assert not any(to is State.DOWN and pid != "d" for pid, _, to in events)


def test_child_down_alone_while_parent_up() -> None:
    """A commune failing on its own, behind a healthy HQ, is down."""
    m = HealthModel(inventory(), now=T0)
    for step in range(3):
        cycle(m, "d", True, T0 + 5 * step)
        cycle(m, "d.b", step == 0, T0 + 5 * step)
    assert m.points["d.b"].state is State.DOWN


def test_children_reevaluated_when_parent_recovers_but_child_still_fails() -> None:
    """A commune still failing after its HQ recovered becomes down (its own cause)."""
    m = HealthModel(inventory(), now=T0)
    for step in range(3):
        cycle(m, "d.c", False, T0 + 5 * step)
        cycle(m, "d", False, T0 + 5 * step)
    assert m.points["d.c"].state is State.UNREACHABLE
    for step in range(3, 6):
        cycle(m, "d", True, T0 + 5 * step)
        cycle(m, "d.c", False, T0 + 5 * step)
    assert m.points["d"].state is State.UP
    assert m.points["d.c"].state is State.DOWN


def test_stale_points_become_unknown_never_down() -> None:
    """No fresh results for stale_after -> unknown, and the counters restart."""
    m = HealthModel(inventory(), now=T0)
    cycle(m, "m", True, T0)
    cycle(m, "m", False, T0 + 5)
    assert m.tick(T0 + 10) == []
    events = m.tick(T0 + 5 + 20.5)
    assert [(e.point, e.state) for e in events if e.point == "m"] == [("m", State.UNKNOWN)]
    # one fresh failure is not enough to call it down
    assert cycle(m, "m", False, T0 + 30) == []
    assert m.points["m"].state is State.UNKNOWN
    assert cycle(m, "m", False, T0 + 35) == [("m", State.UNKNOWN, State.DOWN)]


def test_degraded_by_thresholds_with_hysteresis() -> None:
    """The window's mean RTT over the threshold for fail_after cycles degrades; hovering just
    under it does not clear; recover_after cycles well under do. One slow burst does not."""
    m = HealthModel(inventory(), now=T0)
    cycle(m, "m", True, T0, rtt=0.010)
    assert cycle(m, "m", True, T0 + 5, rtt=0.200) == []  # mean 105 ms: one slow burst
    assert cycle(m, "m", True, T0 + 10, rtt=0.300) == []  # mean 170 ms: first bad cycle
    assert cycle(m, "m", True, T0 + 15, rtt=0.300) == [("m", State.UP, State.DEGRADED)]
    assert "rtt 202 ms > 150 ms" in m.points["m"].reason  # mean of 10, 200, 300, 300
    t = T0 + 80  # the slow bursts have left the 60 s window
    for i, rtt in enumerate((0.149, 0.135, 0.140, 0.148)):  # hovering just under the threshold
        assert cycle(m, "m", True, t + 5 * i, rtt=rtt) == []
    t += 80
    assert cycle(m, "m", True, t, rtt=0.050) == []  # one good cycle is not enough
    assert cycle(m, "m", True, t + 5, rtt=0.050) == [("m", State.DEGRADED, State.UP)]


def test_media_mos_and_loss_degrade() -> None:
    """A media result with low MOS or high loss degrades a reachable point."""
    m = HealthModel(inventory(), now=T0)
    cycle(m, "m", True, T0)
    media = r("media", True, T0 + 1, mos=3.1, loss=0.1, jitter=0.045)
    media = ProbeResult(
        **{
            **{k: getattr(media, k) for k in media.__slots__},
            "details": {"sent": 50, "received": 45},
        }
    )  # type: ignore[attr-defined]
    assert m.ingest("m", [media], T0 + 1) == []  # a media run alone is not a cycle
    events = cycle(m, "m", True, T0 + 5) + cycle(m, "m", True, T0 + 10)
    assert events == [("m", State.UP, State.DEGRADED)]
    reason = m.points["m"].reason
    assert (
        "jitter 45 ms > 30 ms" in reason
        and "loss 10.0% > 2.0% (5 of 50 packets)" in reason
        and "MOS 3.10 < 3.60" in reason
    )
    assert m.points["m"].metrics()["mos"] == 3.1


def test_failing_non_reachability_probe_degrades_not_downs() -> None:
    """http failing alone makes the point degraded; icmp keeps it reachable."""
    m = HealthModel(inventory(), now=T0)
    for step in range(4):
        at = T0 + 5 * step
        m.ingest("m", [r("icmp", True, at), r("http", False, at)], at)
    assert m.points["m"].state is State.DEGRADED
    assert "http failing: no reply" in m.points["m"].reason


def test_maintenance_window_in_local_time_zone() -> None:
    """A window 08:00-10:00 Asia/Ho_Chi_Minh shows the point in maintenance, then releases it."""
    m = HealthModel(inventory(), now=T0)
    tz = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
    inside = datetime.datetime(2026, 11, 26, 9, 0, tzinfo=tz).timestamp()
    cycle(m, "m", True, inside - 1)
    assert [(e.point, e.state) for e in m.tick(inside)] == [("m", State.MAINTENANCE)]
    # measurement continues underneath
    cycle(m, "m", False, inside + 5)
    cycle(m, "m", False, inside + 10)
    assert m.points["m"].state is State.MAINTENANCE and m.points["m"].own is State.DOWN
    after = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=tz).timestamp()
    cycle(m, "m", False, after - 1)
    assert [(e.point, e.state) for e in m.tick(after)] == [("m", State.DOWN)]
    assert m.readiness() < 1.0


def test_rollups_count_states_per_district_and_readiness() -> None:
    """Counts per state, per district, and readiness = (up+degraded)/(all - maintenance)."""
    m = HealthModel(inventory(), now=T0)
    for pid in ("d", "d.a", "d.b"):
        cycle(m, pid, True, T0)
    cycle(m, "d.c", True, T0, rtt=0.5)
    cycle(m, "d.c", True, T0 + 5, rtt=0.5)
    assert (
        m.counts[State.UP] == 3 and m.counts[State.DEGRADED] == 1 and m.counts[State.UNKNOWN] == 1
    )
    assert m.district_counts["d"][State.UP] == 3 and m.district_counts["m"][State.UNKNOWN] == 1
    assert m.readiness() == 4 / 5
    assert m.summary()["states"]["degraded"] == 1


def test_restore_resumes_without_events() -> None:
    """Restored states are shown at once and emit no events; staleness still applies."""
    m = HealthModel(inventory(), now=T0)
    m.restore({"m": (State.DOWN, T0 - 100, "2 failed cycles"), "d": (State.UP, T0 - 50, "ok")}, T0)
    assert m.points["m"].state is State.DOWN and m.points["m"].since == T0 - 100
    assert m.counts[State.DOWN] == 1
    assert cycle(m, "m", False, T0 + 5) == []
    assert cycle(m, "m", True, T0 + 10) == []
    assert cycle(m, "m", True, T0 + 15) == [("m", State.DOWN, State.UP)]


# --- properties over random result sequences ------------------------------------------------

POINTS = ("d", "d.a", "d.b", "d.c", "m")
steps = st.lists(
    st.tuples(st.sampled_from(POINTS), st.booleans(), st.sampled_from([0.0, 5.0, 5.0, 5.0, 30.0])),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_invariants_over_random_sequences(seq: list[tuple[str, bool, float]]) -> None:
    """Hysteresis, topology and staleness invariants hold for any sequence of results."""
    m = HealthModel(inventory(), now=T0)
    now = T0
    # an independent reference of each point's own reachability hysteresis
    fails = dict.fromkeys(POINTS, 0)
    goods = dict.fromkeys(POINTS, 0)
    own_down = dict.fromkeys(POINTS, False)
    for pid, ok, advance in seq:
        now += advance
        for e in m.tick(now):
            if e.state is State.UNKNOWN:
                fails[e.point] = goods[e.point] = 0
                own_down[e.point] = False
        fails[pid] = 0 if ok else fails[pid] + 1
        goods[pid] = goods[pid] + 1 if ok else 0
        if fails[pid] >= 2:
            own_down[pid] = True
        if goods[pid] >= 2:
            own_down[pid] = False
        for point, previous, state in cycle(m, pid, ok, now):
            if state is State.DOWN:
                # never down without fail_after fresh failures in a row since it was last up
                assert own_down[point]
                # a child of a down parent is never down
                parent = m.inv.points[point].parent
                assert parent is None or m.points[parent].own is not State.DOWN
            if state is State.UP:
                assert not own_down[point] or previous is State.UNKNOWN
        for p in POINTS:
            h = m.points[p]
            parent = h.point.parent
            if parent is not None and m.points[parent].state is State.DOWN:
                assert h.state is not State.DOWN
            # unknown never turns into down without fresh failures
            if h.state is State.DOWN:
                assert own_down[p]
        assert sum(m.counts.values()) == len(POINTS)
        assert all(v >= 0 for v in m.counts.values())
        assert 0.0 <= m.readiness() <= 1.0


def test_media_degradation_lasts_while_the_window_holds_it() -> None:
    """Media runs every 30 s; its bad result keeps the point degraded between runs (no
    flapping), and good runs clear it once the bad one is diluted (mean MOS back up)."""
    m = HealthModel(inventory(), now=T0)
    cycle(m, "m", True, T0)
    m.ingest("m", [r("media", True, T0 + 1, mos=3.0, jitter=0.06, loss=0.0)], T0 + 1)
    cycle(m, "m", True, T0 + 5)
    cycle(m, "m", True, T0 + 10)
    assert m.points["m"].state is State.DEGRADED
    for step in range(3, 6):  # icmp cycles every 5 s before the next media run
        assert cycle(m, "m", True, T0 + 5 * step) == []
    m.ingest("m", [r("media", True, T0 + 31, mos=4.4, jitter=0.001, loss=0.0)], T0 + 31)
    m.ingest("m", [r("media", True, T0 + 61, mos=4.4, jitter=0.001, loss=0.0)], T0 + 61)
    events = cycle(m, "m", True, T0 + 65) + cycle(m, "m", True, T0 + 70)
    assert events == [("m", State.DEGRADED, State.UP)]


def test_rtt_threshold_uses_icmp_when_there_is_one() -> None:
    """A slow SIP answer (endpoint or monitor lag) does not degrade a point whose ICMP RTT is fine."""
    m = HealthModel(inventory(), now=T0)
    events = m.ingest("m", [r("icmp", True, T0, rtt=0.012), r("sip", True, T0, rtt=0.4)], T0)
    assert [(e.previous, e.state) for e in events] == [(State.UNKNOWN, State.UP)]
    # without an ICMP figure the SIP rtt is what there is
    m2 = HealthModel(
        inventory(
            CONFIG.replace("room: {icmp: {}, http: {}, media: {}}", "room: {sip: {}, media: {}}")
        ),
        now=T0,
    )
    m2.ingest("m", [r("sip", True, T0, rtt=0.4)], T0)
    m2.ingest("m", [r("sip", True, T0 + 5, rtt=0.4)], T0 + 5)
    assert m2.points["m"].state is State.DEGRADED and "rtt 400 ms > 150 ms" in m2.points["m"].reason


def test_a_point_down_on_its_own_keeps_its_reason_through_uplink_blips() -> None:
    """A commune already down stays down (no extra events) when its HQ misses one cycle,
    and after an HQ outage it turns down with its own reason, not the uplink's."""
    m = HealthModel(inventory(), now=T0)
    cycle(m, "d", True, T0)
    cycle(m, "d.b", True, T0)
    for step in (1, 2):
        cycle(m, "d", True, T0 + 5 * step)
        cycle(m, "d.b", False, T0 + 5 * step)
    assert m.points["d.b"].state is State.DOWN
    events = cycle(m, "d.b", False, T0 + 15) + cycle(m, "d", False, T0 + 15)  # the HQ misses once
    events += cycle(m, "d", True, T0 + 20) + cycle(m, "d.b", False, T0 + 20)
    assert [e for e in events if e[0] == "d.b"] == []
    assert m.points["d.b"].reason.startswith("4 failed cycles")
    # now the HQ really goes down, then recovers while the commune still fails
    for step in (5, 6, 7):
        cycle(m, "d.b", False, T0 + 5 * step)
        cycle(m, "d", False, T0 + 5 * step)
    assert (
        m.points["d.b"].state is State.UNREACHABLE and m.points["d.b"].reason == "uplink d is down"
    )
    for step in (8, 9):
        cycle(m, "d.b", False, T0 + 5 * step)
        cycle(m, "d", True, T0 + 5 * step)
    assert m.points["d"].state is State.UP
    assert m.points["d.b"].state is State.DOWN
    assert m.points["d.b"].reason.startswith("9 failed cycles"), m.points["d.b"].reason


ROOMS = """
monitor: {interval: 5s, fail_after: 2, recover_after: 2, stale_after: 20s}
thresholds: {rtt: 150ms, jitter: 30ms, loss: 2%, mos: 3.6}
profiles:
  room: {icmp: {}, sip: {}, media: {}}
points:
  - id: d
    name: "Huyện Ba Vì"
    host: 10.0.0.1
    profile: room
    points:
      - {id: d.a, name: "Xã Tản Lĩnh", host: 10.0.1.1}
"""


def echoes(ok: int, sent: int, at: float) -> ProbeResult:
    return ProbeResult(
        probe="icmp",
        target="x",
        ok=ok > 0,
        at=at,
        duration=0.1,
        rtt=0.01 if ok else None,
        loss=(sent - ok) / sent,
        error=None if ok else "no reply",
        details={"sent": sent, "received": ok},
    )


def test_host_pings_but_sip_is_silent_is_down_and_blocks_no_one() -> None:
    """Path up, SIP dead: the HQ is down with a reason naming both halves; its commune, whose
    path is fine, stays up; readiness counts the HQ out."""
    m = HealthModel(inventory(ROOMS), now=T0)
    for step in range(3):
        at = T0 + 5 * step
        m.ingest("d", [echoes(5, 5, at), r("sip", False, at)], at)
        m.ingest("d.a", [echoes(5, 5, at), r("sip", True, at)], at)
    hq = m.points["d"]
    assert hq.state is State.DOWN, hq.reason
    assert hq.reason == "host answers icmp; sip: no reply"
    assert m.points["d.a"].state is State.UP
    assert m.readiness() == 1 / 2
    # SIP back: up again after recover_after cycles
    for step in (3, 4):
        at = T0 + 5 * step
        m.ingest("d", [echoes(5, 5, at), r("sip", True, at)], at)
    assert hq.state is State.UP


def test_path_down_makes_children_unreachable_with_the_cause() -> None:
    """No echo and no SIP from the HQ: down; the commune is unreachable and its cause is d."""
    m = HealthModel(inventory(ROOMS), now=T0)
    events: list[Event] = []
    for step in range(3):
        at = T0 + 5 * step
        ok = step == 0
        events += m.ingest("d.a", [echoes(5 if ok else 0, 5, at), r("sip", ok, at)], at)
        events += m.ingest("d", [echoes(5 if ok else 0, 5, at), r("sip", ok, at)], at)
    assert m.points["d"].state is State.DOWN
    assert m.points["d.a"].state is State.UNREACHABLE
    last = {e.point: e for e in events}
    assert last["d.a"].cause == "d" and last["d"].cause == "d"


def test_one_lost_echo_in_five_is_not_loss() -> None:
    """A lost echo now and then (0.5 % of packets) never degrades a point."""
    m = HealthModel(inventory(ROOMS), now=T0)
    changes = []
    for step in range(200):  # 1,000 echoes, 5 lost, spread out
        at = T0 + 5 * step
        lost = 1 if step % 40 == 7 else 0
        changes += m.ingest("d", [echoes(5 - lost, 5, at), r("sip", True, at)], at)
    assert [(e.previous, e.state) for e in changes] == [(State.UNKNOWN, State.UP)]


def test_steady_loss_degrades_and_holds_without_flapping() -> None:
    """10 % loss (1 echo in 10, media 5 of 50): degraded within 30 s and steadily so."""
    m = HealthModel(inventory(ROOMS), now=T0)
    changes = []
    for step in range(60):
        at = T0 + 5 * step
        results = [echoes(5 - (step % 2), 5, at), r("sip", True, at)]
        if step % 6 == 0:
            media = r("media", True, at + 1, mos=4.0, jitter=0.002, rtt=0.02, loss=0.1)
            results.append(
                ProbeResult(
                    **{
                        **{k: getattr(media, k) for k in media.__slots__},
                        "details": {"sent": 50, "received": 45},
                    }
                )  # type: ignore[attr-defined]
            )
        changes += [(e.state, at - T0) for e in m.ingest("d", results, at)]
    assert [s for s, _ in changes] == [State.UP, State.DEGRADED]
    assert changes[1][1] <= 30
    assert re.search(r"loss (9|10|11)\.\d% > 2\.0%", m.points["d"].reason)


def test_a_repaired_room_is_not_kept_yellow_by_figures_from_the_outage() -> None:
    """A media run that failed during the cut and lossy echoes before it stop counting when
    the path comes back: up within recover_after cycles."""
    m = HealthModel(inventory(ROOMS), now=T0)
    at = T0
    m.ingest("d", [echoes(5, 5, at), r("sip", True, at)], at)
    for step in (1, 2, 3):  # the cut, with a lossy start
        at = T0 + 5 * step
        m.ingest("d", [echoes(0, 5, at), r("sip", False, at)], at)
    m.ingest("d", [r("media", False, at + 1, loss=1.0)], at + 1)
    assert m.points["d"].state is State.DOWN
    for step in (4, 5):  # repaired
        at = T0 + 5 * step
        m.ingest("d", [echoes(5, 5, at), r("sip", True, at)], at)
    assert m.points["d"].state is State.UP, m.points["d"].reason


def test_results_from_long_ago_update_figures_not_state() -> None:
    """A buffered result older than stale_after (an agent's backlog) cannot make a point fresh."""
    m = HealthModel(inventory(ROOMS), now=T0)
    now = T0 + 100
    assert m.ingest("d", [echoes(5, 5, T0), r("sip", True, T0)], now, taken=T0) == []
    assert m.points["d"].state is State.UNKNOWN
    assert m.points["d"].latest["icmp"].at == T0


def test_a_service_down_does_not_outlive_a_reload_that_drops_the_service() -> None:
    """Down for SIP, then reloaded with a profile without SIP: the next good cycles bring the
    point up (the service half is judged afresh, not kept down for ever)."""
    m = HealthModel(inventory(ROOMS), now=T0)
    for step in range(3):
        at = T0 + 5 * step
        m.ingest("d", [echoes(5, 5, at), r("sip", False, at)], at)
    assert m.points["d"].state is State.DOWN
    new = HealthModel(
        inventory(ROOMS.replace("room: {icmp: {}, sip: {}, media: {}}", "room: {icmp: {}}")),
        now=T0 + 15,
    )
    new.adopt(m)
    for step in (3, 4, 5):
        at = T0 + 5 * step
        new.ingest("d", [echoes(5, 5, at)], at)
    assert new.points["d"].state is State.UP, new.points["d"].reason


def test_a_media_only_profile_does_not_flap_to_unknown_between_runs() -> None:
    """A path judged by media alone (every 30 s) stays fresh for every + stale_after."""
    text = ROOMS.replace("room: {icmp: {}, sip: {}, media: {}}", "room: {media: {}}")
    m = HealthModel(inventory(text), now=T0)
    changes: list[State] = []
    for k in range(10):
        at = T0 + 30 * k
        changes += [e.state for e in m.ingest("d", [r("media", True, at, mos=4.4, loss=0.0)], at)]
        for t in range(1, 30):
            changes += [e.state for e in m.tick(at + t) if e.point == "d"]
    assert changes == [State.UP], changes


def test_a_recovery_after_a_restart_names_the_cause_it_ends() -> None:
    """A commune restored unreachable behind Ba Vì recovers with cause d, as before the restart."""
    m = HealthModel(inventory(ROOMS), now=T0)
    m.restore(
        {
            "d": (State.DOWN, T0 - 60, "2 failed cycles"),
            "d.a": (State.UNREACHABLE, T0 - 59, "uplink d is down"),
        },
        T0,
        {"d": "d", "d.a": "d"},
    )
    events: list[Event] = []
    for step in (1, 2, 3):
        at = T0 + 5 * step
        events += m.ingest("d", [echoes(5, 5, at), r("sip", True, at)], at)
        events += m.ingest("d.a", [echoes(5, 5, at), r("sip", True, at)], at)
    recovery = [e for e in events if e.point == "d.a" and e.state is State.UP]
    assert recovery and recovery[0].cause == "d"


def test_a_lost_agent_is_a_gap_named_for_it_at_once_never_down() -> None:
    """Its points go unknown now (not after stale_after), with the agent as the cause;
    the first fresh result ends the gap and the recovery names the same cause."""
    m = HealthModel(inventory(), now=T0)
    for pid in ("d", "d.a", "d.b", "d.c"):
        cycle(m, pid, True, T0)
    events = m.mark_gap(["d", "d.a", "d.b", "d.c"], "agent west offline", "agent:west", T0 + 3)
    assert {(e.point, e.state, e.cause) for e in events} == {
        (p, State.UNKNOWN, "agent:west") for p in ("d", "d.a", "d.b", "d.c")
    }
    assert m.points["d.a"].reason == "agent west offline"
    assert m.tick(T0 + 60) == [], "the gap is not announced again as staleness"
    back = m.ingest("d", [r("icmp", True, T0 + 61)], T0 + 61)
    assert [(e.point, e.state, e.cause) for e in back] == [("d", State.UP, "agent:west")]
    assert m.points["d"].gap == ""


def test_a_retransmitted_sip_round_trip_is_no_rtt_sample() -> None:
    """Karn's rule: right after an outage a SIP request answered on its retransmission
    shows the first copy's wait (250 ms) as RTT; that must not make the room degraded.
    The same RTT from a request answered the first time does."""
    text = CONFIG.replace("room: {icmp: {}, http: {}, media: {}}", "room: {sip: {}}")
    for retransmissions, expected in ((1, State.UP), (0, State.DEGRADED)):
        m = HealthModel(inventory(text), now=T0)
        for i in range(6):
            at = T0 + 5 * i
            slow = i >= 1
            res = ProbeResult(
                probe="sip",
                target="x",
                ok=True,
                at=at,
                duration=0.3,
                rtt=0.252 if slow else 0.01,
                details={"retransmissions": retransmissions if slow else 0},
            )
            m.ingest("m", [res], at)
        assert m.points["m"].state is expected, (retransmissions, m.points["m"].reason)


def test_a_change_carries_when_the_results_behind_it_began() -> None:
    """evidence: the first failed cycle of a DOWN (and the communes' own), the first good cycle
    of its recovery, the last fresh result before a gap; None for maintenance."""
    m = HealthModel(inventory(), now=T0)
    for pid in ("d", "d.a"):
        cycle(m, pid, True, T0)
    m.ingest("d", [r("icmp", False, T0 + 5)], T0 + 6)
    m.ingest("d.a", [r("icmp", False, T0 + 7)], T0 + 8)
    down = m.ingest("d", [r("icmp", False, T0 + 10)], T0 + 11)
    assert [(e.point, e.state, e.evidence) for e in down] == [("d", State.DOWN, T0 + 5)]
    behind = m.ingest("d.a", [r("icmp", False, T0 + 12)], T0 + 13)
    assert [(e.point, e.state, e.evidence) for e in behind] == [("d.a", State.UNREACHABLE, T0 + 7)]
    m.ingest("d", [r("icmp", True, T0 + 15)], T0 + 16)
    up = m.ingest("d", [r("icmp", True, T0 + 20)], T0 + 21)
    # d.a, still failing on its own, is down now: since its own first failed cycle
    assert [(e.point, e.state, e.evidence) for e in up] == [
        ("d", State.UP, T0 + 15),
        ("d.a", State.DOWN, T0 + 7),
    ]
    gap = m.tick(T0 + 60)
    assert {(e.point, e.state, e.evidence) for e in gap if e.point == "d"} == {
        ("d", State.UNKNOWN, T0 + 21)  # when the last fresh result came in
    }
    maint = HealthModel(inventory(), now=T0)
    local = datetime.datetime(2026, 11, 26, 9, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh"))
    events = maint.tick(local.timestamp())
    assert [(e.point, e.state, e.evidence) for e in events] == [("m", State.MAINTENANCE, None)]
