"""The wire form of result batches: exact round trips, and one typed rejection for anything else."""

from __future__ import annotations

import json
import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.results import (
    MAX_BATCH_BYTES,
    Phase,
    ProbeResult,
    Rejected,
    ResultBatch,
    decode_batch,
    encode_batch,
)

NOW = 1_796_000_000.0


def result(probe: str = "sip", **kw: object) -> ProbeResult:
    fields: dict[str, object] = {
        "probe": probe,
        "target": "",
        "ok": True,
        "at": NOW,
        "duration": 0.01,
    }
    fields.update(kw)
    return ProbeResult(**fields)  # type: ignore[arg-type]


def batch(*results: tuple[str, ProbeResult], seq: int = 1) -> ResultBatch:
    return ResultBatch("hn-01", seq, NOW + 1, tuple(results))


def reason(data: bytes) -> str:
    try:
        decode_batch(data)
    except Rejected as exc:
        return exc.reason
    return "accepted"


def test_round_trip_keeps_every_field() -> None:
    """A batch read back from its wire form equals the original, phases and details included."""
    r = result(
        "icmp",
        rtt=0.012,
        rtt_min=0.01,
        rtt_max=0.015,
        jitter=0.002,
        loss=0.2,
        error=None,
        warning="SIP 503 Service Unavailable",
        phases=(Phase("resolve", True, 0.0, "127.0.0.1"), Phase("echo", False, None, "4/5")),
        details={"sent": 5, "rtts": [0.01, None, 0.015], "socket": "raw"},
    )
    media = result("media", mos=4.2, jitter=0.004, loss=0.0, ok=False, error="no echo")
    b = batch(("ba-vi", r), ("ba-vi.tan-linh", media), seq=1_764_578_000_123)
    back = decode_batch(encode_batch(b))
    assert (back.agent, back.seq, back.sent_at) == (b.agent, b.seq, b.sent_at)
    # read back as they were, but for the target: the wire does not carry the host
    assert [(p, _fields(x)) for p, x in back.results] == [
        ("ba-vi", {**_fields(r), "target": ""}),
        ("ba-vi.tan-linh", {**_fields(media), "target": ""}),
    ]


def _fields(r: ProbeResult) -> dict[str, object]:
    return {name: getattr(r, name) for name in ProbeResult.__struct_fields__}


def test_contract_fields_are_always_written() -> None:
    """Every result on the wire has point, probe, at, ok, rtt, jitter, loss, mos and error."""
    wire = json.loads(encode_batch(batch(("p", result()))))
    assert wire["v"] == 1 and wire["agent"] == "hn-01" and wire["seq"] == 1
    assert {"point", "probe", "at", "ok", "rtt", "jitter", "loss", "mos", "error"} <= set(
        wire["results"][0]
    )


def test_non_finite_figures_are_written_as_null() -> None:
    """NaN or infinity from a probe never makes an unreadable batch."""
    back = decode_batch(encode_batch(batch(("p", result(rtt=math.nan, loss=math.inf)))))
    assert back.results[0][1].rtt is None and back.results[0][1].loss is None


def good_json(**override: object) -> bytes:
    message: dict[str, object] = {
        "v": 1,
        "agent": "hn-01",
        "seq": 7,
        "sent_at": NOW,
        "results": [{"point": "p", "probe": "sip", "at": NOW, "ok": True, "rtt": 0.01}],
    }
    message.update(override)
    return json.dumps(message).encode()


def with_result(**override: object) -> bytes:
    r: dict[str, object] = {"point": "p", "probe": "sip", "at": NOW, "ok": True}
    r.update(override)
    return good_json(results=[r])


def test_rejections_have_reasons() -> None:
    """Each kind of bad payload is refused with its own reason, never another exception."""
    assert reason(good_json()) == "accepted"
    assert reason(b"") == "malformed"
    assert reason(b"\xff\xfe{") == "malformed"
    assert reason(good_json()[:-5]) == "malformed"
    assert reason(b"[1, 2]") == "malformed"
    assert reason(good_json(v=2)) == "version"
    assert reason(b'{"agent": "x"}') == "version"
    assert reason(good_json(extra=1)) == "schema"
    assert reason(good_json(agent="../other")) == "schema"
    assert reason(good_json(seq=-1)) == "schema"
    assert reason(good_json(results={"p": 1})) == "schema"
    assert reason(with_result(probe="ssh")) == "schema"
    assert reason(with_result(loss=1.5)) == "schema"
    assert reason(with_result(rtt=-0.001)) == "schema"
    assert reason(with_result(at=1_796_000_000_000)) == "schema"  # milliseconds, not seconds
    assert reason(with_result(ok="yes")) == "schema"
    assert reason(with_result(colour="red")) == "schema"
    assert reason(good_json().replace(b"0.01", b"NaN")) == "malformed"
    assert reason(b" " * (MAX_BATCH_BYTES + 1)) == "oversized"


def test_a_huge_array_is_refused_as_schema() -> None:
    """More results than one batch may carry is a schema error, decoded without building them."""
    many = [{"point": "p", "probe": "sip", "at": NOW, "ok": True}] * 20_001
    assert reason(good_json(results=many)) == "schema"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    """Any bytes give a batch or a Rejected."""
    reason(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_never_crashes(value: object) -> None:
    """Any JSON value gives a batch or a Rejected."""
    reason(json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["v", "agent", "seq", "sent_at", "results"]),
    json_values,
    st.integers(min_value=0, max_value=200),
)
def test_mutated_batches_never_crash(key: str, value: object, cut: int) -> None:
    """A valid batch with one field replaced by anything, or truncated anywhere, never crashes."""
    data = good_json(**{key: value})
    reason(data)
    reason(data[:cut])


def test_a_whole_cycle_fits_one_batch() -> None:
    """A 450-point cycle (900 results) decodes to 900 results."""
    b = batch(*((f"p{i}", result(at=time.time())) for i in range(900)))
    assert len(decode_batch(encode_batch(b)).results) == 900
