"""The probes (ICMP, TCP, HTTP, SIP OPTIONS, UDP media); see :mod:`monitor.probes.registry`.

Importing this package is cheap: each protocol module is imported by the
registry, not here, so tools that only read configs do not load aiohttp.
"""

from monitor.probes.base import Phase, ProbeContext, ProbeFn, ProbeResult

__all__ = ["Phase", "ProbeContext", "ProbeFn", "ProbeResult"]
