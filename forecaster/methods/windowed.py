"""The backtest's interface to a method: fit on a fold, forecast any windows of its frames.

`QuantileForecaster` is what the backtest, evaluation and the gate's scoring take: the network
(forecaster.methods.lstm), the ridge baseline (forecaster.methods.linear), and every classic
method through `ClassicForecaster`, which runs the method's own `path`, the function the service
serves with, over each ticker's series.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecaster.data.dataset import PreparedData
from forecaster.data.schemas import CLOSE
from forecaster.data.windows import Windows
from forecaster.errors import NotFittedError
from forecaster.methods.base import Method

logger = logging.getLogger(__name__)


class QuantileForecaster(ABC):
    """Fit on `data.split.train` (and `.val`), then forecast any windows of the same frames.

    `predict` takes unscaled windows (as `PreparedData.windows.take(...)` gives them) and
    returns an (n_windows, n_levels) array of log-return quantiles in increasing level order.
    Forecasts for a window may use only data dated on or before the window's as-of day.
    """

    name: str

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = tuple(float(q) for q in levels)

    @abstractmethod
    def fit(self, data: PreparedData) -> QuantileForecaster: ...

    @abstractmethod
    def predict(self, windows: Windows) -> np.ndarray: ...


def positions(index: pd.DatetimeIndex, dates: np.ndarray, what: str) -> np.ndarray:
    """Integer positions of `dates` in `index`; every date must be present."""
    pos = index.get_indexer(pd.DatetimeIndex(dates))
    if (pos < 0).any():
        missing = pd.Timestamp(dates[int(np.flatnonzero(pos < 0)[0])]).date()
        raise ValueError(f"{what}: no data for as-of date {missing}")
    result: np.ndarray = pos
    return result


class ClassicForecaster(QuantileForecaster):
    """A classic method in the backtest: parameters estimated on each ticker's returns up to its
    last training day, then its `path` run with them fixed over the ticker's whole series; a
    window's forecast is the path's row at its as-of close, which reads closes up to it only."""

    def __init__(self, method: Method, levels: Sequence[float]) -> None:
        super().__init__(levels)
        self.method = method
        self.name = method.name
        self._params: dict[str, dict[str, float]] = {}
        self._closes: dict[str, pd.Series] = {}

    def fit(self, data: PreparedData) -> ClassicForecaster:
        train = data.windows.take(data.split.train)
        self._params, self._closes = {}, {}
        for ticker, frame in data.frames.items():
            closes = frame[CLOSE]
            if not self.method.estimates:
                self._params[ticker], self._closes[ticker] = {}, closes
                continue
            mask = train.tickers == ticker
            if not mask.any():
                continue
            last_train_day = pd.Timestamp(train.target_dates[mask].max())
            fitted = self.method.fit(closes.loc[:last_train_day].to_numpy())
            if fitted.problem is not None:
                logger.warning("%s %s: %s; params %s", self.name, ticker, fitted.problem,
                               fitted.params)  # fmt: skip
            self._params[ticker], self._closes[ticker] = fitted.params, closes
        return self

    @property
    def params(self) -> dict[str, dict[str, float]]:
        """Estimated parameters per ticker (what the bundle stores for serving); empty for a
        method with nothing to estimate."""
        return {t: p for t, p in self._params.items() if p}

    def predict(self, windows: Windows) -> np.ndarray:
        out = np.empty((len(windows), len(self.levels)))
        for ticker in dict.fromkeys(windows.tickers):
            closes = self._closes.get(ticker)
            if closes is None:
                raise NotFittedError(f"{self.name}: not fitted on {ticker}; call fit() first")
            mask = windows.tickers == ticker
            pos = positions(closes.index, windows.end_dates[mask], f"{self.name} {ticker}")
            first = int(pos.min())
            path = self.method.path(closes.to_numpy(), self._params[ticker], self.levels, first)
            out[mask] = path[pos - first]
        return out
