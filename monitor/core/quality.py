"""Quality over a sliding window of recent packets: loss with a confidence bound, RTT, jitter, MOS.

One ICMP burst of 5 echoes with one lost is not "20 % loss": it is one packet in a
sample too small to say anything. So a point's quality is judged over every packet
of the last ``monitor.quality_window`` (60 s by default): ICMP echoes and media
packets together, for a room probed with the defaults 60 + 100 = 160 packets.

**Loss.** Entering ``degraded`` needs evidence: the lower end of the Wilson score
interval for the window's loss ratio, at 99 % confidence (z = 2.576), must be above
the loss threshold, with at least :data:`MIN_PACKETS` packets in the window. Leaving
needs the observed ratio back under the threshold less the clearing margin. With
the defaults (threshold 2 %, 160 packets a minute) that means:

==================  =============================  ==================================
true loss           lost in a 160-packet window    judged
==================  =============================  ==================================
0.5 %               0.8 on average                 not degraded (it needs 8: p ≈ 1e-5)
2 %                 3.2                            rarely (8 or more: p ≈ 1.7 %)
5 %                 8                              about half the time
10 %                16                             always (within one window)
==================  =============================  ==================================

and with ICMP alone (5 echoes every 5 s, 60 a minute) a single lost echo is never
enough: nothing is judged below 20 packets, at 20 the lower bound first passes 2 %
with 3 lost, at 60 with 4.

**RTT, jitter, MOS** are the means over the window's results, so one slow burst is
diluted by the minute around it. The RTT is ICMP's when the window has ICMP results
(timed by the kernel, one round trip), else the one-round-trip probes' (tcp, sip,
media); the jitter is the media path's (RFC 3550) when there is one, else ICMP's; the
MOS is the media path's. Entering uses the threshold, leaving needs a margin inside
it (:data:`CLEAR_MARGIN`), and :mod:`monitor.core.health` adds count hysteresis on top
(``fail_after`` bad cycles to enter, ``recover_after`` good ones to leave).

A point whose path comes back after an outage starts a new window: packets lost
during the outage say nothing about the repaired link.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import msgspec

from monitor.core.results import ProbeResult
from monitor.probes.registry import RTT_PROBES

__all__ = ["CLEAR_MARGIN", "MIN_PACKETS", "Verdict", "Window", "Z", "wilson"]

#: a degraded point clears only when each figure is this fraction inside its threshold
CLEAR_MARGIN: Final = 0.2
#: 99 % two-sided normal quantile of the loss confidence bound
Z: Final = 2.576
#: fewer packets than this in the window say nothing about loss
MIN_PACKETS: Final = 20


def wilson(lost: int, packets: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of a loss ratio: (lower, upper); (0, 1) with no packets."""
    if packets <= 0:
        return 0.0, 1.0
    p = lost / packets
    z2 = z * z
    centre = (p + z2 / (2 * packets)) / (1 + z2 / packets)
    half = z * math.sqrt(p * (1 - p) / packets + z2 / (4 * packets * packets)) / (1 + z2 / packets)
    return max(0.0, centre - half), min(1.0, centre + half)


# _Sample and Verdict are msgspec structs: one of each is made per result (per cycle), and
# a frozen dataclass's Python __init__ cost more than the rest of Window.add; gc=False, as
# they hold only numbers and strings


class _Sample(msgspec.Struct, frozen=True, gc=False):
    at: float
    probe: str
    packets: int
    lost: int
    rtt: float | None
    jitter: float | None
    mos: float | None


class Verdict(msgspec.Struct, frozen=True, gc=False):
    """The window's figures and what crossed a threshold."""

    rtt: float | None
    jitter: float | None
    loss: float | None
    mos: float | None
    packets: int
    crossed: tuple[str, ...]
    #: which figures crossed, as short names in a fixed order (``rtt``, ``jitter``, ``loss``,
    #: ``mos``): what a metric label may carry, where ``crossed`` is written for people
    kinds: tuple[str, ...] = ()


def _packets(r: ProbeResult) -> tuple[int, int]:
    """(sent, lost) of a result that has a loss figure."""
    details = r.details
    sent = details.get("sent") if details else None
    received = details.get("received") if details else None
    if isinstance(sent, int) and isinstance(received, int) and sent >= received >= 0:
        return sent, sent - received
    # a result without counts (from an older agent): one packet's worth of evidence
    return 1, 1 if (r.loss or 0.0) >= 0.5 else 0


@dataclass(slots=True)
class Window:
    """The recent packets of one point (see the module docstring).

    Running sums make :meth:`judge` cost the same whatever the window holds.
    """

    span: float
    #: probes whose results carry nothing the window would use (a sip result, whose RTT
    #: does not count when the point runs ICMP); skipping them keeps ingest cheap
    ignore: frozenset[str] = frozenset()
    samples: deque[_Sample] = field(default_factory=deque)
    packets: int = 0
    lost: int = 0
    #: [sum, count] of rtt for icmp, for the other one-round-trip probes; jitter for
    #: media, for the others; MOS
    _sums: list[list[float]] = field(default_factory=lambda: [[0.0, 0] for _ in range(5)])

    def add(self, r: ProbeResult) -> None:
        """Count a successful result's packets and figures (a failed one is the path's
        business: the reachability hysteresis judges it)."""
        if not r.ok or r.probe in self.ignore:
            return
        rtt, jitter, mos = r.rtt, r.jitter, r.mos
        if rtt is not None and r.details and r.details.get("retransmissions"):
            # Karn's rule: which copy of a retransmitted request was answered is unknowable,
            # so its round trip (counted from the first copy) is no sample of the path's
            # (right after an outage it showed as 250 ms and made rooms degraded)
            rtt = None
        if r.loss is None:
            if rtt is None and jitter is None and mos is None:
                return
            packets = lost = 0
        else:
            packets, lost = _packets(r)
        sample = _Sample(r.at, r.probe, packets, lost, rtt, jitter, mos)
        self.samples.append(sample)
        self._count(sample, 1)

    def _count(self, s: _Sample, sign: int) -> None:
        if s.packets:
            self.packets += sign * s.packets
            self.lost += sign * s.lost
        sums = self._sums
        if s.rtt is not None and s.probe in RTT_PROBES:
            slot = sums[0 if s.probe == "icmp" else 1]
            slot[0] += sign * s.rtt
            slot[1] += sign
        if s.jitter is not None:
            slot = sums[2 if s.probe == "media" else 3]
            slot[0] += sign * s.jitter
            slot[1] += sign
        if s.mos is not None:
            sums[4][0] += sign * s.mos
            sums[4][1] += sign

    def start_after(self, at: float) -> None:
        """Forget every packet sent before ``at`` (older than the window, or the path came
        back then)."""
        samples = self.samples
        while samples and samples[0].at < at:
            self._count(samples.popleft(), -1)
        if not samples:  # no float drift survives an empty window
            self.packets = self.lost = 0
            self._sums = [[0.0, 0] for _ in range(5)]

    def judge(
        self,
        now: float,
        rtt_max: float,
        jitter_max: float,
        loss_max: float,
        mos_min: float,
        *,
        clearing: bool,
    ) -> Verdict:
        """The figures over the window ending ``now``; ``clearing`` if the point is degraded."""
        self.start_after(now - self.span)
        sums = self._sums
        rtt = _mean(sums[0]) if sums[0][1] else _mean(sums[1])
        jitter = _mean(sums[2]) if sums[2][1] else _mean(sums[3])
        mos = _mean(sums[4])
        packets, lost = self.packets, self.lost
        loss = lost / packets if packets else None
        keep = 1.0 - CLEAR_MARGIN if clearing else 1.0
        crossed: list[str] = []
        kinds: list[str] = []
        if rtt is not None and rtt > rtt_max * keep:
            crossed.append(f"rtt {rtt * 1000:.0f} ms > {rtt_max * 1000:.0f} ms")
            kinds.append("rtt")
        if jitter is not None and jitter > jitter_max * keep:
            crossed.append(f"jitter {jitter * 1000:.0f} ms > {jitter_max * 1000:.0f} ms")
            kinds.append("jitter")
        if loss is not None and packets >= MIN_PACKETS:
            # entering needs the confidence bound above the threshold; leaving, the observed
            # ratio back under it by the margin
            # (the bound is below the ratio: a ratio under the threshold needs no bound)
            bad = (
                loss > loss_max * keep
                if clearing
                else loss > loss_max and wilson(lost, packets)[0] > loss_max
            )
            if bad:
                crossed.append(f"loss {loss:.1%} > {loss_max:.1%} ({lost} of {packets} packets)")
                kinds.append("loss")
        floor = mos_min + (CLEAR_MARGIN / 2 if clearing else 0.0)
        if mos is not None and mos < floor:
            crossed.append(f"MOS {mos:.2f} < {mos_min:.2f}")
            kinds.append("mos")
        return Verdict(rtt, jitter, loss, mos, packets, tuple(crossed), tuple(kinds))


def _mean(slot: list[float]) -> float | None:
    return slot[0] / slot[1] if slot[1] else None


def unused_probes(probes: list[str]) -> frozenset[str]:
    """The probes of a profile whose results the window need not keep.

    With ICMP, the RTT is ICMP's, so the other round-trip probes add nothing (they measure
    no loss, jitter or MOS); without it, they are the RTT. http's time to first byte is
    never held to the RTT threshold.
    """
    unused = {"http"}
    if "icmp" in probes:
        unused |= {"tcp", "sip"}
    return frozenset(unused)
