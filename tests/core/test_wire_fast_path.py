"""The server's fast path for results: what the shortcuts taken for speed must not change.

``decode_batch`` parses a good batch once and builds results positionally;
``Ingest.accept`` counts ``confmon_probes_total`` once per batch instead of once per
result. These tests pin what a user would notice if a shortcut went wrong: a field
landing in another field's place, a refused payload counted under another reason,
a probe count that no longer matches the results run.
"""

from __future__ import annotations

import json

from monitor.core.ingest import Ingest
from monitor.core.results import (
    Phase,
    ProbeResult,
    Rejected,
    ResultBatch,
    decode_batch,
    encode_batch,
)
from monitor.inventory import parse_inventory
from monitor.outputs.metrics import Telemetry

NOW = 1_796_000_000.0


def test_every_field_lands_in_its_own_place() -> None:
    """Each field of a result carries a value no other field has, and reads back as itself."""
    original = ProbeResult(
        probe="media",
        target="127.74.0.9",
        ok=False,
        at=NOW,
        duration=0.5,
        rtt=0.011,
        rtt_min=0.012,
        rtt_max=0.013,
        jitter=0.014,
        loss=0.15,
        mos=3.9,
        error="timeout",
        warning="late",
        phases=(Phase("connect", True, 0.016, "ok"),),
        details={"sent": 50},
    )
    batch = ResultBatch("hn-01", 7, NOW + 1, (("p1", original),))
    ((point, back),) = decode_batch(encode_batch(batch)).results
    assert point == "p1" and back.target == ""  # the wire does not carry the host
    for name in ProbeResult.__struct_fields__:
        if name != "target":
            assert getattr(back, name) == getattr(original, name), name


def _reason(payload: bytes) -> str:
    try:
        decode_batch(payload)
    except Rejected as exc:
        return exc.reason
    return "accepted"


def test_the_reason_does_not_depend_on_where_parsing_stops() -> None:
    """Truncated after a schema error is still malformed; a new version is a version
    whatever its fields; a wrong type with a good version is schema."""
    assert _reason(b'{"v": 1, "agent": 5, "seq": ') == "malformed"
    assert _reason(b'{"results": "many", "v": 2, "agent": "a"}') == "version"
    assert _reason(b'{"v": 1, "agent": 5, "seq": 1, "sent_at": 1796000000, "results": []}') == (
        "schema"
    )
    good = {"v": 1, "agent": "a", "seq": 1, "sent_at": NOW, "results": []}
    assert _reason(json.dumps(good).encode()) == "accepted"
    assert _reason(json.dumps({**good, "v": 2}).encode()) == "version"


def test_nesting_deeper_than_the_decoder_recurses_is_malformed() -> None:
    """msgspec raises RecursionError on deep nesting, in a field it reads and in one it
    only skips; both are an ordinary "malformed" message, not an exception of another kind."""
    deep = "[" * 100_000 + "]" * 100_000
    good = '{"v": 1, "agent": "a", "seq": 1, "sent_at": 1796000000.0, '
    assert _reason(f'{good}"results": {deep}}}'.encode()) == "malformed"
    assert _reason(f'{good}"results": [], "surplus": {deep}}}'.encode()) == "malformed"
    assert _reason(deep.encode()) == "malformed"


CONFIG = "monitor: {interval: 5s}\nprofiles: {room: {icmp: {}, sip: {}}}\npoints:\n" + "".join(
    f"  - {{id: p{i}, name: P{i}, host: 127.74.1.{i + 1}, profile: room}}\n" for i in range(4)
)


def _probes(t: Telemetry, probe: str, result: str) -> float:
    labels = {"probe": probe, "result": result}
    return t.registry.get_sample_value("confmon_probes_total", labels) or 0.0


def test_probe_counts_match_the_results_run_held_ones_included() -> None:
    """confmon_probes_total counts every result run (accepted or held by the other vantage),
    by probe and outcome, and nothing that was refused."""
    telemetry = Telemetry()
    ingest = Ingest(parse_inventory(CONFIG, "test.yaml"), lambda *a: None, telemetry)
    ingest.assign("a", ["p0", "p1", "p2"])
    ingest.assign("b", ["p2"])  # p2 from two vantages
    ingest.accept(
        ResultBatch(
            "b",
            1,
            NOW,
            (("p2", ProbeResult(probe="icmp", target="", ok=True, at=NOW, duration=0.01)),),
        ),
        NOW,
    )
    pairs = (
        ("p0", ProbeResult(probe="icmp", target="", ok=True, at=NOW, duration=0.01)),
        ("p0", ProbeResult(probe="sip", target="", ok=False, at=NOW, duration=0.01)),
        ("p1", ProbeResult(probe="icmp", target="", ok=False, at=NOW, duration=0.01)),
        (
            "p1",
            ProbeResult(probe="icmp", target="", ok=True, at=NOW - 1, duration=0.01),
        ),  # outdated: not run again
        (
            "p3",
            ProbeResult(probe="icmp", target="", ok=True, at=NOW, duration=0.01),
        ),  # not assigned to a
        (
            "p2",
            ProbeResult(probe="icmp", target="", ok=True, at=NOW + 0.5, duration=0.01),
        ),  # b says up: held
    )
    report = ingest.accept(ResultBatch("a", 1, NOW, pairs), NOW + 1)
    assert (report.accepted, report.held) == (3, 1)
    assert dict(report.rejected) == {"outdated": 1, "not_assigned": 1}
    assert _probes(telemetry, "icmp", "success") == 3  # b's p2, a's p0, a's p2 (held)
    assert _probes(telemetry, "icmp", "failure") == 1
    assert _probes(telemetry, "sip", "failure") == 1
    assert _probes(telemetry, "sip", "success") == 0


def test_a_result_that_names_a_target_is_refused() -> None:
    """The wire carries the point, not the host; a target would be shown as the host."""
    payload = json.loads(
        encode_batch(
            ResultBatch(
                "hn-01",
                1,
                NOW,
                (("p1", ProbeResult(probe="icmp", target="", ok=True, at=NOW, duration=0.1)),),
            )
        )
    )
    assert _reason(json.dumps(payload).encode()) == "accepted"
    payload["results"][0]["target"] = "10.0.0.1"
    assert _reason(json.dumps(payload).encode()) == "schema"
