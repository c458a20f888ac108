"""/metrics: the contract's names and labels, valid text format, promtool-clean."""

from __future__ import annotations

import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.health import HealthModel
from monitor.outputs.metrics import PointMetricsWriter, Telemetry
from tests.helpers import require_binary
from tests.outputs.fixtures import bad, good, inventory


def scrape() -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    now = time.time()
    model = HealthModel(inventory(), now=now)
    model.ingest(
        "ba-vi",
        [
            good("icmp", now, rtt=0.012, jitter=0.002, loss=0.0),
            good("sip", now, rtt=0.02),
            good("http", now, rtt=0.05),
        ],
        now,
    )
    model.ingest("ba-vi", [good("media", now, rtt=0.011, jitter=0.004, loss=0.02, mos=4.1)], now)
    for at in (now, now + 5):
        model.ingest("son-tay", [bad("icmp", at), bad("sip", at)], at)
    text = PointMetricsWriter(model).render() + Telemetry().render()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /, **labels: str
) -> float:
    return samples[(metric, frozenset(labels.items()))]


def test_contract_names_labels_and_values() -> None:
    """Each contract metric is present with its labels and the model's current values."""
    _, s = scrape()
    assert (
        value(
            s,
            "confmon_point_info",
            point="ba-vi.tan-linh",
            district="ba-vi",
            level="commune",
            name="Xã Tản Lĩnh",
            host="10.21.1.17",
        )
        == 1
    )
    assert (
        value(
            s,
            "confmon_point_info",
            point="ba-vi.ba-trai",
            district="ba-vi",
            level="commune",
            name='Xã "Ba" Trại',
            host="10.21.1.18",
        )
        == 1
    )
    assert value(s, "confmon_point_up", point="ba-vi", district="ba-vi", level="district") == 1
    for point, district, level, code in (
        ("son-tay", "son-tay", "district", 5),  # down
        ("ba-vi", "ba-vi", "district", 0),  # up
        ("ba-vi.tan-linh", "ba-vi", "commune", 2),  # unknown
    ):
        labels = {"point": point, "district": district, "level": level}
        assert value(s, "confmon_point_severity", **labels) == code
    assert value(s, "confmon_point_up", point="son-tay", district="son-tay", level="district") == 0
    assert (
        value(
            s,
            "confmon_point_state",
            point="son-tay",
            district="son-tay",
            level="district",
            state="down",
        )
        == 1
    )
    assert (
        value(
            s,
            "confmon_point_state",
            point="son-tay",
            district="son-tay",
            level="district",
            state="up",
        )
        == 0
    )
    assert value(s, "confmon_probe_success", point="ba-vi", district="ba-vi", probe="icmp") == 1
    assert value(s, "confmon_probe_success", point="son-tay", district="son-tay", probe="sip") == 0
    assert (
        value(s, "confmon_probe_rtt_seconds", point="ba-vi", district="ba-vi", probe="sip") == 0.02
    )
    assert (
        value(s, "confmon_probe_jitter_seconds", point="ba-vi", district="ba-vi", probe="media")
        == 0.004
    )
    assert (
        value(s, "confmon_probe_loss_ratio", point="ba-vi", district="ba-vi", probe="media") == 0.02
    )
    assert value(s, "confmon_point_mos", point="ba-vi", district="ba-vi") == 4.1
    assert value(s, "confmon_points", state="down") == 1
    assert value(s, "confmon_points", state="unknown") == 2
    assert value(s, "confmon_district_points", district="ba-vi", state="up") == 1
    assert value(s, "confmon_readiness_ratio") == 0.25
    assert value(s, "confmon_readiness_target") == 0.98
    assert value(s, "confmon_quality_threshold", figure="rtt") == 0.150
    assert value(s, "confmon_quality_threshold", figure="jitter") == 0.030
    assert value(s, "confmon_quality_threshold", figure="loss") == 0.02
    assert value(s, "confmon_quality_threshold", figure="mos") == 3.6
    assert value(s, "confmon_probes_total", probe="icmp", result="failure") == 0
    assert ("confmon_cycle_duration_seconds_count", frozenset()) in s


def test_series_are_stable_before_any_result() -> None:
    """A point never probed still has its series (NaN rtt, success 0): Grafana panels do not break."""
    _, s = scrape()
    rtt = value(
        s, "confmon_probe_rtt_seconds", point="ba-vi.tan-linh", district="ba-vi", probe="icmp"
    )
    assert rtt != rtt  # NaN
    assert (
        value(s, "confmon_probe_success", point="ba-vi.tan-linh", district="ba-vi", probe="icmp")
        == 0
    )
    states = [k for k in s if k[0] == "confmon_point_state" and ("point", "ba-vi.tan-linh") in k[1]]
    assert len(states) == 6


def test_promtool_check_metrics_is_clean() -> None:
    """`promtool check metrics` finds no problem in a scrape."""
    promtool = require_binary("promtool")
    text, _ = scrape()
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


def test_scheduler_overruns_reach_the_counter() -> None:
    """The probing side's running overrun count is carried into confmon_scheduler_overruns."""
    from monitor.core.service import Monitor
    from tests.outputs.fixtures import inventory

    m = Monitor(inventory())
    figures = {"overruns": 3}
    m.scheduler_stats = lambda: dict(figures)
    m._count_overruns()
    figures["overruns"] = 5
    m._count_overruns()
    m._count_overruns()
    assert m.telemetry.registry.get_sample_value("confmon_scheduler_overruns_total") == 5


def _reasons(model: HealthModel) -> dict[str, tuple[str, str]]:
    """point -> (reason, cause) from a scrape's confmon_point_reason series."""
    out: dict[str, tuple[str, str]] = {}
    text = PointMetricsWriter(model).render()
    for family in text_string_to_metric_families(text):
        if family.name == "confmon_point_reason":
            for s in family.samples:
                assert s.labels["point"] not in out, "two reason series for one point"
                out[s.labels["point"]] = (s.labels["reason"], s.labels["cause"])
    return out


def test_reason_codes_say_why_and_where() -> None:
    """One confmon_point_reason series per point, whose code and cause follow the state:
    a cut uplink, a dead SIP service, a lossy path, a point never heard of and a stale one."""
    t = 1_000_000.0
    model = HealthModel(inventory(), now=t)
    assert _reasons(model) == {pid: ("no_result", pid) for pid in model.points}
    for step in range(3):
        at = t + 5 * step
        model.ingest("ba-vi", [bad("icmp", at), bad("sip", at), bad("http", at)], at)
        model.ingest("ba-vi.tan-linh", [bad("icmp", at), bad("sip", at)], at)
        # son-tay answers ping but its SIP service is dead
        model.ingest("son-tay", [good("icmp", at, rtt=0.01, loss=0.0), bad("sip", at)], at)
        model.ingest("ba-vi.ba-trai", [good("icmp", at, rtt=0.01, loss=0.0)], at)
    reasons = _reasons(model)
    assert reasons["ba-vi"] == ("path", "ba-vi")
    assert reasons["ba-vi.tan-linh"] == ("uplink", "ba-vi")
    assert reasons["son-tay"] == ("service", "son-tay")
    # ba-trai answers although its uplink does not: it waits for its own verdict on SIP
    assert reasons["ba-vi.ba-trai"][0] in ("waiting", "ok", "service", "uplink")

    # everything stops: after stale_after the points are unknown because nothing came
    model.tick(t + 60)
    assert {r for r, _ in _reasons(model).values()} == {"stale"}


def test_degraded_names_the_figure_that_crossed() -> None:
    """A point degraded by jitter says `jitter`, with itself as the cause."""
    t = 1_000_000.0
    model = HealthModel(inventory(), now=t)
    for step in range(6):
        at = t + 5 * step
        model.ingest(
            "son-tay",
            [
                good("icmp", at, rtt=0.01, jitter=0.08, loss=0.0),
                good("sip", at, rtt=0.02),
            ],
            at,
        )
    assert model.points["son-tay"].state.value == "degraded"
    assert _reasons(model)["son-tay"] == ("jitter", "son-tay")


def test_state_since_is_when_the_state_began() -> None:
    """confmon_point_state_since_timestamp_seconds is when monitoring began before any result,
    then the time of the change that began the current state (not of the last result)."""
    t = 1_000_000.0
    model = HealthModel(inventory(), now=t)

    def since() -> dict[str, float]:
        text = PointMetricsWriter(model).render()
        fam = next(
            f
            for f in text_string_to_metric_families(text)
            if f.name == "confmon_point_state_since_timestamp_seconds"
        )
        return {s.labels["point"]: s.value for s in fam.samples}

    assert set(since().values()) == {t}
    for step in range(4):
        at = t + 5 * step
        model.ingest("son-tay", [good("icmp", at, rtt=0.01, loss=0.0), good("sip", at)], at)
    assert since()["son-tay"] == t  # up at the first good cycle
    for step in range(4, 8):
        at = t + 5 * step
        model.ingest("son-tay", [bad("icmp", at), bad("sip", at)], at)
    assert since()["son-tay"] == t + 25  # down at the second failed cycle


def test_severity_orders_states_as_the_terminal_dashboard() -> None:
    """confmon_point_severity sorts worst first in the order the terminal dashboard lists
    points that need attention, and gives each state its own number."""
    from monitor.core.events import SEVERITY
    from monitor.dashboard.model import STATE_ORDER

    assert tuple(s.value for s in sorted(SEVERITY, key=lambda s: -SEVERITY[s])) == STATE_ORDER
    assert sorted(SEVERITY.values()) == list(range(len(STATE_ORDER)))


def test_cycle_durations_match_prometheus_clients_histogram() -> None:
    """The batched histogram exposes what prometheus_client's Histogram would for the same
    values, bounds included (a value on a bound is counted in it)."""
    import random

    from prometheus_client import CollectorRegistry, Histogram

    from monitor.outputs.metrics import CycleDurations

    reference_registry = CollectorRegistry()
    reference = Histogram(
        "confmon_cycle_duration_seconds",
        "How long a point's probe cycle took.",
        buckets=CycleDurations.BUCKETS,
        registry=reference_registry,
    )
    t = Telemetry()
    rnd = random.Random(7)
    values = [
        rnd.choice([*CycleDurations.BUCKETS, 0.0, 11.0, rnd.random() * 12]) for _ in range(500)
    ]
    for i in range(0, len(values), 37):
        t.cycle_duration.observe_many(values[i : i + 37])
        for v in values[i : i + 37]:
            reference.observe(v)
    t.cycle_duration.observe(0.3)
    reference.observe(0.3)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for m in registry.collect()
            if m.name == "confmon_cycle_duration_seconds"
            for s in m.samples
            if not s.name.endswith("_created")
        }

    ours, theirs = samples(t.registry), samples(reference_registry)
    assert ours.keys() == theirs.keys() and len(ours) == len(CycleDurations.BUCKETS) + 3
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value), key
