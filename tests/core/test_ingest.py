"""The one ingest entry: who may send what, replays, stale and future results, telemetry."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.ingest import Ingest, IngestReport
from monitor.core.results import ProbeResult, ResultBatch, encode_batch
from monitor.inventory import Inventory, parse_inventory
from monitor.outputs.metrics import Telemetry

NOW = 1_796_000_000.0

CONFIG = """
monitor: {interval: 5s, stale_after: 20s}
profiles: {room: {icmp: {}, sip: {}}}
points:
  - {id: a, name: A, host: 127.0.0.1, profile: room}
  - {id: b, name: B, host: 127.0.0.2, profile: room}
  - {id: c, name: C, host: 127.0.0.3, profile: room}
"""


def inv() -> Inventory:
    return parse_inventory(CONFIG, "test.yaml")


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[ProbeResult], float, float]] = []

    def __call__(self, pid: str, results: list[ProbeResult], taken: float, received: float) -> None:
        self.calls.append((pid, results, taken, received))


def r(probe: str, at: float, ok: bool = True, duration: float = 0.01) -> ProbeResult:
    return ProbeResult(probe=probe, target="", ok=ok, at=at, duration=duration)


def setup() -> tuple[Ingest, Sink, Telemetry]:
    sink, telemetry = Sink(), Telemetry()
    ingest = Ingest(inv(), sink, telemetry)
    ingest.assign("west", ["a", "b"])
    ingest.assign("east", ["c"])
    return ingest, sink, telemetry


def rejected(t: Telemetry, why: str) -> float:
    return t.registry.get_sample_value("confmon_results_rejected_total", {"reason": why}) or 0.0


def test_assigned_points_pass_and_others_are_counted() -> None:
    """An agent's own points reach the sink; foreign and unknown points are counted, not passed."""
    ingest, sink, t = setup()
    b = ResultBatch(
        "west",
        1,
        NOW,
        (("a", r("sip", NOW)), ("c", r("sip", NOW)), ("zz", r("sip", NOW)), ("b", r("icmp", NOW))),
    )
    report = ingest.accept(b, NOW + 0.1)
    assert report.accepted == 2 and report.rejected == {"not_assigned": 1, "unknown_point": 1}
    assert [c[0] for c in sink.calls] == ["a", "b"]
    assert rejected(t, "not_assigned") == 1 and rejected(t, "unknown_point") == 1
    assert (
        t.registry.get_sample_value("confmon_probes_total", {"probe": "sip", "result": "success"})
        == 1
    )


def test_unknown_agents_and_replays_are_refused_whole() -> None:
    """A batch from an unassigned agent, or with a sequence not above the last, is dropped."""
    ingest, sink, t = setup()
    assert ingest.accept(ResultBatch("north", 1, NOW, (("a", r("sip", NOW)),)), NOW).rejected == {
        "unknown_agent": 1
    }
    assert ingest.accept(ResultBatch("west", 5, NOW, (("a", r("sip", NOW)),)), NOW).accepted == 1
    again = ingest.accept(ResultBatch("west", 5, NOW, (("a", r("sip", NOW + 5)),)), NOW + 5)
    older = ingest.accept(ResultBatch("west", 4, NOW, (("a", r("sip", NOW + 6)),)), NOW + 6)
    assert again.rejected == {"replayed": 1} and older.rejected == {"replayed": 1}
    assert len(sink.calls) == 1 and rejected(t, "replayed") == 2


def test_only_newer_results_per_point_and_probe() -> None:
    """A result not newer than the last of its point and probe is dropped as outdated."""
    ingest, sink, _ = setup()
    ingest.accept(ResultBatch("west", 1, NOW, (("a", r("sip", NOW)),)), NOW)
    report = ingest.accept(
        ResultBatch("west", 2, NOW, (("a", r("sip", NOW)), ("a", r("icmp", NOW)))), NOW
    )
    assert report.accepted == 1 and report.rejected == {"outdated": 1}
    assert [x.probe for x in sink.calls[-1][1]] == ["icmp"]


def test_the_clock_rule_bounds_freshness_by_the_receive_time() -> None:
    """A sender whose clock runs ahead looks as fresh as its arrival, never fresher."""
    ingest, sink, _ = setup()
    ahead = NOW + 3600
    ingest.accept(ResultBatch("west", 1, ahead, (("a", r("sip", ahead)),)), NOW)
    _, _, taken, received = sink.calls[-1]
    assert taken == NOW and received == NOW
    # its clock corrected: the next result (own time far below the last one's) still counts
    ingest.accept(ResultBatch("west", 2, NOW + 5, (("a", r("sip", NOW + 5)),)), NOW + 5)
    assert sink.calls[-1][2] == NOW + 5


def test_buffered_results_keep_their_own_old_time() -> None:
    """Results that waited in an agent's buffer arrive with the time they were taken."""
    ingest, sink, _ = setup()
    ingest.accept(ResultBatch("west", 1, NOW, (("a", r("sip", NOW - 60)),)), NOW)
    assert sink.calls[-1][2] == NOW - 60


def test_cycle_duration_comes_from_the_results() -> None:
    """The cycle histogram sees first start to last end of a point's results in a batch."""
    ingest, _, t = setup()
    ingest.accept(
        ResultBatch(
            "west",
            1,
            NOW,
            (("a", r("icmp", NOW, duration=0.1)), ("a", r("sip", NOW + 0.05, duration=0.5))),
        ),
        NOW + 1,
    )
    assert t.registry.get_sample_value("confmon_cycle_duration_seconds_sum") == pytest.approx(0.55)


def test_forged_sender_is_refused() -> None:
    """A batch arriving on one agent's channel in another agent's name is dropped."""
    ingest, sink, t = setup()
    data = encode_batch(ResultBatch("east", 1, NOW, (("c", r("sip", NOW)),)))
    assert ingest.accept_bytes(data, NOW, agent="west").rejected == {"forged": 1}
    assert ingest.accept_bytes(data, NOW, agent="east").accepted == 1
    assert rejected(t, "forged") == 1 and len(sink.calls) == 1


def test_reload_refuses_points_that_left() -> None:
    """After a new inventory without point b, b's results are unknown points."""
    ingest, _, _ = setup()
    smaller = parse_inventory(
        CONFIG.replace("  - {id: b, name: B, host: 127.0.0.2, profile: room}\n", "")
    )
    ingest.set_inventory(smaller)
    report = ingest.accept(ResultBatch("west", 1, NOW, (("b", r("sip", NOW)),)), NOW)
    assert report.rejected == {"unknown_point": 1}


# --- every message is accounted for ---------------------------------------------------------

points = st.sampled_from(["a", "b", "c", "zz", ""])
results = st.fixed_dictionaries(
    {
        "point": points,
        "probe": st.sampled_from(["icmp", "sip", "tcp", "bogus"]),
        "at": st.sampled_from([NOW - 100, NOW, NOW + 1, NOW + 10_000, 5.0]),
        "ok": st.booleans() | st.just("yes"),
    },
    optional={"rtt": st.floats(allow_nan=False, min_value=-1, max_value=5), "extra": st.just(1)},
)
messages = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 1, 2]),
        "agent": st.sampled_from(["west", "east", "north", "bad agent"]),
        "seq": st.integers(min_value=-1, max_value=5),
        "sent_at": st.just(NOW),
        "results": st.lists(results, max_size=8),
    }
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(messages, st.sampled_from([None, "west", "east"]), st.integers(0, 3)), max_size=8
    )
)
def test_every_message_is_accounted_for(
    stream: list[tuple[dict[str, object], str | None, int]],
) -> None:
    """Random messages (bad versions, agents, points, types, sequences, truncation): no crash,
    and each result is either passed to the sink or counted under one reason."""
    ingest, sink, t = setup()
    counted = 0.0
    for message, via, cut in stream:
        data = json.dumps(message).encode()
        if cut:
            data = data[: -cut * 7]
        before = len([x for c in sink.calls for x in c[1]])
        report: IngestReport = ingest.accept_bytes(data, NOW + 2, agent=via)
        after = len([x for c in sink.calls for x in c[1]])
        assert after - before == report.accepted
        n = len(message["results"])  # type: ignore[arg-type]
        assert report.total in (n, 1)  # 1: refused before its results could be counted
        counted += sum(report.rejected.values())
    total = sum(
        s.value
        for family in t.registry.collect()
        if family.name == "confmon_results_rejected"
        for s in family.samples
        if s.name.endswith("_total")
    )
    assert total == counted


def test_reject_reasons_are_the_documented_ones() -> None:
    """REJECT_REASONS (the series confmon server exports at 0 from the start) is the table of
    the module's docstring, and holds every reason the wire decoder can give."""
    import typing

    from monitor.core import ingest
    from monitor.core.results import Rejected

    documented = re.findall(r"^``(\w+)``\s{2,}", ingest.__doc__ or "", re.MULTILINE)
    assert tuple(documented) == ingest.REJECT_REASONS
    decoder = typing.get_args(typing.get_type_hints(Rejected)["reason"])
    assert set(decoder) <= set(ingest.REJECT_REASONS)
