"""The forecaster interface: fit on a fold, predict next-day log-return quantiles."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecaster.dataset import PreparedData
from forecaster.schemas import CLOSE
from forecaster.windows import Windows


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


def log_returns(frame: pd.DataFrame) -> pd.Series:
    """Daily log returns of close, dated by the day they end (the first day has none)."""
    returns: pd.Series = np.log(frame[CLOSE]).diff().iloc[1:]
    return returns


def positions(index: pd.DatetimeIndex, dates: np.ndarray, what: str) -> np.ndarray:
    """Integer positions of `dates` in `index`; every date must be present."""
    pos = index.get_indexer(pd.DatetimeIndex(dates))
    if (pos < 0).any():
        missing = pd.Timestamp(dates[int(np.flatnonzero(pos < 0)[0])]).date()
        raise ValueError(f"{what}: no data for as-of date {missing}")
    result: np.ndarray = pos
    return result
