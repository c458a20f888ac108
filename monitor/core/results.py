"""Probe results: what a probe returns, what agents send and what the health model reads.

The types live in the core, not in :mod:`monitor.probes`, because they cross
process boundaries: a result made by a probe in an agent travels over MQTT to
the server's ingest (:mod:`monitor.core.ingest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Phase", "ProbeResult", "result_json"]


@dataclass(frozen=True, slots=True)
class Phase:
    """One step a probe went through (e.g. ``connect``, ``tls``, ``first_byte``)."""

    name: str
    ok: bool
    seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe of one target.

    Times are in seconds, ``loss`` is a ratio 0..1. Fields a probe does not
    measure stay ``None``. ``details`` holds probe-specific facts (status code,
    server header, certificate days left, packets sent/received, ...).
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
    details: Mapping[str, Any] = field(default_factory=dict)


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
