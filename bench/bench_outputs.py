"""Health-model ingest rate and /metrics scrape time, each against a peer in the same run.

    .venv/bin/python bench/bench_outputs.py [--points 10000]

- ingest: results per second through HealthModel.ingest (cycles of icmp + sip
  results, 2 % failures so states move), against the floor of merely storing
  each result in a dict (what any monitor must do at least).
- wire ingest: the same results as agents send them (batches of 1,000 results
  as JSON bytes) through the codec and the one ingest entry into the health
  model, against ``json.loads`` of the same bytes alone (a peer that only parses).
- scrape: time to render /metrics for 450 and N points with confmon's writer,
  against prometheus_client's generic text writer (generate_latest) on the same
  samples through a standard custom collector.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from monitor.core.health import HealthModel
from monitor.core.results import ProbeResult
from monitor.inventory.synthetic import synthetic_inventory
from monitor.outputs.metrics import PointMetricsWriter, Telemetry


def results_for(ids: list[str], cycles: int, seed: int = 1) -> list[tuple[str, list[ProbeResult]]]:
    rnd = random.Random(seed)
    out = []
    t = 1e9
    for c in range(cycles):
        for pid in ids:
            ok = rnd.random() > 0.02
            at = t + c * 5
            out.append(
                (
                    pid,
                    [
                        ProbeResult(
                            probe="icmp",
                            target=pid,
                            ok=ok,
                            at=at,
                            duration=0.1,
                            rtt=0.001 + rnd.random() * 0.2,
                            jitter=0.001,
                            loss=0.0,
                        ),
                        ProbeResult(probe="sip", target=pid, ok=ok, at=at, duration=0.1, rtt=0.002),
                    ],
                )
            )
    return out


def bench_ingest(points: int) -> None:
    inv = synthetic_inventory(points)
    batch = results_for(list(inv.points), cycles=20)
    n_results = sum(len(r) for _, r in batch)
    model = HealthModel(inv, now=1e9)
    t0 = time.perf_counter()
    for pid, results in batch:
        model.ingest(pid, results, results[0].at)
    ours = n_results / (time.perf_counter() - t0)
    store: dict[str, dict[str, ProbeResult]] = {pid: {} for pid in inv.points}
    t0 = time.perf_counter()
    for pid, results in batch:
        latest = store[pid]
        for r in results:
            latest[r.probe] = r
    floor = n_results / (time.perf_counter() - t0)
    print(
        f"ingest  {points:>6} points: {ours:>12,.0f} results/s  (dict-store floor {floor:,.0f}/s; ratio {ours / floor:.2f})"
    )


def bench_wire_ingest(points: int) -> None:
    import json

    from monitor.core.ingest import Ingest
    from monitor.core.results import ResultBatch, encode_batch

    inv = synthetic_inventory(points)
    cycles = results_for(list(inv.points), cycles=20)
    pairs = [(pid, r) for pid, results in cycles for r in results]
    # the synthetic times start at 1e9; the wire wants times after 2001: shift by a day
    pairs = [(pid, _shifted(r)) for pid, r in pairs]
    per = 1000
    messages = [
        encode_batch(
            ResultBatch("bench", i + 1, pairs[i * per][1].at, tuple(pairs[i * per : (i + 1) * per]))
        )
        for i in range((len(pairs) + per - 1) // per)
    ]
    model = HealthModel(inv, now=pairs[0][1].at)
    ingest = Ingest(inv, lambda pid, rs, taken, now: model.ingest(pid, rs, now, taken), Telemetry())
    ingest.assign("bench", None)
    t0 = time.perf_counter()
    accepted = 0
    for i, data in enumerate(messages):
        accepted += ingest.accept_bytes(
            data, pairs[min(i * per, len(pairs) - 1)][1].at + 1
        ).accepted
    ours = len(pairs) / (time.perf_counter() - t0)
    assert accepted == len(pairs), (accepted, len(pairs))
    t0 = time.perf_counter()
    for data in messages:
        json.loads(data)
    peer = len(pairs) / (time.perf_counter() - t0)
    print(
        f"wire    {points:>6} points: {ours:>12,.0f} results/s  (json.loads alone {peer:,.0f}/s; ratio {ours / peer:.2f})"
    )


def _shifted(r: ProbeResult) -> ProbeResult:
    import dataclasses

    return dataclasses.replace(r, at=r.at + 1e9)


class _Generic(Collector):
    """The same samples through prometheus_client's standard collector API."""

    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for f in self.families:
            g = GaugeMetricFamily(
                f.name,
                f.documentation or "x",
                labels=sorted(f.samples[0].labels) if f.samples else [],
            )
            for s in f.samples:
                g.add_metric([s.labels[k] for k in sorted(s.labels)], s.value)
            yield g


def bench_scrape(points: int) -> None:
    inv = synthetic_inventory(points)
    model = HealthModel(inv, now=1e9)
    for pid, results in results_for(list(inv.points), cycles=1):
        model.ingest(
            pid,
            [
                *results,
                ProbeResult(
                    probe="media",
                    target=pid,
                    ok=True,
                    at=1e9,
                    duration=1.0,
                    rtt=0.01,
                    jitter=0.002,
                    loss=0.0,
                    mos=4.3,
                ),
            ],
            1e9,
        )
    writer, telemetry = PointMetricsWriter(model), Telemetry()
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        text = writer.render() + telemetry.render()
        runs.append(time.perf_counter() - t0)
    ours = statistics.median(runs)
    registry = CollectorRegistry()
    registry.register(_Generic(writer.render()))
    peer = []
    for _ in range(3):
        t0 = time.perf_counter()
        generate_latest(registry)
        peer.append(time.perf_counter() - t0)
    generic = statistics.median(peer)
    series = text.count("\n") - text.count("# ")
    print(
        f"scrape  {points:>6} points: {ours * 1000:7.1f} ms for {series:,} series, {len(text) / 1e6:.1f} MB"
        f"  (prometheus_client generic writer {generic * 1000:.0f} ms; ratio {ours / generic:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    args = parser.parse_args()
    for n in sorted({450, args.points}):
        bench_ingest(n)
    for n in sorted({450, args.points}):
        bench_wire_ingest(n)
    for n in sorted({450, args.points}):
        bench_scrape(n)


if __name__ == "__main__":
    main()
