"""The backtest's interface to a method: fit on a fold, forecast any windows of its frames.

`QuantileForecaster` is what the backtest, evaluation and the gate's scoring take: the network
(forecaster.methods.lstm), the ridge baseline (forecaster.methods.linear), and every classic
method through `ClassicForecaster`, which runs the method's own `path`, the function the service
serves with, over each ticker's series.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from forecaster.data.dataset import PreparedData
from forecaster.data.windows import Windows
from forecaster.errors import NotFittedError
from forecaster.methods.base import Bars, Method
from forecaster.methods.combination import Combination

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
        self._bars: dict[str, tuple[pd.DatetimeIndex, Bars]] = {}

    def fit(self, data: PreparedData) -> ClassicForecaster:
        train = data.windows.take(data.split.train)
        self._params, self._bars = {}, {}
        for ticker, frame in data.frames.items():
            bars = Bars.of_frame(frame)
            if not self.method.estimates:
                self._params[ticker], self._bars[ticker] = {}, (frame.index, bars)
                continue
            mask = train.tickers == ticker
            if not mask.any():
                continue
            last_train_day = pd.Timestamp(train.target_dates[mask].max())
            upto = int(frame.index.searchsorted(last_train_day, side="right"))
            fitted = self.method.fit(bars.head(upto), self.levels)
            if fitted.problem is not None:
                logger.warning("%s %s: %s; params %s", self.name, ticker, fitted.problem,
                               fitted.params)  # fmt: skip
            self._params[ticker], self._bars[ticker] = fitted.params, (frame.index, bars)
        return self

    @classmethod
    def combining(
        cls, weights: Mapping[str, float], members: Mapping[str, ClassicForecaster]
    ) -> ClassicForecaster:
        """The combination of fitted members with these weights, on every ticker they were all
        fitted on, with their parameters (nothing is refitted)."""
        chosen = {name: members[name] for name in weights}
        first = next(iter(chosen.values()))
        out = cls(Combination(weights, {n: m.method for n, m in chosen.items()}), first.levels)
        for ticker, state in first._bars.items():
            if all(ticker in m._bars for m in chosen.values()):
                out._params[ticker] = Combination.merge(
                    {n: m._params[ticker] for n, m in chosen.items()}
                )
                out._bars[ticker] = state
        return out

    @property
    def params(self) -> dict[str, dict[str, float]]:
        """Estimated parameters per ticker (what the bundle stores for serving); empty for a
        method with nothing to estimate."""
        return {t: p for t, p in self._params.items() if p}

    def predict(self, windows: Windows) -> np.ndarray:
        out = np.empty((len(windows), len(self.levels)))
        for ticker in dict.fromkeys(windows.tickers):
            found = self._bars.get(ticker)
            if found is None:
                raise NotFittedError(f"{self.name}: not fitted on {ticker}; call fit() first")
            index, bars = found
            mask = windows.tickers == ticker
            pos = positions(index, windows.end_dates[mask], f"{self.name} {ticker}")
            first = int(pos.min())
            path = self.method.path(bars, self._params[ticker], self.levels, first)
            out[mask] = path[pos - first]
        return out
