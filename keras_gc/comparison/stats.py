"""Paired differences over seeds: a t-interval and the verdict it supports.

Pure Python (no SciPy): Student's t distribution for integer degrees of
freedom has a closed-form CDF (Abramowitz and Stegun 26.7.3 and 26.7.4), which
bisection inverts.
"""

import math
import statistics
from collections.abc import Sequence

__all__ = ["paired_interval", "t_quantile", "verdict"]

CONFIDENCE = 0.95
"""The confidence of the intervals `compare` reports."""


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom, t >= 0."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    # The finite series of A&S 26.7.3 (odd df) and 26.7.4 (even df).
    term, total = 1.0, 1.0
    for k in range(2 if df % 2 else 1, df - 1, 2):
        term *= c2 * k / (k + 1)
        total += term
    if df % 2 == 0:
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def t_quantile(probability: float, df: int) -> float:
    """Returns the `probability` quantile of Student's t with `df` degrees of freedom.

    Args:
        probability: In (0, 1), e.g. 0.975 for a two-sided 95% interval.
        df: Degrees of freedom, a positive integer.

    Returns:
        `t` such that P(T <= t) = `probability`, to about 1e-12 relative.

    Example:

    >>> round(t_quantile(0.975, 2), 4)
    4.3027
    """
    if not 0 < probability < 1:
        raise ValueError(f"`probability` must be in (0, 1); received {probability}.")
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"`df` must be a positive integer; received {df!r}.")
    if probability < 0.5:
        return -t_quantile(1 - probability, df)
    central = 2 * probability - 1
    low, high = 0.0, 1.0
    while _t_central(high, df) < central:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if _t_central(middle, df) < central:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def paired_interval(
    differences: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Returns the t-interval of the mean of paired differences.

    Args:
        differences: One difference per seed (GC minus bare).
        confidence: The interval's confidence, e.g. 0.95.

    Returns:
        `(low, high)`; `(nan, nan)` with fewer than two differences, or when
        one is not finite (a run that diverged).

    Example:

    >>> low, high = paired_interval([1.0, 2.0, 3.0])  # 2 -+ 4.3027 / sqrt(3)
    >>> round(low, 4), round(high, 4)
    (-0.4841, 4.4841)
    """
    n = len(differences)
    if n < 2 or not all(math.isfinite(d) for d in differences):
        return math.nan, math.nan
    mean = statistics.fmean(differences)
    half = t_quantile((1 + confidence) / 2, n - 1) * statistics.stdev(differences)
    half /= math.sqrt(n)
    return mean - half, mean + half


def verdict(low: float, high: float, n: int, higher_is_better: bool | None) -> str:
    """Says what an interval of GC minus bare shows.

    Args:
        low: The interval's lower end (NaN when there is none).
        high: Its upper end.
        n: The number of paired seeds.
        higher_is_better: Whether a larger value is better; `None` when the
            metric's direction is unknown.

    Returns:
        `"GC better"` or `"GC worse"` when the interval excludes 0 (`"GC
        higher"` or `"GC lower"` when the direction is unknown), else
        `"no difference detected with n seeds"`.

    Example:

    >>> verdict(0.01, 0.03, 5, higher_is_better=True)
    'GC better'
    """
    if not (low > 0 or high < 0):
        return f"no difference detected with {n} seed{'s' if n != 1 else ''}"
    if higher_is_better is None:
        return "GC higher" if low > 0 else "GC lower"
    return "GC better" if (low > 0) == higher_is_better else "GC worse"
