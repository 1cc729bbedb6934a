"""The t-interval and verdict of `compare`, against SciPy and printed tables."""

import math

import pytest
from scipy import stats

from keras_gc.comparison.stats import paired_interval, t_quantile, verdict

pytestmark = pytest.mark.backend_free

# Two-sided 95% critical values of Student's t, as printed in statistics
# tables (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
PRINTED = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize(("df", "expected"), PRINTED.items())
def test_t_quantile_matches_printed_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("df", [*range(1, 41), 99, 250])
@pytest.mark.parametrize("probability", [0.5, 0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_matches_scipy(df, probability):
    assert t_quantile(probability, df) == pytest.approx(
        stats.t.ppf(probability, df), rel=1e-9, abs=1e-12
    )


@pytest.mark.parametrize(("probability", "df"), [(0, 3), (1, 3), (0.5, 0), (0.5, 2.5)])
def test_t_quantile_rejects_bad_arguments(probability, df):
    with pytest.raises(ValueError, match=r"`probability`|`df`"):
        t_quantile(probability, df)


@pytest.mark.parametrize(
    "differences", [[0.1, -0.05, 0.2], [1.0, 2.0, 3.0, 4.5], [-0.3, -0.2]]
)
def test_paired_interval_matches_scipy(differences):
    n = len(differences)
    expected = stats.t.interval(
        0.95, n - 1, loc=stats.tmean(differences), scale=stats.sem(differences)
    )
    assert paired_interval(differences) == pytest.approx(expected, rel=1e-9)


def test_one_difference_has_no_interval():
    assert all(math.isnan(end) for end in paired_interval([0.5]))


@pytest.mark.parametrize(
    ("low", "high", "higher", "expected"),
    [
        (0.01, 0.03, True, "GC better"),
        (0.01, 0.03, False, "GC worse"),
        (-0.03, -0.01, True, "GC worse"),
        (-0.03, -0.01, False, "GC better"),
        (-0.01, 0.03, True, "no difference detected with 3 seeds"),
        (0.01, 0.03, None, "GC higher"),
        (-0.03, -0.01, None, "GC lower"),
        (math.nan, math.nan, True, "no difference detected with 3 seeds"),
    ],
)
def test_verdict(low, high, higher, expected):
    assert verdict(low, high, 3, higher) == expected
    assert verdict(math.nan, math.nan, 1, higher) == (
        "no difference detected with 1 seed"
    )
