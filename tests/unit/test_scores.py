"""Proper scores and forecast tests on hand-made numbers and known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from forecaster.evaluation import scores

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def test_pinball_by_hand() -> None:
    q = np.array([[0.0, 1.0, 2.0]])
    y = np.array([1.5])
    loss = scores.pinball(q, y, (0.1, 0.5, 0.9))
    # 0.1 * 1.5, 0.5 * 0.5, (0.9 - 1) * (1.5 - 2)
    np.testing.assert_allclose(loss, [[0.15, 0.25, 0.05]])
    assert scores.pinball_per_day(q, y, (0.1, 0.5, 0.9))[0] == pytest.approx(0.15)


def test_crps_from_dense_quantiles_matches_the_closed_form_for_a_normal() -> None:
    levels = np.linspace(0.005, 0.995, 199)
    y = np.array([0.3, -1.2, 2.0])
    q = np.tile(stats.norm.ppf(levels), (3, 1))
    exact = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / math.sqrt(math.pi)
    np.testing.assert_allclose(scores.crps_per_day(q, y, levels), exact, rtol=0.02)


def test_crps_weights_cover_the_unit_interval() -> None:
    weights = scores.crps_weights(LEVELS)
    assert weights.sum() == pytest.approx(1.0)
    # The median stands for (0.375, 0.625); the 0.05 level for (0, 0.075).
    assert weights[3] == pytest.approx(0.25)
    assert weights[0] == pytest.approx(0.075)


def test_interval_columns_and_a_missing_tail() -> None:
    assert scores.interval_columns(LEVELS, 0.8) == (1, 5)
    assert scores.interval_columns(LEVELS, 0.5) == (2, 4)
    with pytest.raises(ValueError, match=r"needs the levels 0\.15 and 0\.85"):
        scores.interval_columns(LEVELS, 0.7)


def test_winkler_is_width_plus_penalty_outside() -> None:
    lower, upper = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    y = np.array([0.0, 1.5, -3.0])
    # alpha = 0.2: penalty 2 / 0.2 = 10 per unit outside.
    np.testing.assert_allclose(scores.winkler(lower, upper, y, 0.8), [2.0, 7.0, 22.0])


def test_kupiec_accepts_the_nominal_rate_and_rejects_a_wrong_one() -> None:
    hits = np.zeros(1000, dtype=bool)
    hits[:200] = True  # 20% outside an 80% interval: exactly nominal
    assert scores.kupiec_pvalue(hits, 0.8) == pytest.approx(1.0)
    hits[:300] = True  # 30% outside
    assert scores.kupiec_pvalue(hits, 0.8) < 1e-10
    # The LR statistic by hand for 25 violations in 100 days at p = 0.2.
    x, n, p = 25, 100, 0.2
    lr = -2 * ((n - x) * math.log(1 - p) + x * math.log(p)
               - (n - x) * math.log(1 - x / n) - x * math.log(x / n))  # fmt: skip
    few = np.zeros(n, dtype=bool)
    few[:x] = True
    assert scores.kupiec_pvalue(few, 0.8) == pytest.approx(stats.chi2.sf(lr, 1))


def test_christoffersen_sees_clustered_violations() -> None:
    rng = np.random.default_rng(0)
    independent = rng.random(2000) < 0.1
    assert scores.christoffersen_pvalue(independent) > 0.01
    clustered = np.zeros(2000, dtype=bool)
    for start in range(0, 2000, 100):
        clustered[start : start + 10] = True  # same 10% rate, in runs
    assert scores.christoffersen_pvalue(clustered) < 1e-10
    assert math.isnan(scores.christoffersen_pvalue(np.zeros(50, dtype=bool)))


def test_diebold_mariano_one_sided_p_values() -> None:
    rng = np.random.default_rng(1)
    base = np.abs(rng.normal(size=2000))
    stat, better, worse = scores.diebold_mariano(base * 0.8, base)
    assert stat < 0
    assert better < 1e-6
    assert worse > 1 - 1e-6
    _, better_same, worse_same = scores.diebold_mariano(
        np.abs(rng.normal(size=2000)), np.abs(rng.normal(size=2000))
    )
    assert better_same + worse_same == pytest.approx(1.0)
    assert all(math.isnan(v) for v in scores.diebold_mariano(base, base))


def test_pit_is_uniform_for_the_true_distribution() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=5000)
    levels = np.linspace(0.01, 0.99, 99)
    q = np.tile(stats.norm.ppf(levels), (len(y), 1))
    pit = scores.pit_values(q, y, levels)
    counts, _ = np.histogram(pit, bins=10, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 0.001


@pytest.mark.parametrize("levels", [(0.5, 0.1), (0.0, 0.5), (0.1, 0.5, 1.0)])
def test_bad_levels_are_refused(levels: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="levels"):
        scores.pinball(np.zeros((1, len(levels))), np.zeros(1), levels)


def test_christoffersen_against_a_hand_computation() -> None:
    """Christoffersen (1998): transitions of 0 0 1 1 1 0 0 0 1 1 0 0 are n00=4, n01=2, n10=2,
    n11=3, so pi0 = 1/3, pi1 = 3/5 and pi = 5/11; LR = -2 (log L(pi) - log L(pi0, pi1))."""
    hits = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    log_null = 6 * math.log(6 / 11) + 5 * math.log(5 / 11)
    log_alt = (4 * math.log(2 / 3) + 2 * math.log(1 / 3)
               + 2 * math.log(2 / 5) + 3 * math.log(3 / 5))  # fmt: skip
    lr = -2 * (log_null - log_alt)
    assert lr == pytest.approx(0.789917, abs=1e-6)
    assert scores.christoffersen_pvalue(hits) == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)
    assert scores.christoffersen_pvalue(hits) == pytest.approx(0.374125, abs=1e-6)


def test_diebold_mariano_against_a_hand_computation() -> None:
    """Loss differential d = (3 1 4 1 5 9) - 2 = (1 -1 2 -1 3 7): mean 11/6; deviations
    (-5 -17 1 -17 7 31)/6 give gamma_0 = 269/36 and gamma_1 = sum of lag-1 products / n =
    (85 - 17 - 17 - 119 + 217)/216 = 149/216; with one Newey-West lag the long-run variance is
    gamma_0 + 2 (1/2) gamma_1 = 1763/216. DM = mean / sqrt(lrv / n) times the Harvey-Leybourne-
    Newbold factor sqrt((n + 1 - 2h + h(h - 1)/n) / n) = sqrt(5/6) for h = 1; p from Student's
    t with n - 1 degrees of freedom."""
    a, b = np.array([3, 1, 4, 1, 5, 9.0]), np.full(6, 2.0)
    stat, better, worse = scores.diebold_mariano(a, b, lags=1)
    expected = (11 / 6) / math.sqrt((1763 / 216) / 6) * math.sqrt(5 / 6)
    assert stat == pytest.approx(expected, rel=1e-12)
    assert stat == pytest.approx(1.434918, abs=1e-6)
    assert worse == pytest.approx(stats.t.sf(expected, df=5), rel=1e-12)
    assert better == pytest.approx(1 - worse, rel=1e-12)
    # No lags: the plain variance (269/36), as the 1-step test without HAC.
    stat0, _, worse0 = scores.diebold_mariano(a, b, lags=0)
    assert stat0 == pytest.approx((11 / 6) / math.sqrt((269 / 36) / 6) * math.sqrt(5 / 6))
    assert worse0 == pytest.approx(0.096990, abs=1e-6)


def test_diebold_mariano_horizon_sets_the_hln_factor_and_the_least_lags() -> None:
    """h = 3 on n = 6: HLN factor sqrt((7 - 6 + 6/6) / 6) = sqrt(1/3), and at least h - 1 = 2
    lags even when fewer are asked for."""
    a, b = np.array([3, 1, 4, 1, 5, 9.0]), np.full(6, 2.0)
    d = a - b
    lrv = scores.long_run_variance(d, 2)
    stat, _, _ = scores.diebold_mariano(a, b, horizon=3, lags=0)
    assert stat == pytest.approx(np.mean(d) / math.sqrt(lrv / 6) * math.sqrt(1 / 3), rel=1e-12)


def test_newey_west_variance_matches_arch() -> None:
    """The long-run variance is arch's Bartlett kernel estimate at the same bandwidth, and the
    default lags are Newey-West's rule floor(4 (n/100)^(2/9))."""
    from arch.covariance.kernel import Bartlett

    rng = np.random.default_rng(5)
    d = np.convolve(rng.normal(size=503), [1.0, 0.6, 0.3], mode="valid")  # MA(2): correlated
    for lags in (0, 1, 4, 12):
        expected = float(Bartlett(d, bandwidth=lags, center=True).cov.long_run[0, 0])
        assert scores.long_run_variance(d, lags) == pytest.approx(expected, rel=1e-12)
    assert scores.newey_west_lags(501) == 5  # 4 * 5.01^(2/9) = 5.73
    assert scores.newey_west_lags(100) == 4
    stat, _, _ = scores.diebold_mariano(d + 1.0, np.ones_like(d))
    assert stat == pytest.approx(
        np.mean(d) / math.sqrt(scores.long_run_variance(d, 5) / 501) * math.sqrt(500 / 501)
    )
