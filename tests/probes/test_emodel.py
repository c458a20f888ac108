"""The simplified E-model: known values worked by hand, bounds, and monotonicity.

Worked examples (latency and jitter in ms, loss in %; eff = latency + 2·jitter + 10):

* 0 / 0 / 0: eff 10 -> R = 93.2 - 10/40 = 92.95;
  MOS = 1 + 0.035·92.95 + 7e-6·92.95·32.95·7.05 = 1 + 3.25325 + 0.15114 = 4.4044.
* 20 / 5 / 1: eff 40 -> R = 93.2 - 1 - 2.5 = 89.7;
  MOS = 1 + 3.1395 + 7e-6·89.7·29.7·10.3 = 4.3316.
* 150 / 0 / 0: eff 160 -> second branch, R = 93.2 - 40/10 = 89.2 (the branches meet here);
  MOS = 1 + 3.122 + 7e-6·89.2·29.2·10.8 = 4.3189.
* 300 / 20 / 0: eff 350 -> R = 93.2 - 230/10 = 70.2;
  MOS = 1 + 2.457 + 7e-6·70.2·10.2·29.8 = 3.6064.
* 20 / 0 / 5: eff 30 -> R = 93.2 - 0.75 - 12.5 = 79.95;
  MOS = 1 + 2.79825 + 7e-6·79.95·19.95·20.05 = 4.0221.
* 0 / 0 / 40: R = 92.95 - 100 < 0 -> 0, MOS 1.
* 1000 / 0 / 0: R = 93.2 - 89 = 4.2, where the G.107 polynomial dips below 1 -> MOS 1.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.probes.emodel import mos, mos_from_r, r_factor

KNOWN = [
    # latency ms, jitter ms, loss %, R, MOS
    (0.0, 0.0, 0.0, 92.95, 4.4044),
    (20.0, 5.0, 1.0, 89.7, 4.3316),
    (150.0, 0.0, 0.0, 89.2, 4.3189),
    (300.0, 20.0, 0.0, 70.2, 3.6064),
    (20.0, 0.0, 5.0, 79.95, 4.0221),
    (0.0, 0.0, 40.0, 0.0, 1.0),
    (1000.0, 0.0, 0.0, 4.2, 1.0),
]


@pytest.mark.parametrize(("latency", "jitter", "loss", "r", "score"), KNOWN)
def test_known_values(latency: float, jitter: float, loss: float, r: float, score: float) -> None:
    """R and MOS match the values worked by hand in the module docstring."""
    assert r_factor(latency, jitter, loss) == pytest.approx(r, abs=1e-9)
    assert mos(latency, jitter, loss) == pytest.approx(score, abs=5e-5)


def test_branches_meet_at_160_ms() -> None:
    """The two delay branches agree at an effective delay of 160 ms (no step)."""
    below = r_factor(149.999999, 0.0, 0.0)
    at = r_factor(150.0, 0.0, 0.0)
    assert below == pytest.approx(at, abs=1e-6)


def test_mos_bounds_at_r_extremes() -> None:
    """MOS is 1 at R 0 and 4.5 at R 100; R outside 0..100 is clamped."""
    assert mos_from_r(0.0) == 1.0
    assert mos_from_r(100.0) == pytest.approx(4.5)
    assert mos_from_r(-5.0) == 1.0
    assert mos_from_r(150.0) == pytest.approx(4.5)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_inputs_raise(bad: float) -> None:
    """Negative or non-finite inputs are caller bugs: ValueError."""
    with pytest.raises(ValueError):
        r_factor(bad, 0.0, 0.0)
    with pytest.raises(ValueError):
        r_factor(0.0, bad, 0.0)
    with pytest.raises(ValueError):
        r_factor(0.0, 0.0, bad)


ms = st.floats(min_value=0.0, max_value=5000.0, allow_nan=False)
pct = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
more = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)
# Float rounding of the cubic may wobble by a few ulps; anything larger is a real increase.
EPS = 1e-12


@given(ms, ms, pct, more)
def test_mos_never_increases_with_latency(lat: float, jit: float, loss: float, d: float) -> None:
    """More latency never raises MOS (or R)."""
    assert r_factor(lat + d, jit, loss) <= r_factor(lat, jit, loss) + EPS
    assert mos(lat + d, jit, loss) <= mos(lat, jit, loss) + EPS


@given(ms, ms, pct, more)
def test_mos_never_increases_with_jitter(lat: float, jit: float, loss: float, d: float) -> None:
    """More jitter never raises MOS (or R)."""
    assert r_factor(lat, jit + d, loss) <= r_factor(lat, jit, loss) + EPS
    assert mos(lat, jit + d, loss) <= mos(lat, jit, loss) + EPS


@given(ms, ms, pct, st.floats(min_value=0.0, max_value=100.0, allow_nan=False))
def test_mos_never_increases_with_loss(lat: float, jit: float, loss: float, d: float) -> None:
    """More loss never raises MOS (or R)."""
    assert r_factor(lat, jit, loss + d) <= r_factor(lat, jit, loss) + EPS
    assert mos(lat, jit, loss + d) <= mos(lat, jit, loss) + EPS


@given(ms, ms, pct)
def test_ranges(lat: float, jit: float, loss: float) -> None:
    """R stays within 0..100 and MOS within 1..4.5 for any sane input."""
    assert 0.0 <= r_factor(lat, jit, loss) <= 100.0
    assert 1.0 <= mos(lat, jit, loss) <= 4.5


def test_mos_is_non_decreasing_in_r_on_a_fine_grid() -> None:
    """MOS never drops as R rises, including the G.107 polynomial's dip region below R 6.5."""
    scores = [mos_from_r(i / 100.0) for i in range(10_001)]
    assert all(b >= a - EPS for a, b in itertools.pairwise(scores))
