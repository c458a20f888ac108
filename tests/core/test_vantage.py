"""Two vantages per point: a failure counts only when every healthy vantage agrees."""

from __future__ import annotations

from monitor.core.ingest import Ingest
from monitor.core.results import ProbeResult, ResultBatch
from monitor.inventory import Inventory, parse_inventory
from monitor.outputs.metrics import Telemetry

NOW = 1_796_000_000.0
POINTS = [f"p{i}" for i in range(10)]
CONFIG = "monitor: {interval: 5s}\nprofiles: {room: {icmp: {}}}\npoints:\n" + "".join(
    f"  - {{id: {p}, name: {p}, host: 127.0.1.{i + 1}, profile: room}}\n"
    for i, p in enumerate(POINTS)
)


def inv() -> Inventory:
    return parse_inventory(CONFIG, "test.yaml")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, bool]] = []

    def __call__(self, pid: str, results: list[ProbeResult], taken: float, received: float) -> None:
        self.got.extend((pid, r.ok) for r in results)


def res(at: float, ok: bool) -> ProbeResult:
    return ProbeResult(probe="icmp", target="", ok=ok, at=at, duration=0.01)


class Pair:
    """An ingest with agents a and b both assigned every point."""

    def __init__(self) -> None:
        self.sink = Sink()
        self.changes: list[tuple[str, bool]] = []
        self.ingest = Ingest(inv(), self.sink, Telemetry())
        self.ingest.vantages._on_change = lambda a, bad: self.changes.append((a, bad))
        self.ingest.assign("a", POINTS)
        self.ingest.assign("b", POINTS)
        self.seq = {"a": 0, "b": 0}

    def send(self, agent: str, at: float, ok: dict[str, bool] | bool) -> None:
        self.seq[agent] += 1
        oks = ok if isinstance(ok, dict) else dict.fromkeys(POINTS, ok)
        pairs = tuple((p, res(at, v)) for p, v in oks.items())
        self.ingest.accept(ResultBatch(agent, self.seq[agent], at, pairs), at + 0.1)


def test_both_vantages_up_judges_one_result_per_cycle() -> None:
    v = Pair()
    for cycle in range(4):
        v.send("a", NOW + 5 * cycle, True)
        v.send("b", NOW + 5 * cycle + 1, True)
    assert len(v.sink.got) == 4 * len(POINTS), "the second vantage's results are held"
    assert all(ok for _, ok in v.sink.got)


def test_a_room_down_for_both_vantages_is_down() -> None:
    v = Pair()
    v.send("a", NOW, True)
    v.send("b", NOW + 1, True)
    for cycle in range(1, 4):
        v.send("a", NOW + 5 * cycle, {"p3": False})
        v.send("b", NOW + 5 * cycle + 1, {"p3": False})
    assert v.sink.got.count(("p3", False)) >= 3, "every healthy vantage agrees: failures count"
    assert v.ingest.vantages.impaired == frozenset()


def test_a_vantage_whose_uplink_fails_is_flagged_and_its_points_stay_up() -> None:
    v = Pair()
    v.send("a", NOW, True)
    v.send("b", NOW + 1, True)
    for cycle in range(1, 6):
        v.send("a", NOW + 5 * cycle, False)  # agent a's own uplink is cut
        v.send("b", NOW + 5 * cycle + 1, True)
    assert not [p for p, ok in v.sink.got if not ok], "no failure of a reached the health model"
    assert v.ingest.vantages.impaired == {"a"}
    assert v.changes == [("a", True)]
    # a's uplink comes back: it agrees again and is no longer flagged
    for cycle in range(6, 9):
        v.send("a", NOW + 5 * cycle, True)
        v.send("b", NOW + 5 * cycle + 1, True)
    assert v.ingest.vantages.impaired == frozenset()
    assert v.changes == [("a", True), ("a", False)]


def test_one_room_seen_only_by_one_vantage_does_not_flag_the_other() -> None:
    v = Pair()
    v.send("a", NOW, True)
    v.send("b", NOW + 1, True)
    for cycle in range(1, 4):
        v.send("a", NOW + 5 * cycle, {"p1": False})  # a route problem from a to one room only
        v.send("b", NOW + 5 * cycle + 1, {"p1": True})
    assert ("p1", False) not in v.sink.got
    assert v.ingest.vantages.impaired == frozenset()


def test_a_lost_vantage_leaves_the_other_in_charge() -> None:
    v = Pair()
    v.send("a", NOW, True)
    v.send("b", NOW + 1, True)
    v.ingest.unassign("b")
    for cycle in range(1, 3):
        v.send("a", NOW + 5 * cycle, {"p2": False})
    assert v.sink.got.count(("p2", False)) == 2


def test_loss_seen_by_one_vantage_only_does_not_reach_the_quality_window() -> None:
    v = Pair()
    v.ingest.vantages.loss_limit = 0.02
    lossy = ProbeResult(probe="icmp", target="", ok=True, at=NOW + 5, duration=0.01, loss=0.4)
    v.send("a", NOW, True)  # a reports first: it is the active vantage
    v.send("b", NOW + 1, True)
    assert v.ingest.vantages.active("p0") == "a"
    v.ingest.accept(ResultBatch("a", 99, NOW + 5, (("p0", lossy),)), NOW + 5.1)
    assert len(v.sink.got) == len(POINTS), "the lossy result was held"
    assert v.ingest.vantages.active("p0") == "b", "the clean vantage takes over"
