"""Prometheus exposition: the contract's metric names and labels, rendered at scrape time.

Nothing is recorded per result: a scrape reads the health model's current state
(the collector pattern). The per-point families are written by a specialised
text writer rather than by prometheus_client's generic one, because that one
costs about 6 µs a sample: 10,000 points × ~19 series took 1.15 s on this
machine, against a budget of 100 ms. The writer precomputes every label set once
per inventory, and even whole ``confmon_point_state`` blocks for each of the six
states, so a scrape is mostly string joins. Process-wide counters are ordinary
prometheus_client objects in :class:`Telemetry` (the cycle-duration histogram is a
collector of its own, :class:`CycleDurations`), appended to the same response. The
output is checked with prometheus_client's parser and ``promtool check metrics`` in
the tests.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from monitor.core.events import SEVERITY
from monitor.core.health import STATES, HealthModel, State
from monitor.core.results import ProbeResult
from monitor.probes import registry

__all__ = ["CONTENT_TYPE", "CycleDurations", "PointMetricsWriter", "Telemetry"]

# counters' *_created series double the output for nothing a dashboard uses
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAMILIES = {
    "rtt": ("confmon_probe_rtt_seconds", "Mean round-trip time of the last probe cycle."),
    "jitter": (
        "confmon_probe_jitter_seconds",
        "RFC 3550 interarrival jitter (media) or mean RTT delta (icmp) of the last cycle.",
    ),
    "loss": ("confmon_probe_loss_ratio", "Packet loss of the last probe cycle, 0..1."),
}
#: which of rtt/jitter/loss each probe measures (a stable set of series per point); a
#: probe's MOS is the point's confmon_point_mos, not a per-probe series
MEASURES: dict[str, tuple[str, ...]] = {
    name: tuple(m for m in measures if m in _FAMILIES)
    for name, measures in registry.MEASURES.items()
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _header(name: str, help_text: str, kind: str = "gauge") -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


class PointMetricsWriter:
    """Renders the per-point and roll-up families from a :class:`HealthModel`."""

    def __init__(self, model: HealthModel) -> None:
        self.model = model
        inv = model.inv
        self._ids = list(inv.points)
        info, self._l3, self._l2, self._state_blocks = [], {}, {}, {}
        self._severity_lines: dict[str, dict[State, str]] = {}
        # (point, probe, line prefix) for each probe series, grouped by family
        # the model mutates each point's `latest` dict in place, so holding it here is safe
        Triple = tuple[dict[str, ProbeResult], str, str]
        self._success: list[Triple] = []
        self._measures: dict[str, list[Triple]] = {k: [] for k in _FAMILIES}
        for p in inv.points.values():
            pid, dist, level = _escape(p.id), _escape(p.district), _escape(p.level)
            l3 = f'point="{pid}",district="{dist}",level="{level}"'
            self._l3[p.id] = l3
            self._l2[p.id] = f'point="{pid}",district="{dist}"'
            info.append(
                f'confmon_point_info{{{l3},name="{_escape(p.name)}",host="{_escape(p.host)}"}} 1\n'
            )
            lines = {s: f'confmon_point_state{{{l3},state="{s.value}"}} ' for s in STATES}
            self._state_blocks[p.id] = {
                cur: "".join(f"{lines[s]}{1 if s is cur else 0}\n" for s in STATES)
                for cur in STATES
            }
            self._severity_lines[p.id] = {
                s: f"confmon_point_severity{{{l3}}} {SEVERITY[s]}\n" for s in STATES
            }
            latest = model.points[p.id].latest
            for name in inv.profile_of(p).probes():
                labels = f'{self._l2[p.id]},probe="{name}"'
                self._success.append((latest, name, f"confmon_probe_success{{{labels}}} "))
                for key in MEASURES[name]:
                    self._measures[key].append((latest, name, f"{_FAMILIES[key][0]}{{{labels}}} "))
        self._info = _header(
            "confmon_point_info", "Names and hosts of the points (value 1)."
        ) + "".join(info)
        # a point's MOS is that of the first of its probes that reports one (media)
        self._mos: list[Triple] = []
        for pid in self._ids:
            runs = inv.profile_of(pid).probes()
            mos_by = next((n for n in runs if "mos" in registry.MEASURES[n]), None)
            if mos_by is not None:
                prefix = f"confmon_point_mos{{{self._l2[pid]}}} "
                self._mos.append((model.points[pid].latest, mos_by, prefix))

    def render(self) -> str:
        """The families as Prometheus text format 0.0.4."""
        model = self.model
        points = model.points
        out = [self._info]
        out.append(_header("confmon_point_up", "1 when the point is up or degraded, else 0."))
        up = (State.UP, State.DEGRADED)
        out.extend(
            f"confmon_point_up{{{self._l3[pid]}}} {1 if points[pid].state in up else 0}\n"
            for pid in self._ids
        )
        out.append(
            _header(
                "confmon_point_state",
                "Current state of the point (stateset: 1 for the current state).",
            )
        )
        out.extend(self._state_blocks[pid][points[pid].state] for pid in self._ids)
        out.append(
            _header(
                "confmon_point_severity",
                "The current state as a number, worst highest: up 0, maintenance 1, unknown 2,"
                " degraded 3, unreachable 4, down 5 (to sort and colour by; the state itself is"
                " confmon_point_state).",
            )
        )
        out.extend(self._severity_lines[pid][points[pid].state] for pid in self._ids)
        out.append(
            _header(
                "confmon_point_state_since_timestamp_seconds",
                "Unix time the point's current state began (for a point not heard from yet: when"
                " monitoring began).",
            )
        )
        out.extend(
            f"confmon_point_state_since_timestamp_seconds{{{self._l3[pid]}}} "
            f"{_num(points[pid].since or None)}\n"
            for pid in self._ids
        )
        out.append(
            _header(
                "confmon_point_reason",
                "Why the point is in its state (value 1): reason is a short code (ok, path,"
                " service, uplink, loss, jitter, rtt, mos, probe, no_result, waiting, stale,"
                " agent_offline, maintenance); cause is the point where the trouble is.",
            )
        )
        for pid in self._ids:
            h = points[pid]
            # an up point has no trouble to point at (its cause is kept for the recovery event)
            cause = pid if h.state is State.UP or not h.cause else h.cause
            out.append(
                f'confmon_point_reason{{{self._l3[pid]},reason="{h.reason_code()}",'
                f'cause="{_escape(cause)}"}} 1\n'
            )

        out.append(
            _header("confmon_probe_success", "1 when the probe's last cycle succeeded, else 0.")
        )
        # comprehensions over precomputed (latest-results dict, probe, line prefix) triples:
        # these loops are nearly the whole cost of a 10,000-point scrape
        out.extend(
            f"{prefix}{1 if (r := latest.get(name)) is not None and r.ok else 0}\n"
            for latest, name, prefix in self._success
        )
        for key, (family, help_text) in _FAMILIES.items():
            out.append(_header(family, help_text))
            out.extend(
                f"{prefix}{_num(getattr(r, key) if (r := latest.get(name)) else None)}\n"
                for latest, name, prefix in self._measures[key]
            )
        out.append(_header("confmon_point_mos", "E-model MOS estimate of the media path (1..4.5)."))
        out.extend(
            f"{prefix}{_num(r.mos if (r := latest.get(name)) else None)}\n"
            for latest, name, prefix in self._mos
        )

        out.append(_header("confmon_points", "Number of points per state."))
        out.extend(f'confmon_points{{state="{s.value}"}} {model.counts[s]}\n' for s in STATES)
        out.append(
            _header("confmon_district_points", "Number of points per state in each district.")
        )
        for district, counts in model.district_counts.items():
            d = _escape(district)
            out.extend(
                f'confmon_district_points{{district="{d}",state="{s.value}"}} {counts[s]}\n'
                for s in STATES
            )
        out.append(
            _header("confmon_readiness_ratio", "(up + degraded) / points not in maintenance.")
        )
        out.append(f"confmon_readiness_ratio {_num(model.readiness())}\n")
        out.append(
            _header("confmon_readiness_target", "monitor.readiness_target of the inventory (0..1).")
        )
        out.append(f"confmon_readiness_target {_num(model.inv.settings.readiness_target)}\n")
        t = model.inv.thresholds
        out.append(
            _header(
                "confmon_quality_threshold",
                "The inventory's thresholds: a point crossing one is degraded (rtt and jitter"
                " in seconds, loss as a ratio: above is worse; mos: below is worse).",
            )
        )
        out.extend(
            f'confmon_quality_threshold{{figure="{figure}"}} {_num(value)}\n'
            for figure, value in (
                ("rtt", t.rtt),
                ("jitter", t.jitter),
                ("loss", t.loss),
                ("mos", t.mos),
            )
        )
        return "".join(out)


class _AgentCollector(Collector):
    """Agent liveness read at scrape time from a provider: agent -> (up, last_seen)."""

    def __init__(self, agents: Callable[[], dict[str, tuple[bool, float]]]) -> None:
        self._agents = agents

    def collect(self) -> list[GaugeMetricFamily]:
        up = GaugeMetricFamily("confmon_agent_up", "1 when the agent is online.", labels=["agent"])
        seen = GaugeMetricFamily(
            "confmon_agent_last_seen_timestamp_seconds",
            "Unix time of the agent's last message.",
            labels=["agent"],
        )
        for agent, (online, last_seen) in sorted(self._agents().items()):
            up.add_metric([agent], 1.0 if online else 0.0)
            seen.add_metric([agent], last_seen)
        return [up, seen]


class _OutboxCollector(Collector):
    """Notifications waiting per receiver, read at scrape time."""

    def __init__(self, pending: Callable[[], dict[str, int]]) -> None:
        self._pending = pending

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "confmon_notifications_pending",
            "Notifications waiting to be delivered (the outbox depth), by receiver.",
            labels=["receiver"],
        )
        for receiver, n in sorted(self._pending().items()):
            family.add_metric([receiver], float(n))
        return [family]


class CycleDurations(Collector):
    """``confmon_cycle_duration_seconds``: a histogram that takes a batch's values at once.

    prometheus_client's :class:`~prometheus_client.Histogram` takes two locks for every
    value it observes; the ingest observes one value per point and batch (10,000 for a
    cycle of 10,000 points), which made it a twentieth of the server's ingest. Here a
    batch costs one lock, and the scrape sees the same series (``_bucket``, ``_count``,
    ``_sum``).
    """

    BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

    def __init__(self) -> None:
        self._bounds = self.BUCKETS
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float]) -> None:
        """Count ``values`` (seconds) in their buckets (``le``: a value on a bound is in it)."""
        where, bounds = bisect.bisect_left, self._bounds
        counts = [0] * len(self._counts)
        total = 0.0
        for v in values:
            counts[where(bounds, v)] += 1
            total += v
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum += total

    def collect(self) -> list[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self._bounds, math.inf), counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == math.inf else repr(bound), running))
        return [
            HistogramMetricFamily(
                "confmon_cycle_duration_seconds",
                "How long a point's probe cycle took.",
                buckets=buckets,
                sum_value=total,
            )
        ]


class Telemetry:
    """The process-wide counters and histograms (prometheus_client metrics, and
    :class:`CycleDurations`)."""

    def __init__(self, agents: Callable[[], dict[str, tuple[bool, float]]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.probes = Counter(
            "confmon_probes", "Probes run, by probe and result.", ["probe", "result"], registry=r
        )
        self.cycle_duration = CycleDurations()
        r.register(self.cycle_duration)
        self.rejected = Counter(
            "confmon_results_rejected",
            "Results dropped as bad or unauthorised, by reason.",
            ["reason"],
            registry=r,
        )
        self.notifications = Counter(
            "confmon_notifications",
            "Webhook deliveries, by receiver and result.",
            ["receiver", "result"],
            registry=r,
        )
        self.overruns = Counter(
            "confmon_scheduler_overruns",
            "Cycles skipped because the previous one was still running.",
            registry=r,
        )
        self.reload_ok = Gauge(
            "confmon_config_last_reload_successful",
            "1 when the last config (re)load succeeded.",
            registry=r,
        )
        self.reload_time = Gauge(
            "confmon_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            registry=r,
        )
        self.events = Counter(
            "confmon_state_changes", "State changes, by new state.", ["state"], registry=r
        )
        self._outbox: _OutboxCollector | None = None
        if agents is not None:
            self.watch_agents(agents)
        for probe in MEASURES:
            for result in ("success", "failure"):
                self.probes.labels(probe, result)

    def watch_agents(self, agents: Callable[[], dict[str, tuple[bool, float]]]) -> None:
        """Export ``confmon_agent_up`` and ``..._last_seen_...`` from ``agents`` (agent ->
        (online, last seen)), read at scrape time."""
        self.registry.register(_AgentCollector(agents))

    def watch_outbox(self, pending: Callable[[], dict[str, int]]) -> None:
        """Export ``confmon_notifications_pending`` from ``pending`` (receiver -> depth)."""
        if self._outbox is not None:
            self.registry.unregister(self._outbox)
        self._outbox = _OutboxCollector(pending)
        self.registry.register(self._outbox)

    def render(self) -> str:
        """These metrics as text format."""
        return generate_latest(self.registry).decode("utf-8")
