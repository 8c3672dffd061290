"""HAR on a range-based daily variance, with filtered-historical-simulation quantiles.

Each day's variance is measured from its bar, not its close alone: the overnight gap squared
plus an open-to-close range estimator (Garman-Klass by default; Rogers-Satchell, which stays
unbiased under drift, or Parkinson's high-low), which carries several times the information of a
squared close-to-close return (Garman and Klass 1980; Molnar 2016). Tomorrow's log variance is
a linear function of the logs of its 1-, 5- and 22-day means (Corsi 2009's heterogeneous
autoregression), fitted by least squares on the training days; the quantiles are the
forecast's volatility times the empirical quantiles of the training days' returns standardised
by their own forecasts (filtered historical simulation, Barone-Adesi et al. 1999), so fat tails
and skew come from the data, not from a distribution's shape. Pure numpy: a forecast reads the
bars up to its as-of close only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from forecaster.config import EvaluationConfig
from forecaster.data.ranges import ESTIMATORS, daily_range_variance
from forecaster.errors import DataValidationError
from forecaster.methods.base import Bars, Fit, Method, Params, log_returns

SPANS = (1, 5, 22)  # a day, a week, a month of trading days
_COEFFICIENTS = ("har[0]", *(f"har[{span}]" for span in SPANS))


def _level_key(level: float) -> str:
    return f"z[{float(level):g}]"


def range_variance(bars: Bars, estimator: str = "garman_klass") -> np.ndarray:
    """(n - 1,) daily variances of bars 1 .. n - 1 (forecaster.data.ranges), refusing a
    history without open/high/low."""
    bars.require_range("HAR on range-based variance")
    return daily_range_variance(bars.open, bars.high, bars.low, bars.close, estimator)


def har_design(variance: np.ndarray) -> np.ndarray:
    """(n - 21, 4) regressors [1, ln v_t, ln mean_5, ln mean_22] as of each day with a full
    22-day span (row k is as of variance day k + 21)."""
    longest = max(SPANS)
    if len(variance) < longest:
        return np.empty((0, 1 + len(SPANS)))
    cumulative = np.concatenate([[0.0], np.cumsum(variance)])
    ends = np.arange(longest, len(variance) + 1)
    columns = [np.ones(len(ends))]
    for span in SPANS:
        columns.append(np.log((cumulative[ends] - cumulative[ends - span]) / span))
    return np.column_stack(columns)


class HarRange(Method):
    name = "har"
    description = "HAR on range-based variance (FHS)"
    label = "HAR-range"
    # The first forecast needs 22 daily variances, each of a bar and the close before it.
    min_returns = max(SPANS)
    earliest = max(SPANS)
    fit_min_returns = 250

    @classmethod
    def from_config(cls, evaluation: EvaluationConfig) -> HarRange:
        return cls(estimator=evaluation.har_estimator)

    def __init__(self, estimator: str = "garman_klass") -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown range estimator {estimator!r}; known: {', '.join(ESTIMATORS)}"
            )
        self.estimator = estimator

    def settings(self) -> dict[str, Any]:
        return {"estimator": self.estimator}

    def _log_forecasts(self, bars: Bars, coefficients: np.ndarray) -> np.ndarray:
        """Forecast log variance of the next return as of each close from `earliest` on."""
        forecast: np.ndarray = har_design(range_variance(bars, self.estimator)) @ coefficients
        return forecast

    def fit(self, bars: Bars, levels: Sequence[float]) -> Fit:
        variance = range_variance(bars, self.estimator)
        x = har_design(variance)[:-1]  # as of days with a next day to forecast
        target = np.log(variance[max(SPANS) :])
        if len(target) < len(_COEFFICIENTS) + 1:
            return Fit({}, f"only {len(target)} days to fit HAR on")
        coefficients, *_ = np.linalg.lstsq(x, target, rcond=None)
        returns = log_returns(bars.close)[max(SPANS) :]  # the return after each as-of close
        z = returns / np.exp(0.5 * (x @ coefficients))
        params = dict(zip(_COEFFICIENTS, map(float, coefficients), strict=True))
        quantiles = np.quantile(z, np.asarray(levels, dtype=np.float64))
        params.update({_level_key(lv): float(v) for lv, v in zip(levels, quantiles, strict=True)})
        finite = all(math.isfinite(v) for v in params.values())
        return Fit(params, None if finite else "a parameter is not finite")

    def path(self, bars: Bars, params: Params, levels: Sequence[float], first: int) -> np.ndarray:
        n = len(bars)
        if first < self.earliest or first >= n:
            raise DataValidationError(
                f"{self.label} needs {self.earliest} returns before a forecast, the history "
                f"has {n - 1}"
            )
        try:
            coefficients = np.array([params[k] for k in _COEFFICIENTS])
            z = np.array([params[_level_key(lv)] for lv in levels])
        except KeyError as exc:
            raise ValueError(
                f"{self.label}: parameters lack {exc.args[0]}; refit at these quantile levels"
            ) from None
        tail = bars.tail(n - first + self.earliest)  # only the bars the rows read
        scale = np.exp(0.5 * self._log_forecasts(tail, coefficients))
        out: np.ndarray = scale[:, None] * z[None, :]
        return out
