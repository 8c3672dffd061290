"""A next-day forecast as the product serves it: quantiles of the log return at the model's
levels, relative to a last close. Prices, intervals, the median, the implied volatility and the
prediction log's row are derived here, for the API, replay, `predict` and the backtest alike.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import date
from statistics import NormalDist
from typing import Any

import numpy as np

from forecaster.config import level_key
from forecaster.levels import interval_columns, median_index, symmetric_pairs


def quantile_column(level: float) -> str:
    """Output column of one quantile's log return: 0.05 -> 'q0.05' (CSV, pyfunc rows)."""
    return f"q{level_key(level)}"


def to_prices(last_close: np.ndarray | float, q: np.ndarray) -> np.ndarray:
    """Prices of log-return quantiles: `last_close * exp(q)`, row by row for (n, levels) with
    (n,) closes; an overflow is inf (a caller refuses it), never a warning."""
    closes = np.asarray(last_close, dtype=np.float64)
    with np.errstate(over="ignore"):
        prices: np.ndarray = (closes[..., None] if closes.ndim else closes) * np.exp(q)
    return prices


def implied_volatility(q: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Normal-equivalent one-day standard deviation of the log return implied by the quantile
    spread, per row of (n, levels): the mean over symmetric level pairs of
    (q_hi - q_lo) / (2 z_hi); nan without a pair."""
    lows, highs, widths = _pair_widths(tuple(levels))
    if not len(lows):
        return np.full(len(q), np.nan)
    volatility: np.ndarray = ((q[:, highs] - q[:, lows]) / widths).mean(axis=1)
    return volatility


@functools.lru_cache(maxsize=64)
def _pair_widths(levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each symmetric pair's (low column, high column, 2 z_hi): per set of levels once, not per
    forecast (the served path asks for every answer's volatility)."""
    pairs = symmetric_pairs(levels)
    normal = NormalDist()
    lows = np.array([i for i, _ in pairs], dtype=np.intp)
    highs = np.array([j for _, j in pairs], dtype=np.intp)
    widths = np.array([2 * normal.inv_cdf(levels[j]) for _, j in pairs], dtype=np.float64)
    return lows, highs, widths


@dataclass(frozen=True)
class QuantileForecast:
    """One forecast: `log_returns[i]` is the quantile at `levels[i]` of log(close on
    target_date / last_close). Its prices and volatility are computed once per forecast (an
    answer and its log row read them several times)."""

    levels: tuple[float, ...]
    log_returns: np.ndarray
    last_close: float
    as_of: date
    target_date: date | None = None

    def __post_init__(self) -> None:
        if np.shape(self.log_returns) != (len(self.levels),):
            raise ValueError(
                f"{len(self.levels)} levels but log returns of shape {np.shape(self.log_returns)}"
            )

    @functools.cached_property
    def prices(self) -> np.ndarray:
        prices = to_prices(self.last_close, self.log_returns)
        prices.flags.writeable = False  # shared by every reader of this forecast
        return prices

    @property
    def median_return(self) -> float:
        return float(self.log_returns[median_index(self.levels)])

    @property
    def median(self) -> float:
        """The point forecast: the median's price."""
        return float(self.prices[median_index(self.levels)])

    def interval(self, coverage: float) -> tuple[float, float]:
        """(lower, upper) prices of the central interval."""
        lo, hi = interval_columns(self.levels, coverage)
        prices = self.prices
        return float(prices[lo]), float(prices[hi])

    def price_quantiles(self) -> dict[str, float]:
        """Price at every level, keyed as levels are spelled in JSON ("0.05")."""
        return {level_key(lv): float(p) for lv, p in zip(self.levels, self.prices, strict=True)}

    @functools.cached_property
    def volatility(self) -> float:
        return float(implied_volatility(self.log_returns[None, :], self.levels)[0])

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.log_returns).all() and np.isfinite(self.prices).all())

    def log_row(self, interval_level: float) -> dict[str, Any]:
        """The forecast's columns of a prediction-log row (who asked and which model made it
        are the caller's)."""
        lower, upper = self.interval(interval_level)
        return {
            "as_of": self.as_of,
            "target_date": self.target_date,
            "last_close": self.last_close,
            "predicted_close": self.median,
            "predicted_return": self.median_return,
            "lower": lower,
            "upper": upper,
            "interval_level": interval_level,
            "quantiles": json.dumps(self.price_quantiles()),
            "volatility": self.volatility,
        }
