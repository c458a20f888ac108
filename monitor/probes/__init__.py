"""The probes (ICMP, TCP, HTTP, SIP OPTIONS, UDP media); see :mod:`monitor.probes.registry`.

Importing this package is cheap: each protocol module is imported by the
registry, not here. The registry itself does not load aiohttp either (only the
first HTTP probe does), so tools that only read configs stay quick.
"""

from monitor.probes.base import Phase, ProbeContext, ProbeFn, ProbeResult

__all__ = ["Phase", "ProbeContext", "ProbeFn", "ProbeResult"]
