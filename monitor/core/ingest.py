"""The one entry for probe results, whatever brought them: the local scheduler or an agent.

Every batch passes the same checks, in this order, and every result in it is either
handed to the health model or counted as rejected with a reason (the ``reason``
label of ``confmon_results_rejected_total``):

==================  ==============================================================
reason              what it means
==================  ==============================================================
``oversized``       the payload is over :data:`~monitor.core.results.MAX_BATCH_BYTES`
``malformed``       not JSON, truncated, not an object, bad UTF-8
``version``         a wire version this server does not read
``schema``          wrong field names, types or ranges (a loss of 2, an RTT of -1)
``forged``          the batch names another agent than the topic it came on
``unknown_agent``   an agent with no assignment (not yet, or no longer, known)
``replayed``        a sequence number not above the last one accepted from that agent
``unknown_point``   a point the inventory does not have
``not_assigned``    a point that is not assigned to that agent
``outdated``        not newer than the last result of that point and probe (from that
                    agent, for a point probed from two vantages)
==================  ==============================================================

A point assigned to two agents (``replicas: 2``) is judged from two vantages:
:class:`~monitor.core.vantage.Vantages` decides which of their results reach the
health model (a failure only when every healthy vantage agrees). The others are
*held*: counted in ``confmon_probes_total`` like every probe run, but not judged.

An undecodable payload counts once (it has no results to count); a batch refused as
a whole (``forged``, ``unknown_agent``, ``replayed``) counts each of its results.

**The clock rule.** A result counts as taken at ``min(result.at, received_at)``:
its own time, but never later than when it reached us. A sender whose clock runs
ahead therefore cannot make a point look fresher than it is, and results that
waited in an agent's buffer keep their real (old) time: they update a point's
history but cannot make it fresh again (:meth:`HealthModel.ingest` ignores, for the
state, results older than ``stale_after``). "Newer than the last one" compares a
result's own time with the clamped time of the last accepted one, so a sender whose
clock is corrected backwards is not locked out for the size of its error.

Telemetry is counted here, so it is the same in every mode: ``confmon_probes_total``
per accepted result, and ``confmon_cycle_duration_seconds`` per point and batch, from
the results' own times (first start to last end).
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from monitor.core.results import ProbeResult, Rejected, ResultBatch, decode_batch
from monitor.core.vantage import Vantages
from monitor.inventory import Inventory
from monitor.outputs.metrics import Telemetry

__all__ = ["REJECT_REASONS", "Ingest", "IngestReport", "ResultSink"]

log = logging.getLogger(__name__)

#: every ``reason`` of ``confmon_results_rejected_total`` (the table above)
REJECT_REASONS = (
    "oversized",
    "malformed",
    "version",
    "schema",
    "forged",
    "unknown_agent",
    "replayed",
    "unknown_point",
    "not_assigned",
    "outdated",
)

_OUTCOME = operator.attrgetter("probe", "ok")

#: what the health side receives: point id, its results, when they were taken (the clock
#: rule above), and when they arrived
ResultSink = Callable[[str, list[ProbeResult], float, float], None]


@dataclass
class IngestReport:
    """What happened to one message: results accepted, and rejected by reason."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: results of a replicated point that another vantage's results outweighed
    held: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.held + sum(self.rejected.values())


class Ingest:
    """Checks results and hands the good ones to ``sink`` (see the module docstring)."""

    def __init__(
        self,
        inv: Inventory,
        sink: ResultSink,
        telemetry: Telemetry,
        vantages: Vantages | None = None,
    ) -> None:
        self._sink = sink
        self.vantages = vantages or Vantages(fresh=2 * inv.settings.interval)
        self._set_freshness(inv)
        #: point -> the agents assigned it, for the points assigned to more than one
        self._peers: dict[str, tuple[str, ...]] = {}
        self._telemetry = telemetry
        self._points: Mapping[str, object] = inv.points
        #: agent -> the points it may report (None: every point, for the local scheduler)
        self._assigned: dict[str, frozenset[str] | None] = {}
        self._last_seq: dict[str, int] = {}
        self._last_at: dict[str, dict[str, float]] = {}
        # the labelled children, looked up once: prometheus_client's labels() takes a lock
        # and builds a key on every call, which per result was most of this method's time
        self._counted: dict[tuple[str, bool], Callable[[float], None]] = {}

    # --- who may send what ---------------------------------------------------------------

    def set_inventory(self, inv: Inventory) -> None:
        """After a reload: results for points no longer in ``inv`` are refused from now on."""
        self._points = inv.points
        self._last_at = {k: v for k, v in self._last_at.items() if k in inv.points}
        self._set_freshness(inv)

    def _set_freshness(self, inv: Inventory) -> None:
        """How long another vantage's result overrules a failure: two intervals, plus the
        probe's own period for media (it runs every ``media.every``)."""
        two = 2 * inv.settings.interval
        self.vantages.fresh = two
        self.vantages.loss_limit = inv.thresholds.loss
        every = [p.media.every for p in inv.profiles.values() if p.media is not None]
        self.vantages.fresh_for = {"media": max(every) + two} if every else {}

    def assign(self, agent: str, points: Iterable[str] | None) -> None:
        """Let ``agent`` report ``points`` (``None``: every point of the inventory)."""
        self._assigned[agent] = None if points is None else frozenset(points)
        self._update_peers()

    def unassign(self, agent: str) -> None:
        """Refuse everything from ``agent`` from now on (its sequence is forgotten too)."""
        self._assigned.pop(agent, None)
        self._last_seq.pop(agent, None)
        self.vantages.forget(agent)
        self._update_peers()

    def _update_peers(self) -> None:
        holders: dict[str, list[str]] = {}
        for agent, points in self._assigned.items():
            for pid in points or ():
                holders.setdefault(pid, []).append(agent)
        self._peers = {p: tuple(sorted(a)) for p, a in holders.items() if len(a) > 1}
        self.vantages.retain(self._peers)

    def agents(self) -> dict[str, frozenset[str] | None]:
        """The current assignment: agent -> its points (``None`` for all)."""
        return dict(self._assigned)

    # --- messages in ---------------------------------------------------------------------

    def accept_bytes(
        self, data: bytes, received_at: float, *, agent: str | None = None
    ) -> IngestReport:
        """Decode and accept one wire message; ``agent`` is who the transport says sent it."""
        try:
            batch = decode_batch(data)
        except Rejected as exc:
            log.debug("rejected a message from %s: %s", agent or "?", exc)
            return self._reject_all(exc.reason, 1)
        if agent is not None and batch.agent != agent:
            log.warning("agent %s sent a batch in the name of %r; dropped", agent, batch.agent)
            return self._reject_all("forged", len(batch.results))
        return self.accept(batch, received_at)

    def accept(self, batch: ResultBatch, received_at: float) -> IngestReport:
        """Accept one batch: check it, then hand each point's results to the sink."""
        if batch.agent not in self._assigned:
            return self._reject_all("unknown_agent", len(batch.results))
        last = self._last_seq.get(batch.agent)
        if last is not None and batch.seq <= last:
            return self._reject_all("replayed", len(batch.results))
        self._last_seq[batch.agent] = batch.seq
        agent = batch.agent
        allowed = self._assigned[agent]
        points, last_at, peers = self._points, self._last_at, self._peers
        report = IngestReport()
        rejected = report.rejected
        by_point: dict[str, list[ProbeResult]] = {}
        held: list[ProbeResult] = []
        # an agent sends a point's results together (a cycle is never split), so what is
        # looked up per point is looked up once per run of results of the same point
        current: str | None = None
        refused: str | None = None
        shared: tuple[str, ...] | None = None
        times: dict[str, float] = {}
        results: list[ProbeResult] = []
        for pid, r in batch.results:
            if pid != current:
                current = pid
                if pid not in points:
                    refused = "unknown_point"
                elif allowed is not None and pid not in allowed:
                    refused = "not_assigned"
                else:
                    refused = None
                    shared = peers.get(pid)
                    # point -> probe (probe@agent for a point probed from two vantages) -> time
                    times = last_at.setdefault(pid, {})
                    results = by_point.setdefault(pid, [])
            if refused is not None:
                rejected[refused] += 1
                continue
            probe = r.probe if shared is None else f"{r.probe}@{agent}"
            at = r.at
            previous = times.get(probe)
            if previous is not None and at <= previous:
                rejected["outdated"] += 1
                continue
            times[probe] = at if at < received_at else received_at
            if shared is not None and not self.vantages.admit(agent, pid, r, shared):
                held.append(r)
                continue
            results.append(r)
        report.held = len(held)
        # (probe, ok) -> results run (held ones too), counted in C and once per batch: an
        # increment of a prometheus_client counter takes a lock, which per result was a
        # tenth of ingest
        tally = Counter(map(_OUTCOME, itertools.chain(held, *by_point.values())))
        counted = self._counted
        for (probe, ok), n in tally.items():
            inc = counted.get((probe, ok))
            if inc is None:
                inc = self._counter(probe, ok)
            inc(n)
        durations: list[float] = []
        sink = self._sink
        accepted = 0
        for pid, results in by_point.items():
            if not results:  # every result of that point was refused or held
                continue
            accepted += len(results)
            first = newest = last_end = results[0].at
            for r in results:
                at = r.at
                if at < first:
                    first = at
                if at > newest:
                    newest = at
                if at + r.duration > last_end:
                    last_end = at + r.duration
            taken = newest if newest < received_at else received_at
            durations.append(last_end - first if last_end > first else 0.0)
            try:
                sink(pid, results, taken, received_at)
            except Exception:  # a consumer's bug must not lose the other points' results
                log.exception("handling the results of %s failed", pid)
        report.accepted = accepted
        self._telemetry.cycle_duration.observe_many(durations)
        for reason, n in rejected.items():
            self._telemetry.rejected.labels(reason).inc(n)
        return report

    def _counter(self, probe: str, ok: bool) -> Callable[[float], None]:
        inc: Callable[[float], None] = self._telemetry.probes.labels(
            probe, "success" if ok else "failure"
        ).inc
        self._counted[(probe, ok)] = inc
        return inc

    def _reject_all(self, reason: str, n: int) -> IngestReport:
        report = IngestReport()
        if n:
            report.rejected[reason] = n
            self._telemetry.rejected.labels(reason).inc(n)
        return report
