"""A next-day forecast as the product serves it: quantiles of the log return at the model's
levels, relative to a last close. Prices, intervals, the median, the implied volatility and the
prediction log's row are derived here, for the API, replay, `predict` and the backtest alike.
"""

from __future__ import annotations

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
    pairs = symmetric_pairs(levels)
    if not pairs:
        return np.full(len(q), np.nan)
    normal = NormalDist()
    estimates = [(q[:, j] - q[:, i]) / (2 * normal.inv_cdf(levels[j])) for i, j in pairs]
    volatility: np.ndarray = np.mean(estimates, axis=0)
    return volatility


@dataclass(frozen=True)
class QuantileForecast:
    """One forecast: `log_returns[i]` is the quantile at `levels[i]` of log(close on
    target_date / last_close)."""

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

    @property
    def prices(self) -> np.ndarray:
        return to_prices(self.last_close, self.log_returns)

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

    @property
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
