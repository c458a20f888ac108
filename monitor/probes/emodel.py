"""Voice quality estimate (R-factor and MOS): the Cole-Rosenbluth heuristic, *not* ITU-T G.107.

The full ITU-T G.107 E-model computes the delay impairment Id from talker and
listener echo (TELR, WEPL) and absolute delay, and the equipment impairment
Ie,eff from the codec's Ie and Bpl (ITU-T G.113) and the loss pattern's burst
ratio. This module does none of that. It is the reduced *heuristic* popularised
by Cole & Rosenbluth, "Voice over IP performance monitoring" (ACM SIGCOMM
Computer Communication Review 31(2), 2001): a straight-line fit of G.107's delay
curve for G.711 with default echo parameters, and a linear 2.5 R-points per percent
of random loss, from G.107's default R of 93.2. It assumes G.711 with random (not
bursty) loss and ignores the codec; its MOS is an indication for comparing rooms
and seeing trends, not a G.107 figure. The formulas (every time in
**milliseconds**, loss in **percent**)::

    effective = latency + 2 * jitter + 10
    R = 93.2 - effective / 40            if effective < 160
    R = 93.2 - (effective - 120) / 10    otherwise
    R = R - 2.5 * loss
    R = clamp(R, 0, 100)
    MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)      (G.107 Annex B), clamped to 1..4.5

``latency`` is the **one-way** delay. A probe that only sees round trips
(the media probe) passes RTT / 2, which assumes a symmetric path.

What a caller may rely on: pure functions, no I/O; R is within 0..100 and MOS
within 1..4.5; MOS never increases when latency, jitter or loss increase (the
final clamp also hides the G.107 polynomial's small dip below 1 for R < 6.5).
A perfect path scores R 92.95 / MOS ≈ 4.40, the ceiling for G.711.
Negative or non-finite inputs are bugs in the caller and raise ``ValueError``.
"""

from __future__ import annotations

import math

__all__ = ["mos", "mos_from_r", "r_factor"]


def _check(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def r_factor(latency_ms: float, jitter_ms: float, loss_percent: float) -> float:
    """Transmission rating R (0..100) from one-way latency, jitter (ms) and loss (percent)."""
    _check("latency_ms", latency_ms)
    _check("jitter_ms", jitter_ms)
    _check("loss_percent", loss_percent)
    # Jitter counts double: a jitter buffer sized to absorb it adds that much delay.
    effective = latency_ms + 2.0 * jitter_ms + 10.0
    # Past ~160 ms conversation turns collide: the delay impairment grows four times faster.
    delay_impairment = effective / 40.0 if effective < 160.0 else (effective - 120.0) / 10.0
    r = 93.2 - delay_impairment - 2.5 * loss_percent
    return min(100.0, max(0.0, r))


def mos_from_r(r: float) -> float:
    """Mean Opinion Score (1..4.5) for an R-factor, by the G.107 Annex B mapping."""
    if not math.isfinite(r):
        raise ValueError(f"r must be finite, got {r!r}")
    r = min(100.0, max(0.0, r))
    value = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    return min(4.5, max(1.0, value))


def mos(latency_ms: float, jitter_ms: float, loss_percent: float) -> float:
    """MOS (1..4.5) from one-way latency, jitter (ms) and loss (percent)."""
    return mos_from_r(r_factor(latency_ms, jitter_ms, loss_percent))
