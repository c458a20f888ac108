"""Probe results: what a probe returns, what agents send and what the health model reads.

The types live in the core, not in :mod:`monitor.probes`, because they cross
process boundaries: a result made by a probe in an agent travels over MQTT to
the server's ingest (:mod:`monitor.core.ingest`).

The wire form (contract, ``confmon/v1/agents/{agent}/results``) is one JSON
object per *batch*::

    {"v": 1, "agent": "hn-01", "seq": 1764578000123, "sent_at": 1764578001.2,
     "results": [{"point": "ba-vi", "probe": "sip", "at": 1764578000.9, "ok": true,
                  "rtt": 0.012, "jitter": null, "loss": null, "mos": null, "error": null}]}

Besides the contract's fields a result may carry ``duration``, ``rtt_min``,
``rtt_max``, ``warning``, ``phases`` and ``details`` (what ``confmon probe``
prints), all optional; agents send phases and details with the results that are news
(:class:`Describer`). :func:`decode_batch` is strict: unknown keys, wrong
types, values out of range (a negative RTT, a loss above 1, NaN), an unknown
probe name or a payload over :data:`MAX_BATCH_BYTES` are a :class:`Rejected`
with a short ``reason`` (the ``reason`` label of
``confmon_results_rejected_total``), never an exception of another kind.
msgspec does the decoding and the validation in one pass, in C: three (results with
phases and details, as the probes make them) to eight (the contract's fields only) times
faster than ``json.loads`` alone, before any check; results and their phases are read
straight into the :class:`ProbeResult` and :class:`Phase` structs the health model keeps.
docs/benchmarks.md ("Agents over MQTT") has the figures.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec

__all__ = [
    "DESCRIBE_EVERY",
    "JUDGED_DETAILS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RESULTS",
    "WIRE_VERSION",
    "Describer",
    "Phase",
    "ProbeResult",
    "Rejected",
    "ResultBatch",
    "decode_batch",
    "encode_batch",
    "result_json",
    "undescribed",
]


_Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)]
_Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_Mos = Annotated[float, msgspec.Meta(ge=1.0, le=5.0)]
_Text = Annotated[str, msgspec.Meta(max_length=1000)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: Unix seconds between 2001 and 2286: catches milliseconds and zeros sent as seconds
_Time = Annotated[float, msgspec.Meta(gt=1e9, lt=1e10)]
_AgentId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_Scalar = str | int | float | bool | None
_ProbeName = Literal["icmp", "tcp", "http", "sip", "media"]


# Phase and ProbeResult are msgspec structs, not dataclasses: a frozen dataclass sets each
# field through object.__setattr__ in a Python __init__ (about 2 us for a result's 15
# fields), a struct in C (0.13 us). Every probe run makes one, and the server makes one
# for every result it reads. gc=False: they hold only scalars, strings, a tuple of
# phases and a details mapping of JSON values, so they cannot be part of a reference
# cycle, and the garbage collector need not scan the thousands the health model keeps.


class Phase(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One step a probe went through (e.g. ``connect``, ``tls``, ``first_byte``).

    The limits are the wire's (:func:`decode_batch` reads phases straight into this type);
    msgspec checks them only when it decodes.
    """

    name: _Name
    ok: bool
    seconds: _Seconds | None = None
    detail: _Text = ""


class ProbeResult(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """The outcome of one probe of one target (made with keywords only).

    Times are in seconds, ``loss`` is a ratio 0..1. Fields a probe does not
    measure stay ``None``. ``details`` holds probe-specific facts (status code,
    server header, certificate days left, packets sent/received, ...). A result
    read from the wire has an empty ``target``: the wire does not repeat the
    point's host, which the server knows.
    """

    probe: str
    target: str
    ok: bool
    at: float
    duration: float
    rtt: float | None = None
    rtt_min: float | None = None
    rtt_max: float | None = None
    jitter: float | None = None
    loss: float | None = None
    mos: float | None = None
    error: str | None = None
    #: the probe succeeded but found something an operator must see (e.g. SIP 503):
    #: the health model counts the point reachable and shows it ``degraded``
    warning: str | None = None
    phases: tuple[Phase, ...] = ()
    details: Mapping[str, Any] = {}


def _plain(value: Any) -> Any:
    """A details value as JSON can carry it (scalars and lists of them; anything else as text)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def result_json(r: ProbeResult) -> dict[str, Any]:
    """A result as the API, ``confmon probe --json`` and agents write it."""
    return {
        "probe": r.probe,
        "target": r.target,
        "ok": r.ok,
        "at": r.at,
        "duration": r.duration,
        "rtt": r.rtt,
        "rtt_min": r.rtt_min,
        "rtt_max": r.rtt_max,
        "jitter": r.jitter,
        "loss": r.loss,
        "mos": r.mos,
        "error": r.error,
        "warning": r.warning,
        "phases": [
            {"name": p.name, "ok": p.ok, "seconds": p.seconds, "detail": p.detail} for p in r.phases
        ],
        "details": {k: _plain(v) for k, v in r.details.items()},
    }


# --- described and undescribed results ----------------------------------------------------

#: the details the server's health model reads (:mod:`monitor.core.quality`: packets sent
#: and received for the loss over the window; SIP retransmissions, whose round trip is no
#: sample of the path's): an undescribed result keeps them
JUDGED_DETAILS: Final = ("sent", "received", "retransmissions")
#: how often an agent sends each probe's phases and details when nothing changes (seconds)
DESCRIBE_EVERY: Final = 60.0


def undescribed(r: ProbeResult) -> ProbeResult:
    """``r`` without its phases and without the details the server does not judge by."""
    details = r.details
    kept = {k: details[k] for k in JUDGED_DETAILS if k in details} if details else {}
    return msgspec.structs.replace(r, phases=(), details=kept)


class Describer:
    """Which results an agent sends with their phases and details.

    Phases and details are what a person reads (``confmon probe`` prints them; the
    dashboard shows a point's latest phases); the health model needs none of them but the
    packet counts (:data:`JUDGED_DETAILS`). They are three quarters of a result on the
    wire (629 bytes of an ICMP or SIP result as the probes make it, 175 without), and
    reading them was most of the server's cost of a result. So a result goes out
    *described* when it is news: it failed, its outcome or warning differs from the
    last described one of that point and probe, or ``every`` seconds have passed since
    then (a heartbeat); otherwise undescribed. ``every`` 0 describes every result. The
    server keeps each probe's last described result beside its latest one.
    """

    def __init__(self, every: float = DESCRIBE_EVERY) -> None:
        self.every = every
        #: (point, probe) -> the outcome, warning and time of its last described result
        self._last: dict[tuple[str, str], tuple[bool, str | None, float]] = {}

    def __call__(self, point: str, r: ProbeResult) -> ProbeResult:
        key = (point, r.probe)
        last = self._last.get(key)
        if (
            self.every <= 0
            or not r.ok
            or last is None
            or last[0] is not r.ok
            or last[1] != r.warning
            or not 0 <= r.at - last[2] < self.every  # a heartbeat, or the clock went back
        ):
            # the first heartbeat of a probe comes early by a share of the period that is
            # its own (a hash of point and probe): an agent that starts with every point
            # described does not send them all described again at once a period later
            early = self.every * (zlib.crc32(f"{point}/{r.probe}".encode()) % 997) / 997
            self._last[key] = (r.ok, r.warning, r.at - early if last is None else r.at)
            return r
        return undescribed(r)

    def forget(self, keep: set[str] | frozenset[str]) -> None:
        """Drop what is remembered of points not in ``keep`` (a new assignment)."""
        self._last = {k: v for k, v in self._last.items() if k[0] in keep}


# --- the wire form ------------------------------------------------------------------------

WIRE_VERSION: Final = 1
#: a batch larger than this is refused unread (a broker's default limit is far higher)
MAX_BATCH_BYTES: Final = 4 << 20
#: results in one batch at most (an agent of 10,000 points sends a cycle in a few batches)
MAX_BATCH_RESULTS: Final = 20_000


# gc=False: the structs a batch is read into are not tracked by the garbage collector. They
# hold only what JSON can carry (no reference back to them, so no cycle) and live as long
# as one decode_batch; tracked, the thousands of them kept alive while a batch is read
# were scanned again by every collection (about a sixth of decoding in a server's heap)


class _WireResult(ProbeResult, kw_only=True, forbid_unknown_fields=True, frozen=True, gc=False):
    """A result as read: the contract's fields (the measurements may be absent) and extras,
    with the wire's limits. It *is* a :class:`ProbeResult` (and the point it is of), so
    what msgspec reads in C goes to the health model as it is."""

    point: _Name
    probe: _ProbeName
    #: not on the wire: a result that names one is refused (the server knows the host)
    target: Literal[""] = ""
    at: _Time
    ok: bool
    rtt: _Seconds | None = None
    jitter: _Seconds | None = None
    loss: _Ratio | None = None
    mos: _Mos | None = None
    error: _Text | None = None
    duration: _Seconds = 0.0
    rtt_min: _Seconds | None = None
    rtt_max: _Seconds | None = None
    warning: _Text | None = None
    phases: Annotated[tuple[Phase, ...], msgspec.Meta(max_length=32)] = ()
    details: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=64)], _Scalar | list[_Scalar]],
        msgspec.Meta(max_length=64),
    ] = {}


class _OutResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """A result as written: every contract field always present, extras only when set."""

    point: str
    probe: str
    at: float
    ok: bool
    rtt: float | None
    jitter: float | None
    loss: float | None
    mos: float | None
    error: str | None
    duration: float = 0.0
    rtt_min: float | None = None
    rtt_max: float | None = None
    warning: str | None = None
    phases: tuple[Phase, ...] = ()
    details: dict[str, _Scalar | list[_Scalar]] = {}


class _OutBatch(msgspec.Struct, frozen=True):
    v: int
    agent: str
    seq: int
    sent_at: float
    results: list[_OutResult]


class _WireBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    v: int
    agent: _AgentId
    seq: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
    sent_at: _Time
    results: Annotated[list[_WireResult], msgspec.Meta(max_length=MAX_BATCH_RESULTS)]


class _Envelope(msgspec.Struct):
    """Only the version: read first, so a v2 batch is refused as a version, not a schema error."""

    v: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_wire = msgspec.json.Decoder(_WireBatch).decode
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class ResultBatch:
    """Results of one sender, in the order they were made: ``(point id, result)`` pairs.

    ``seq`` increases with every batch of one agent (across its restarts too: agents
    start from the Unix time in milliseconds); ``sent_at`` is the sender's clock.
    """

    agent: str
    seq: int
    sent_at: float
    results: tuple[tuple[str, ProbeResult], ...]


@dataclass(frozen=True, slots=True)
class Rejected(Exception):
    """A payload that is not a valid batch. ``reason`` is a metric label, ``detail`` for logs."""

    reason: Literal["oversized", "malformed", "version", "schema"]
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _to_wire(point: str, r: ProbeResult) -> _OutResult:
    return _OutResult(
        point=point,
        probe=r.probe,
        at=r.at,
        ok=r.ok,
        rtt=_finite(r.rtt),
        jitter=_finite(r.jitter),
        loss=_finite(r.loss),
        mos=_finite(r.mos),
        error=r.error[:1000] if r.error else r.error,
        duration=min(max(r.duration, 0.0), 3600.0),
        rtt_min=_finite(r.rtt_min),
        rtt_max=_finite(r.rtt_max),
        warning=r.warning[:1000] if r.warning else r.warning,
        phases=tuple(
            Phase(p.name[:200], p.ok, _finite(p.seconds), p.detail[:1000]) for p in r.phases[:32]
        ),
        details={k[:64]: _plain(v) for k, v in list(r.details.items())[:64]},
    )


def encode_batch(batch: ResultBatch) -> bytes:
    """The JSON wire form of a batch (what :func:`decode_batch` reads back)."""
    return _encoder.encode(
        _OutBatch(
            v=WIRE_VERSION,
            agent=batch.agent,
            seq=batch.seq,
            sent_at=batch.sent_at,
            results=[_to_wire(point, r) for point, r in batch.results],
        )
    )


def decode_batch(data: bytes) -> ResultBatch:
    """A batch from its wire form; raises :class:`Rejected` for anything else. Its results
    have an empty :attr:`ProbeResult.target` (the wire does not carry it)."""
    if len(data) > MAX_BATCH_BYTES:
        raise Rejected("oversized", f"{len(data)} bytes > {MAX_BATCH_BYTES}")
    try:
        # a good batch is parsed once; only a payload that fails is read again, version
        # first, so that it is refused for the same reason as when the version is read first
        wire = _decode_wire(data)
    except msgspec.DecodeError:
        try:
            why = _why_not(data)
        except RecursionError:
            why = Rejected("malformed", _TOO_DEEP)
        raise why from None
    except RecursionError:
        raise Rejected("malformed", _TOO_DEEP) from None
    if wire.v != WIRE_VERSION:
        raise Rejected("version", f"v={wire.v!r}; this server reads v={WIRE_VERSION}")
    results = tuple([(w.point, w) for w in wire.results])
    return ResultBatch(wire.agent, wire.seq, wire.sent_at, results)


#: msgspec reads nested arrays and objects recursively: a payload of a few thousand
#: opening brackets raises RecursionError, which is one more malformed message
_TOO_DEEP = "nested too deeply"


def _why_not(data: bytes) -> Rejected:
    """Why ``data`` is not a batch: malformed, then version, then schema (in that order)."""
    try:
        version = _decode_envelope(data).v
    except msgspec.DecodeError as exc:
        # not JSON, not an object, truncated, bad UTF-8: all "malformed"
        return Rejected("malformed", str(exc)[:200])
    if version != WIRE_VERSION:
        return Rejected("version", f"v={version!r}; this server reads v={WIRE_VERSION}")
    try:
        _decode_wire(data)
    except msgspec.ValidationError as exc:
        return Rejected("schema", str(exc)[:200])
    except msgspec.DecodeError as exc:
        return Rejected("malformed", str(exc)[:200])
    return Rejected("schema", "not a batch")  # not reached: it failed to decode just before
