"""The one owner of quantile levels and of what a forecast's quantiles mean in prices."""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pytest

from forecaster import levels
from forecaster.quantile_forecast import QuantileForecast, implied_volatility, to_prices

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
Q = np.array([-0.03, -0.02, -0.01, 0.001, 0.012, 0.021, 0.031])


def forecast() -> QuantileForecast:
    return QuantileForecast(LEVELS, Q, 100.0, date(2018, 12, 31), date(2019, 1, 2))


def test_levels_match_within_float_noise_and_nowhere_else() -> None:
    noisy = (0.05, 0.1000000000000001, 0.25, 0.5, 0.75, 0.8999999999999999, 0.95)
    assert levels.interval_columns(noisy, 0.8) == (1, 5)
    assert levels.median_index(noisy) == 3
    assert levels.find(LEVELS, 0.11) is None
    assert levels.symmetric_pairs(LEVELS) == [(0, 6), (1, 5), (2, 4)]
    assert levels.shared(LEVELS, (0.1, 0.5, 0.9, 0.99)) == ([1, 3, 5], [0, 1, 2])
    with pytest.raises(ValueError, match="no median"):
        levels.median_index((0.1, 0.9))
    with pytest.raises(ValueError, match=r"needs the levels 0\.15 and 0\.85"):
        levels.interval_columns(LEVELS, 0.7)


def test_prices_median_interval_and_volatility() -> None:
    f = forecast()
    assert f.median_return == 0.001
    assert f.median == pytest.approx(100 * math.exp(0.001), rel=1e-15)
    lower, upper = f.interval(0.8)
    assert (lower, upper) == pytest.approx((100 * math.exp(-0.02), 100 * math.exp(0.021)))
    assert list(f.price_quantiles()) == ["0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95"]
    # Vectorised and single forecasts agree.
    assert np.array_equal(to_prices(np.array([100.0]), Q[None, :])[0], f.prices)
    assert f.volatility == float(implied_volatility(Q[None, :], LEVELS)[0])
    assert 0.01 < f.volatility < 0.03
    # By hand: the mean over the pairs (0.05, 0.95), (0.1, 0.9), (0.25, 0.75) of the spread over
    # twice the upper level's standard-normal quantile.
    from scipy.stats import norm

    hand = np.mean([(0.031 + 0.03) / (2 * norm.ppf(0.95)), (0.021 + 0.02) / (2 * norm.ppf(0.9)),
                    (0.012 + 0.01) / (2 * norm.ppf(0.75))])  # fmt: skip
    assert f.volatility == pytest.approx(hand, rel=1e-12)
    assert np.isnan(implied_volatility(Q[None, [1, 3]], (0.1, 0.5))[0])  # no symmetric pair
    # Computed once and shared by every reader, so no reader may change it.
    assert f.prices is f.prices
    with pytest.raises(ValueError, match="read-only"):
        f.prices[0] = 1.0


def test_the_prediction_log_row_is_the_forecast_in_prices() -> None:
    row = forecast().log_row(0.8)
    assert row["as_of"] == date(2018, 12, 31)
    assert row["target_date"] == date(2019, 1, 2)
    assert row["predicted_close"] == forecast().median
    assert (row["lower"], row["upper"]) == forecast().interval(0.8)
    assert json.loads(row["quantiles"]) == forecast().price_quantiles()
    assert row["interval_level"] == 0.8


def test_an_overflowing_forecast_is_not_finite_and_never_warns() -> None:
    with np.errstate(all="raise"):
        huge = QuantileForecast(LEVELS, Q + 800.0, 100.0, date(2018, 12, 31))
        assert not huge.is_finite()
    assert forecast().is_finite()
    with pytest.raises(ValueError, match="7 levels but log returns of shape"):
        QuantileForecast(LEVELS, Q[:3], 100.0, date(2018, 12, 31))
