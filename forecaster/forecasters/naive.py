"""The probabilistic random walk: zero median, spread from the trailing returns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecaster.dataset import PreparedData
from forecaster.errors import NotFittedError
from forecaster.forecasters.base import QuantileForecaster, log_returns, positions
from forecaster.windows import Windows

MIN_RETURNS = 20


def empirical_quantiles(trailing: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Log-return quantiles of the random walk from trailing returns: their empirical
    quantiles shifted to a zero median. Shared by the backtest and the live monitor."""
    out: np.ndarray = np.quantile(trailing, levels) - np.median(trailing)
    return out


class NaiveEmpiricalForecaster(QuantileForecaster):
    """Quantiles of the last `window` daily log returns up to the as-of day, shifted so the
    median is zero: tomorrow's close is today's (naive persistence) with history's spread.

    Nothing is estimated, so fitting only keeps each ticker's return series; a forecast reads
    returns dated on or before its as-of day.
    """

    name = "naive"

    def __init__(self, levels: Sequence[float], window: int = 250) -> None:
        super().__init__(levels)
        self.window = window
        self._returns: dict[str, pd.Series] = {}

    def fit(self, data: PreparedData) -> NaiveEmpiricalForecaster:
        self._returns = {ticker: log_returns(frame) for ticker, frame in data.frames.items()}
        return self

    def predict(self, windows: Windows) -> np.ndarray:
        out = np.empty((len(windows), len(self.levels)))
        for ticker in dict.fromkeys(windows.tickers):
            if ticker not in self._returns:
                raise NotFittedError(f"naive: no returns for {ticker}; call fit() first")
            returns = self._returns[ticker]
            values = returns.to_numpy()
            mask = windows.tickers == ticker
            ends = positions(returns.index, windows.end_dates[mask], f"naive {ticker}")
            rows = np.empty((len(ends), len(self.levels)))
            for i, end in enumerate(ends):
                trailing = values[max(0, end + 1 - self.window) : end + 1]
                if len(trailing) < MIN_RETURNS:
                    raise ValueError(
                        f"naive {ticker}: only {len(trailing)} returns before "
                        f"{returns.index[end].date()}, need {MIN_RETURNS}"
                    )
                rows[i] = empirical_quantiles(trailing, self.levels)
            out[mask] = rows
        return out
