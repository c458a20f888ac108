"""What a probe declares about itself: one :class:`ProbeSpec` per protocol module.

Each protocol module (``icmp``, ``tcp``, ...) ends with a module-level ``SPEC``;
:mod:`monitor.probes.registry` lists them, and every table that used to name
probes one by one (the profile's fields, the metric series, the rtt threshold,
the scheduler's own-period probes, ``confmon probe``) is derived from those specs.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from monitor.core.results import ProbeResult
from monitor.probes.base import ProbeContext

__all__ = ["MEASURE_NAMES", "ProbeSpec", "timeout_deadline"]

MEASURE_NAMES = ("rtt", "jitter", "loss", "mos")
"""The figures of a :class:`~monitor.core.results.ProbeResult` a probe may report, in this order."""

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSpec(Generic[S]):
    """One probe: its name, settings model, function and what its results mean.

    What a caller may rely on: ``name`` is the profile key, the ``probe`` label of
    the metrics and :attr:`ProbeResult.probe`; ``settings`` validates the profile's
    mapping for it; ``probe(target, settings, ctx)`` never takes longer than
    ``deadline(settings)`` seconds (give or take event-loop lateness); ``measures``
    lists the figures its results carry, in :data:`MEASURE_NAMES` order.
    """

    name: str
    settings: type[S]
    """The pydantic model of the probe's settings (the profile's ``<name>:`` mapping)."""
    probe: Callable[[str, S, ProbeContext], Awaitable[ProbeResult]]
    deadline: Callable[[S], float]
    """The longest a probe with these settings may take, in seconds (its one deadline)."""
    measures: tuple[str, ...]
    """Which of :data:`MEASURE_NAMES` its results report (a stable set of series per point)."""
    rtt_is_round_trip: bool = True
    """False when ``rtt`` spans several round trips (http: time to first byte), so the
    rtt threshold does not apply to it."""
    can_reach: bool = False
    """May decide reachability: the default ``reachable_by`` is the probes with this set."""
    can_require: bool = True
    """May be a required probe of a service."""
    period: Callable[[S], float] | None = None
    """The probe's own period (media: ``settings.every``); None runs it every ``interval``."""
    takes_port: bool = True
    """Whether a target may carry a port (``host:port``) for it; icmp has none."""
    settings_from_url: Callable[[str], tuple[str, dict[str, Any]]] | None = None
    """For probes whose target may be a URL (http): the URL's host and the settings it
    implies; raises :class:`ValueError` for a URL the probe cannot take."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"probe name {self.name!r}: lower-case letters, digits and '_'")
        if self.measures != tuple(m for m in MEASURE_NAMES if m in self.measures):
            raise ValueError(
                f"probe {self.name!r} measures {self.measures}: a subset of {MEASURE_NAMES},"
                " in that order"
            )

    def own_period(self, settings: S) -> float | None:
        """Seconds between this probe's runs with these settings; None: every ``interval``."""
        return None if self.period is None else self.period(settings)


def timeout_deadline(settings: Any) -> float:
    """The deadline of a probe whose whole run is bounded by ``settings.timeout`` (tcp,
    http from DNS to the last body byte, sip with its retransmissions inside it)."""
    return float(settings.timeout)
