"""The served baselines equal the backtest's baselines on the same history: GARCH filtered with
fixed parameters reproduces arch's forecast, and the random walk the naive forecaster's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.config import ForecasterConfig
from forecaster.dataset import prepare
from forecaster.errors import DataValidationError
from forecaster.fallback import (
    GARCH_MIN_RETURNS,
    fit_garch,
    garch_quantiles,
    naive_quantiles,
    standardised_t,
)
from forecaster.forecasters import GarchForecaster, NaiveEmpiricalForecaster

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


@pytest.fixture(scope="module")
def fitted(sample_frame: pd.DataFrame) -> tuple[pd.DataFrame, GarchForecaster, object]:
    frame = sample_frame.loc["2010":"2014"]
    config = ForecasterConfig.model_validate({"data": {"tickers": ["^GSPC"]}})
    data = prepare({"^GSPC": frame}, config)
    return frame, GarchForecaster(LEVELS).fit(data), data


def test_filtered_garch_equals_archs_forecast_on_the_same_history(fitted) -> None:  # type: ignore[no-untyped-def]
    frame, garch, data = fitted
    test = data.windows.take(data.split.test)
    expected = garch.predict(test)
    params = garch.params["^GSPC"]
    for i in (0, len(test) // 2, len(test) - 1):
        end = pd.Timestamp(test.end_dates[i])
        closes = frame["close"].loc[:end].to_numpy()
        np.testing.assert_allclose(garch_quantiles(closes, LEVELS, params), expected[i], rtol=1e-9)


def test_a_short_history_forgets_the_start_of_the_recursion(fitted) -> None:  # type: ignore[no-untyped-def]
    """A request sends 50 rows, not the whole series: beta^50 of the start remains."""
    frame, garch, _ = fitted
    params = garch.params["^GSPC"]
    full = garch_quantiles(frame["close"].to_numpy(), LEVELS, params)
    short = garch_quantiles(frame["close"].to_numpy()[-50:], LEVELS, params)
    np.testing.assert_allclose(short, full, rtol=0.05)


def test_served_random_walk_equals_the_naive_forecaster(fitted) -> None:  # type: ignore[no-untyped-def]
    frame, _, data = fitted
    naive = NaiveEmpiricalForecaster(LEVELS, window=250).fit(data)
    test = data.windows.take(data.split.test)
    expected = naive.predict(test)
    i = len(test) - 1
    closes = frame["close"].loc[: pd.Timestamp(test.end_dates[i])].to_numpy()
    np.testing.assert_allclose(naive_quantiles(closes, LEVELS, 250), expected[i], rtol=1e-12)
    with pytest.raises(DataValidationError, match="needs 20 returns"):
        naive_quantiles(closes[:10], LEVELS, 250)


def test_garch_fit_on_a_requests_own_history(fitted) -> None:  # type: ignore[no-untyped-def]
    frame = fitted[0]
    closes = frame["close"].to_numpy()
    params = fit_garch(closes[: GARCH_MIN_RETURNS + 1])
    assert {"mu", "omega", "alpha[1]", "beta[1]", "nu"} <= set(params)
    q = garch_quantiles(closes, LEVELS, params)
    assert np.all(np.diff(q) > 0)
    with pytest.raises(DataValidationError, match=f"needs {GARCH_MIN_RETURNS} returns"):
        fit_garch(closes[:GARCH_MIN_RETURNS])


def test_standardised_t_has_unit_variance() -> None:
    from scipy.stats import t

    nu = 6.0
    z = standardised_t([0.9], nu)
    assert z[0] == pytest.approx(t.ppf(0.9, nu) / np.sqrt(nu / (nu - 2)))
