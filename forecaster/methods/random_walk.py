"""The probabilistic random walk: zero median (tomorrow's close is today's), the spread of the
trailing `window` daily log returns (their empirical quantiles shifted to a zero median)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from forecaster.config import EvaluationConfig
from forecaster.errors import DataValidationError
from forecaster.methods.base import Bars, Fit, Method, Params, log_returns


class RandomWalk(Method):
    """Nothing is estimated: a forecast reads the returns up to its as-of close only."""

    name = "naive"
    description = "the empirical random walk"
    label = "the random walk"
    min_returns = 20
    earliest = min_returns

    @classmethod
    def from_config(cls, evaluation: EvaluationConfig) -> RandomWalk:
        return cls(window=evaluation.naive_window)

    def __init__(self, window: int = 250) -> None:
        if window < self.min_returns:
            raise ValueError(f"the random walk's window must be >= {self.min_returns}: {window}")
        self.window = int(window)

    def settings(self) -> dict[str, Any]:
        return {"window": self.window}

    def fit(self, bars: Bars, levels: Sequence[float]) -> Fit:
        return Fit()

    def path(self, bars: Bars, params: Params, levels: Sequence[float], first: int) -> np.ndarray:
        returns = log_returns(bars.close)
        n, window = len(returns), self.window
        if first < self.min_returns or first > n:
            raise DataValidationError(
                f"the random walk needs {self.min_returns} returns before a forecast, the "
                f"history has {n}"
            )
        if first >= window:  # every forecast has a full window: one vectorised pass
            spans = np.lib.stride_tricks.sliding_window_view(returns, window)[first - window :]
            q = np.quantile(spans, levels, axis=1).T
            out: np.ndarray = q - np.median(spans, axis=1)[:, None]
            return out
        # Shorter windows at the start of the history: NaN-padded to one width and sorted (NaN
        # last), then numpy's linear-interpolation quantile of each row's valid values.
        padded = np.concatenate([np.full(window, np.nan), returns])
        ordered = np.sort(np.lib.stride_tricks.sliding_window_view(padded, window)[first : n + 1])
        valid = np.minimum(np.arange(first, n + 1), window)[:, None]
        partial: np.ndarray = _sorted_quantiles(ordered, valid, levels) - _sorted_quantiles(
            ordered, valid, (0.5,)
        )
        return partial


def _sorted_quantiles(
    ordered: np.ndarray, valid: np.ndarray, levels: Sequence[float]
) -> np.ndarray:
    """(rows, levels) quantiles of each row's first `valid` (sorted) values, interpolated as
    np.quantile's default ('linear') does."""
    position = (valid - 1) * np.asarray(levels, dtype=np.float64)[None, :]
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, valid - 1)
    rows = np.arange(len(ordered))[:, None]
    low, high = ordered[rows, below], ordered[rows, above]
    out: np.ndarray = low + (position - below) * (high - low)
    return out
