"""The probe registry: one :class:`~monitor.probes.spec.ProbeSpec` per protocol, in one list.

Every probe is ``async def probe(target, settings, ctx) -> ProbeResult``, declared
with its settings model and what its results mean by the ``SPEC`` of its module.
:data:`SPECS` lists them in canonical order, the order of a profile's fields and
of every table derived here. Adding a protocol is one module (its settings model,
its probe and its ``SPEC``), one entry in :data:`SPECS` and one test file; the
inventory's profiles, the metric series, the health model's rtt rule, the
scheduler and ``confmon probe`` follow from the spec.

Importing this module does not import aiohttp (the http entry is
:mod:`monitor.probes.httpspec`, whose probe loads :mod:`monitor.probes.http` on
first use): the inventory model builds its profiles from it, and
``confmon check-config`` must stay quick.
"""

from __future__ import annotations

from typing import Any

from monitor.probes import httpspec, icmp, media, sip, tcp
from monitor.probes.base import ProbeFn
from monitor.probes.spec import ProbeSpec

__all__ = [
    "MEASURES",
    "PROBES",
    "PROBE_TYPES",
    "REACHABILITY_PROBES",
    "RTT_PROBES",
    "SEPARATE",
    "SPECS",
    "deadline_of",
]

SPECS: dict[str, ProbeSpec[Any]] = {
    spec.name: spec for spec in (icmp.SPEC, tcp.SPEC, httpspec.SPEC, sip.SPEC, media.SPEC)
}
"""Every probe by name, in canonical order."""

PROBE_TYPES: tuple[str, ...] = tuple(SPECS)
"""The probe names, in canonical order (a profile's fields, ``confmon probe TYPE``)."""

PROBES: dict[str, ProbeFn] = {name: spec.probe for name, spec in SPECS.items()}
"""The probe functions by name (the scheduler's default registry)."""

MEASURES: dict[str, tuple[str, ...]] = {name: spec.measures for name, spec in SPECS.items()}
"""Which of rtt/jitter/loss/mos each probe reports."""

RTT_PROBES: frozenset[str] = frozenset(
    name for name, spec in SPECS.items() if "rtt" in spec.measures and spec.rtt_is_round_trip
)
"""Probes whose rtt is one network round trip, so the rtt threshold applies to it."""

REACHABILITY_PROBES: tuple[str, ...] = tuple(name for name, spec in SPECS.items() if spec.can_reach)
"""Probes that prove a point is reachable when a profile gives no ``reachable_by``."""

SEPARATE: tuple[str, ...] = tuple(name for name, spec in SPECS.items() if spec.period is not None)
"""Probes with a period of their own (:meth:`ProbeSpec.own_period`), not run every interval."""


def deadline_of(probe: str, settings: Any) -> float:
    """The longest a probe with these settings may take, in seconds (its one deadline)."""
    return float(SPECS[probe].deadline(settings))
