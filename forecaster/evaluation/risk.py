"""Scores and backtests of Value-at-Risk and Expected Shortfall forecasts.

Conventions: everything is in log returns, as the quantiles are. At tail probability `alpha`
(0.025 for the 97.5% measures), `var` is the alpha-quantile of the return (negative for a loss)
and `es` the mean return below it (es <= var < 0). A day is an exception when its return falls
below `var`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats

Zone = Literal["green", "yellow", "red"]

# Acerbi and Szekely (2014), "Backtesting Expected Shortfall", Risk: the 5% critical value of
# Z2 at alpha = 2.5% is stable at about -0.70 across the distributions they simulated (Student-t
# with 3..100 degrees of freedom, 250 days), so a Z2 below it rejects the ES forecasts at 5%
# without simulating each day's predictive distribution.
Z2_CRITICAL_5PCT = -0.70

# Basel Committee (1996), supervisory framework for backtesting: a count of exceptions is green
# while the binomial probability of at most that many stays below 95%, red once it reaches
# 99.99%, yellow in between (0-4 / 5-9 / 10+ for 250 days of 1-day 99% VaR).
GREEN_BELOW = 0.95
RED_FROM = 0.9999
BASEL_DAYS = 250
BASEL_ALPHA = 0.01


def _check(alpha: float, es: np.ndarray) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if np.any(es >= 0):
        raise ValueError("es must be negative (the mean log return below VaR)")


def fz0_loss(y: np.ndarray, var: np.ndarray, es: np.ndarray, alpha: float) -> np.ndarray:
    """Per-day FZ0 loss of a (VaR, ES) forecast (Patton, Ziegel and Chen 2019), the zero-degree
    homogeneous member of the Fissler-Ziegel class: strictly consistent for the pair, so its
    mean ranks forecasters of ES as pinball ranks those of quantiles (lower is better; it can
    be negative)."""
    y, var, es = (np.asarray(a, dtype=float) for a in (y, var, es))
    _check(alpha, es)
    hit = (y <= var).astype(float)
    loss: np.ndarray = -hit * (var - y) / (alpha * es) + var / es + np.log(-es) - 1.0
    return loss


def acerbi_szekely_z2(y: np.ndarray, var: np.ndarray, es: np.ndarray, alpha: float) -> float:
    """Acerbi and Szekely's Z2 = sum(y I) / (T alpha |ES|) + 1: zero in expectation when VaR and
    ES are right, negative when the losses beyond VaR are larger or more frequent than
    forecast. Compare with Z2_CRITICAL_5PCT."""
    y, var, es = (np.asarray(a, dtype=float) for a in (y, var, es))
    _check(alpha, es)
    if len(y) == 0:
        return float("nan")
    hit = y < var
    return float(np.sum(y * hit / -es) / (len(y) * alpha) + 1.0)


def zone(exceptions: int, days: int = BASEL_DAYS, alpha: float = BASEL_ALPHA) -> Zone:
    """Basel traffic light of `exceptions` of `days` VaR forecasts at tail probability alpha."""
    if days < 1 or not 0 <= exceptions <= days:
        raise ValueError(f"need 0 <= exceptions <= days and days >= 1, got {exceptions}/{days}")
    cumulative = float(stats.binom.cdf(exceptions, days, alpha))
    if cumulative < GREEN_BELOW:
        return "green"
    return "red" if cumulative >= RED_FROM else "yellow"


def traffic_light(y: np.ndarray, var99: np.ndarray, days: int = BASEL_DAYS) -> tuple[Zone, int]:
    """The zone and exception count of the last `days` (fewer if that is all there is) 1-day
    99% VaR forecasts, as a supervisor would read them."""
    y, var99 = np.asarray(y, dtype=float)[-days:], np.asarray(var99, dtype=float)[-days:]
    if len(y) == 0:
        raise ValueError("no forecasts to read a traffic light from")
    exceptions = int(np.sum(y < var99))
    return zone(exceptions, len(y)), exceptions
