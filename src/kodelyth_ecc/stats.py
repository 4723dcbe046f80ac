"""Intervals for comparing repeated runs (issue 13's groundwork): a pass rate with its
95% Wilson interval, a mean with its Student-t interval, and the difference between two
arms (Newcombe's hybrid score interval for rates, Welch's for means). Standard library
only, no scipy: the t quantiles come from a table, exact to the printed digits where
tables print them, and interpolated in 1/df between (the error is under 0.002).

Nothing here decides anything: an interval is a fact to show beside the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kodelyth_ecc.records import Record

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile

# Student's t, 97.5th percentile (two-sided 95%), by degrees of freedom.
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
    120: 1.980,
}  # fmt: skip


class Interval(Record):
    """An estimate and its 95% interval (``low`` <= ``estimate`` <= ``high``)."""

    estimate: float
    low: float
    high: float


def t975(df: float) -> float:
    """Student's t 97.5th percentile for ``df`` degrees of freedom (df > 0; Welch's are
    fractional)."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if df >= 120:
        # Between 120 and infinity, linear in 1/df towards the normal quantile.
        return Z95 + (_T975[120] - Z95) * 120 / df
    keys = sorted(_T975)
    if df <= 1:
        return _T975[1]
    below = max(k for k in keys if k <= df)
    above = min(k for k in keys if k >= df)
    if below == above:
        return _T975[below]
    # Linear in 1/df, as tables advise between their rows.
    share = (1 / below - 1 / df) / (1 / below - 1 / above)
    return _T975[below] + (_T975[above] - _T975[below]) * share


def wilson(successes: int, trials: int) -> Interval:
    """A pass rate with its Wilson score interval: sound for small samples and for
    rates of 0 or 1, where the textbook "p +- 1.96 SE" interval collapses to a point."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError("need 0 <= successes <= trials and trials > 0")
    p = successes / trials
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    # At 0 and 1 the bound is exactly the rate (the formula leaves rounding dust there).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(p, low, high)


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance)


def mean_interval(values: Sequence[float]) -> Interval:
    """A mean with its Student-t interval (at least 2 values; with one, the interval
    is the value itself: nothing is known of the spread)."""
    if not values:
        raise ValueError("need at least one value")
    if len(values) == 1:
        return Interval(float(values[0]), float(values[0]), float(values[0]))
    mean, sd = _mean_sd(values)
    half = t975(len(values) - 1) * sd / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


def rate_difference(a: tuple[int, int], b: tuple[int, int]) -> Interval:
    """``b``'s rate minus ``a``'s, each given as (successes, trials), with Newcombe's
    hybrid score interval (method 10), built from the two Wilson intervals."""
    ra, rb = wilson(*a), wilson(*b)
    d = rb.estimate - ra.estimate
    low = d - math.sqrt((rb.estimate - rb.low) ** 2 + (ra.high - ra.estimate) ** 2)
    high = d + math.sqrt((rb.high - rb.estimate) ** 2 + (ra.estimate - ra.low) ** 2)
    return Interval(d, low, high)


def mean_difference(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Mean of ``b`` minus mean of ``a`` with Welch's interval (unequal variances;
    each side needs at least 2 values)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each side needs at least two values")
    ma, sa = _mean_sd(a)
    mb, sb = _mean_sd(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    d = mb - ma
    if va + vb == 0:
        return Interval(d, d, d)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    half = t975(df) * math.sqrt(va + vb)
    return Interval(d, d - half, d + half)
