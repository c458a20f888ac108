"""The probe registry: one module per protocol, one signature, one mapping.

Every probe is ``async def probe(target, settings, ctx) -> ProbeResult`` and is
registered in :data:`PROBES` under the name used in profiles and in the
``probe`` label of the metrics. Adding a protocol is one module, one entry here,
one settings class in :mod:`monitor.inventory.model` and one test file.
"""

from __future__ import annotations

from typing import Any

from monitor.probes import http, icmp, media, sip, tcp
from monitor.probes.base import ProbeFn

__all__ = ["PROBES", "deadline_of"]

PROBES: dict[str, ProbeFn] = {
    "icmp": icmp.probe,
    "tcp": tcp.probe,
    "http": http.probe,
    "sip": sip.probe,
    "media": media.probe,
}


def deadline_of(probe: str, settings: Any) -> float:
    """The longest a probe with these settings may take, in seconds (its one deadline)."""
    if probe == "icmp":
        return float((settings.count - 1) * settings.spacing + settings.timeout)
    if probe == "media":
        return float((settings.packets - 1) * settings.pacing + settings.timeout)
    return float(settings.timeout)
