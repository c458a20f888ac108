"""Open-file descriptors: what a monitor needs, the soft limit raised to it, and a reserve for probing.

Why: every probe in flight holds a socket, and so does every connection to the
API. Under the usual service default (``ulimit -n 1024``) 1,100 idle connections
to the API took every descriptor the process had: probes failed with "Too many
open files" and 450 points went falsely down. So, at start (and on a reload
that needs more):

- the need is estimated from the inventory: one descriptor per socket probe a
  cycle of each point runs (tcp, http, sip, media; ICMP shares one engine per
  address family), never more than ``monitor.concurrency`` at once; plus the
  API's connection cap; plus the process itself (descriptors open now, and a
  margin for the event log's SQLite files, event loops and resolver threads);
- the soft ``RLIMIT_NOFILE`` is raised to that need, up to the hard limit (the
  administrator's ceiling: not raised even where root could); it is never lowered;
- when the hard limit is too low, one warning says so and what to set, and the
  API's cap shrinks so that probing keeps its share: strangers opening
  connections can only ever use the API's share, never the probes'.
"""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass

from monitor.inventory import Inventory

__all__ = [
    "MARGIN",
    "MIN_API_CONNECTIONS",
    "Budget",
    "Plan",
    "budget",
    "ensure_descriptors",
    "open_descriptors",
    "plan",
]

log = logging.getLogger("confmon")

#: descriptors kept for the process beyond those open at start: the event log's SQLite files
#: (database, WAL, shared memory), the probing thread's event loop, resolver threads' sockets
MARGIN = 128
#: the API's cap never shrinks below this, whatever the limit (the health checks must get in)
MIN_API_CONNECTIONS = 8
#: descriptors the API holds beyond its connections: the listening socket, and for a moment
#: a newcomer beside the idle connection closed to make room for it
API_OVERHEAD = 2
#: probes whose every run opens a socket of its own (ICMP shares the engine's)
_SOCKET_PROBES = ("tcp", "http", "sip", "media")
#: the ICMP engine: one socket per address family
_ICMP_ENGINE = 2


@dataclass(frozen=True)
class Budget:
    """Descriptors a monitor needs, by what needs them."""

    probes: int
    engines: int
    api: int
    process: int

    @property
    def total(self) -> int:
        return self.probes + self.engines + self.api + self.process

    @property
    def without_api(self) -> int:
        return self.total - self.api


@dataclass(frozen=True)
class Plan:
    """What to do about a budget under given limits (see :func:`plan`)."""

    #: the soft limit to set (``None``: leave it as it is)
    soft: int | None
    #: connections the API may hold
    api_connections: int
    #: the warning to log when the hard limit cannot cover the budget
    warning: str | None


def open_descriptors() -> int:
    """How many descriptors this process has open now (a guess of 64 where it cannot tell)."""
    for where in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(where))
        except OSError:
            continue
    return 64


def budget(
    inv: Inventory | None, *, api_connections: int, open_now: int, probing: bool = True
) -> Budget:
    """The descriptors ``inv`` needs when probed here (``probing``) with an API of that cap."""
    probes = engines = 0
    if inv is not None and probing:
        sockets = 0
        icmp = False
        for point in inv.points.values():
            profile = inv.profile_of(point)
            names = profile.probes()
            sockets += sum(1 for name in names if name in _SOCKET_PROBES)
            icmp = icmp or "icmp" in names
        probes = min(sockets, inv.settings.concurrency)
        engines = _ICMP_ENGINE if icmp else 0
    api = api_connections + API_OVERHEAD if api_connections > 0 else 0
    return Budget(probes=probes, engines=engines, api=api, process=open_now + MARGIN)


def plan(need: Budget, soft: int, hard: int) -> Plan:
    """How to meet ``need`` under the limits ``soft``/``hard`` (``resource.RLIM_INFINITY``: none)."""
    infinity = resource.RLIM_INFINITY
    wanted = need.total
    cap = need.api - API_OVERHEAD if need.api else 0
    if soft == infinity or soft >= wanted:
        return Plan(None, cap, None)
    if hard == infinity or hard >= wanted:
        return Plan(wanted, cap, None)
    # the hard limit is short: take all of it, and let the API give way to probing
    api_connections = cap
    if cap:
        room = hard - need.without_api - API_OVERHEAD
        api_connections = min(cap, max(MIN_API_CONNECTIONS, room))
    parts = [f"{need.probes + need.engines} for probes"]
    if cap:
        parts.append(f"{need.api} for the API's connections")
    parts.append(f"{need.process} for the process itself")
    if api_connections < cap:
        consequence = f"the API takes at most {api_connections} connections (--max-connections)"
    else:
        consequence = "the API keeps its cap"
    used = need.without_api + (api_connections + API_OVERHEAD if cap else 0)
    if used > hard:
        consequence += ", and probes may fail with 'Too many open files'"
    warning = (
        f"the open-file limit is {hard} but this inventory needs about {wanted} descriptors "
        f"({', '.join(parts)}); {consequence}. Raise the limit: LimitNOFILE={wanted} in the "
        f"systemd unit, or 'ulimit -n {wanted}' before starting"
    )
    return Plan(hard if soft < hard else None, api_connections, warning)


#: warnings already logged (a reload that changes nothing does not repeat one)
_warned: set[str] = set()


def ensure_descriptors(
    inv: Inventory | None,
    *,
    api_connections: int,
    probing: bool = True,
    open_now: int | None = None,
) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to what ``inv`` needs (see the module docstring).

    ``open_now``: the descriptors the process held before it started serving and probing
    (measured now if not given; pass the start-up figure on a reload, when probes and
    connections are open). Returns the connections the API may hold: ``api_connections``,
    or fewer when the hard limit is too low (then one warning is logged).
    """
    if open_now is None:
        open_now = open_descriptors()
    need = budget(inv, api_connections=api_connections, open_now=open_now, probing=probing)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    decided = plan(need, soft, hard)
    # The hard limit is the administrator's ceiling: not raised, even where root could.
    if decided.soft is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (decided.soft, hard))
        except (ValueError, OSError) as exc:  # not expected below the hard limit: said, not fatal
            log.warning("could not raise the open-file limit to %d: %s", decided.soft, exc)
    if decided.warning is not None and decided.warning not in _warned:
        _warned.add(decided.warning)
        log.warning("%s", decided.warning)
    return decided.api_connections
