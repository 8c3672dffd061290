"""GARCH(1,1) with Student-t errors (the `arch` package): the volatility baseline a quant uses.

Parameters are estimated on returns up to the last training day only; the fitted model is then
run forward over the whole series with those parameters fixed. Each day's variance forecast
comes from the recursion on returns up to that day, so no forecast sees its own future.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecaster.dataset import PreparedData
from forecaster.errors import NotFittedError
from forecaster.forecasters.base import QuantileForecaster, log_returns, positions
from forecaster.windows import Windows

logger = logging.getLogger(__name__)

# arch's optimiser is best conditioned on returns in percent.
PERCENT = 100.0


@dataclass(frozen=True)
class _Fitted:
    mean: pd.Series  # one-step-ahead mean forecast made as of each date (log return)
    std: pd.Series  # one-step-ahead standard deviation made as of each date
    nu: float  # Student-t degrees of freedom
    params: dict[str, float]


def _model(returns: pd.Series) -> Any:
    """Constant mean, GARCH(1,1) variance, standardised Student-t errors."""
    from arch import arch_model  # imported when used: serving never needs it

    return arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)


class GarchForecaster(QuantileForecaster):
    name = "garch"

    def __init__(self, levels: Sequence[float]) -> None:
        super().__init__(levels)
        self._fitted: dict[str, _Fitted] = {}

    def fit(self, data: PreparedData) -> GarchForecaster:
        train = data.windows.take(data.split.train)
        self._fitted = {}
        for ticker, frame in data.frames.items():
            mask = train.tickers == ticker
            if not mask.any():
                continue
            returns = log_returns(frame) * PERCENT
            last_train_day = pd.Timestamp(train.target_dates[mask].max())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter; checked below
                result = _model(returns.loc[:last_train_day]).fit(disp="off", show_warning=False)
                fixed = _model(returns).fix(result.params)
                forecast = fixed.forecast(horizon=1, start=0, reindex=False)
            params = {str(k): float(v) for k, v in result.params.items()}
            if result.convergence_flag != 0:
                logger.warning("garch %s: optimiser did not converge (flag %d); params %s",
                               ticker, result.convergence_flag, params)  # fmt: skip
            self._fitted[ticker] = _Fitted(
                mean=forecast.mean["h.1"] / PERCENT,
                std=np.sqrt(forecast.variance["h.1"]) / PERCENT,
                nu=params["nu"],
                params=params,
            )
        return self

    @property
    def params(self) -> dict[str, dict[str, float]]:
        """Estimated parameters per ticker (mu, omega, alpha[1], beta[1], nu), in percent."""
        return {ticker: fitted.params for ticker, fitted in self._fitted.items()}

    def predict(self, windows: Windows) -> np.ndarray:
        from arch.univariate import StudentsT

        out = np.empty((len(windows), len(self.levels)))
        for ticker in dict.fromkeys(windows.tickers):
            fitted = self._fitted.get(ticker)
            if fitted is None:
                raise NotFittedError(f"garch: not fitted on {ticker}; call fit() first")
            mask = windows.tickers == ticker
            pos = positions(fitted.std.index, windows.end_dates[mask], f"garch {ticker}")
            # Standardised (unit-variance) t quantiles, as the model's errors are defined.
            z = StudentsT().ppf(np.asarray(self.levels), [fitted.nu])
            mean = fitted.mean.to_numpy()[pos]
            std = fitted.std.to_numpy()[pos]
            out[mask] = mean[:, None] + std[:, None] * np.asarray(z)[None, :]
        return out
