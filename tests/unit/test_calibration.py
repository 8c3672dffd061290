"""Per-ticker band recalibration: the conformal factor, its use of past outcomes only, and the
coverage it restores, on hand-made forecasts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from forecaster.methods.calibration import (
    MAX_FACTOR,
    Calibration,
    Outcomes,
    band_factors,
    conformity_scores,
    latest_calibration,
    recalibrate,
    rolling_factors,
)

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
INTERVALS = (0.5, 0.8, 0.9)


def normal_quantiles(n: int, sigma: float = 1.0) -> np.ndarray:
    return np.tile(norm.ppf(LEVELS) * sigma, (n, 1))


def days(n: int, start: str = "2020-01-01") -> np.ndarray:
    return np.arange(np.datetime64(start), np.datetime64(start) + n).astype("datetime64[ns]")


def test_score_is_the_factor_the_band_needed() -> None:
    q = np.array([[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]] * 3)
    scores = conformity_scores(q, np.array([0.5, -4.0, 0.0]), LEVELS, INTERVALS)
    # 50% band is -1..1, 80% band -2..2, 90% band -3..3 about the median 0.
    assert scores[0] == pytest.approx([0.5, 0.25, 0.5 / 3])
    assert scores[1] == pytest.approx([4.0, 2.0, 4 / 3])
    assert scores[2] == pytest.approx([0.0, 0.0, 0.0])


def test_band_factor_is_the_split_conformal_quantile() -> None:
    scores = np.tile(np.arange(1, 100, dtype=float)[:, None] / 100, (1, 3))  # 0.01 .. 0.99
    factors = band_factors(scores, INTERVALS)
    # n = 99: ranks ceil(100 c) = 50, 80, 90.
    assert factors == pytest.approx([0.50, 0.80, 0.90])


def test_factors_are_bounded() -> None:
    assert band_factors(np.full((20, 3), 100.0), INTERVALS) == pytest.approx([MAX_FACTOR] * 3)


def test_rolling_factor_uses_only_outcomes_known_by_the_as_of_date() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 2, size=(300, 3))
    known = days(300)
    as_of = known[[100, 200, 299]]
    before = rolling_factors(scores, known, as_of, 50, 20, INTERVALS)
    later = scores.copy()
    later[201:] = 99.0  # outcomes realised after the second as-of date
    after = rolling_factors(later, known, as_of, 50, 20, INTERVALS)
    np.testing.assert_array_equal(before[:2], after[:2])
    assert not np.allclose(before[2], after[2])
    # The window is the last 50 outcomes up to and including the as-of date.
    np.testing.assert_allclose(before[0], band_factors(scores[51:101], INTERVALS))


def test_too_few_outcomes_leave_the_bands_raw() -> None:
    scores = np.ones((30, 3))
    factors = rolling_factors(scores, days(30), days(30), 250, 20, INTERVALS)
    assert np.isnan(factors[:19]).all()
    assert not np.isnan(factors[19:]).any()
    q = normal_quantiles(30)
    out = recalibrate(q, factors, LEVELS, INTERVALS)
    np.testing.assert_array_equal(out[:19], q[:19])


def test_recalibrate_scales_each_band_about_the_median_and_stays_monotone() -> None:
    q = np.array([[-3.0, -2.0, -1.0, 0.5, 1.0, 2.0, 3.0]])
    out = recalibrate(q, np.array([2.0, 1.0, 1.0]), LEVELS, INTERVALS)
    # The 50% band, -1.5 and +0.5 about the median, doubles to 0.5 - 3 and 0.5 + 1; its lower
    # end crosses the 80% band's, and the rearrangement keeps the levels increasing.
    assert out[0] == pytest.approx([-3.0, -2.5, -2.0, 0.5, 1.5, 2.0, 3.0])


def test_recalibration_restores_coverage_of_too_narrow_bands() -> None:
    """Returns 1.6 times as volatile as the bands say: raw bands cover far too little, the
    rolling factors bring every band back near nominal on later days."""
    rng = np.random.default_rng(7)
    n = 3000
    y = rng.normal(0, 1.6, n)
    q = normal_quantiles(n)
    known, as_of = days(n) + np.timedelta64(1, "D"), days(n)
    scores = conformity_scores(q, y, LEVELS, INTERVALS)
    factors = rolling_factors(scores, known, as_of, 250, 60, INTERVALS)
    served = recalibrate(q, factors, LEVELS, INTERVALS)[250:]
    ys, raw = y[250:], q[250:]
    for j, (lo, hi) in enumerate([(2, 4), (1, 5), (0, 6)]):
        before = np.mean((ys >= raw[:, lo]) & (ys <= raw[:, hi]))
        after = np.mean((ys >= served[:, lo]) & (ys <= served[:, hi]))
        assert before < INTERVALS[j] - 0.1
        assert abs(after - INTERVALS[j]) < 0.03


def test_outcomes_merge_once_per_day_and_never_mix_tickers() -> None:
    q = normal_quantiles(4)
    y = np.array([0.0, 3.0, 0.0, 3.0])
    a = Outcomes.of(q, y, np.array(["A", "A", "B", "B"], dtype=object),
                    np.concatenate([days(2), days(2)]), LEVELS, INTERVALS)  # fmt: skip
    merged = a.merged(a)
    assert len(merged.tickers) == 4
    # A's outcomes both missed its bands' median by 0 and 3, B's the same: give B calm days
    # instead, so a factor that mixed the two tickers would differ from each one's own.
    calm = Outcomes.of(q, np.array([0.0, 3.0, 0.0, 0.1]), a.tickers, a.known_at, LEVELS,
                       INTERVALS)  # fmt: skip
    both = calm.factors(np.array(["A", "B"], dtype=object), days(2, "2021-01-01"), 10, 2,
                        INTERVALS)  # fmt: skip
    np.testing.assert_allclose(both[0], band_factors(calm.scores[:2], INTERVALS))
    np.testing.assert_allclose(both[1], band_factors(calm.scores[2:], INTERVALS))
    assert not np.allclose(both[0], both[1])
    factors = merged.factors(np.array(["A", "C"], dtype=object), days(2, "2021-01-01"), 10, 2,
                             INTERVALS)  # fmt: skip
    assert not np.isnan(factors[0]).any()
    assert np.isnan(factors[1]).all()


def test_latest_calibration_round_trips() -> None:
    scores = np.tile(np.linspace(0.1, 1.5, 100)[:, None], (1, 3))
    found = latest_calibration(scores, days(100), 80, 60, INTERVALS, "training")
    assert found is not None
    assert found.days == 80
    # The newest 80 outcomes (scores 20..99), not the oldest: the conformal quantile of those.
    newest = band_factors(scores[20:], INTERVALS)
    assert found.array(INTERVALS) == pytest.approx(newest)
    assert not np.allclose(newest, band_factors(scores[:80], INTERVALS))
    # Order is by the day each outcome became known, whatever order the rows come in.
    shuffled = np.random.default_rng(0).permutation(100)
    again = latest_calibration(scores[shuffled], days(100)[shuffled], 80, 60, INTERVALS, "x")
    assert again is not None
    assert again.array(INTERVALS) == pytest.approx(newest)
    assert found.through == "2020-04-09"
    assert Calibration.from_dict(found.to_dict()) == found
    assert latest_calibration(scores[:10], days(10), 80, 60, INTERVALS, "training") is None


def test_a_baselines_bands_are_recalibrated_on_its_own_recent_forecasts() -> None:
    """GARCH with a variance far too small for the series: its raw bands cover little of the
    returns that followed its last 250 forecasts, so the served bands widen by the conformal
    factor of exactly those forecasts; without the history's dates nothing is recalibrated."""
    from dataclasses import replace

    from forecaster.config import load_config
    from forecaster.data.features import compute_features
    from forecaster.data.scaling import FeatureScaler
    from forecaster.data.sources import SampleSource
    from forecaster.methods import Bars, Garch, log_returns
    from forecaster.registry.bundle import MethodSpec, ModelBundle
    from forecaster.registry.predictor import Forecaster

    config = load_config(None)
    sample = SampleSource().load("^GSPC").iloc[-600:]
    scaler = FeatureScaler.fit(
        compute_features(sample, config.features).to_numpy(), config.features.names
    )
    narrow = {"mu": 0.0, "omega": 0.001, "alpha[1]": 0.01, "beta[1]": 0.5, "nu": 30.0}
    configured = ModelBundle.from_config(config, scaler)
    bundle = replace(
        configured, methods={**configured.methods, "garch": MethodSpec({}, {"X": narrow})}
    )
    forecaster = Forecaster(bundle, bundle.build_network())
    closes, days = sample["close"].to_numpy(), sample.index.to_numpy()
    bars = Bars.of_frame(sample)

    raw = forecaster.baseline_forecast("X", "garch", bars)
    served = forecaster.baseline_forecast("X", "garch", bars, days)
    assert raw.calibration is None
    assert served.calibration is not None
    assert served.calibration.source == "history"
    assert served.calibration.days == 250
    path = Garch().path(bars, narrow, LEVELS, 0)
    realised = log_returns(closes)[-250:]
    before = np.mean((realised >= path[-251:-1, 1]) & (realised <= path[-251:-1, 5]))
    assert before < 0.5  # the raw 80% band held under half of them
    factor = served.calibration.factors[0.8]
    assert factor > 1.5
    median = raw.quantiles[3]
    assert served.quantiles[5] - median == pytest.approx(factor * (raw.quantiles[5] - median))
    # The random walk gets the same treatment, from its own forecasts.
    walk = forecaster.baseline_forecast("X", "naive", bars, days)
    assert walk.method == "naive"
    assert walk.calibration is not None
    assert walk.calibration.days == 250
