"""Proper scores and forecast tests for quantile forecasts: pure numpy/scipy, no IO.

Everything scores forecasts of the next-day log return given as quantiles at fixed levels:
`q` is (n_days, n_levels), `y` the realised returns (n_days,), `levels` increasing in (0, 1).
Lower is better for every loss. The tests return p-values (NaN where a test is undefined, such
as a constant loss differential), so callers can print them and decide for themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from forecaster.levels import interval_columns as interval_columns  # re-exported


def _levels(levels: Sequence[float]) -> np.ndarray:
    array = np.asarray(levels, dtype=np.float64)
    if array.ndim != 1 or not np.all((array > 0) & (array < 1)):
        raise ValueError(f"quantile levels must lie in (0, 1), got {list(levels)}")
    if np.any(np.diff(array) <= 0):
        raise ValueError(f"quantile levels must be strictly increasing, got {list(levels)}")
    return array


def pinball(q: np.ndarray, y: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """(n_days, n_levels) quantile (pinball) loss of every forecast quantile."""
    tau = _levels(levels)
    if q.ndim != 2 or q.shape != (len(y), len(tau)):
        raise ValueError(f"quantiles have shape {q.shape}, expected ({len(y)}, {len(tau)})")
    diff = y[:, None] - q
    loss: np.ndarray = np.maximum(tau * diff, (tau - 1.0) * diff)
    return loss


def pinball_per_day(q: np.ndarray, y: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Mean pinball loss over the levels, one value per day (the DM test's loss series)."""
    per_day: np.ndarray = pinball(q, y, levels).mean(axis=1)
    return per_day


def crps_weights(levels: Sequence[float]) -> np.ndarray:
    """Trapezoid weights over the levels for CRPS = 2 * integral of pinball_tau over tau.

    Each level stands for the stretch of (0, 1) halfway to its neighbours, the outermost ones
    out to 0 and 1, so unevenly spaced levels (0.05, 0.1, 0.25, ...) are weighted by the part of
    the distribution they represent rather than equally.
    """
    tau = _levels(levels)
    edges = np.concatenate([[0.0], (tau[1:] + tau[:-1]) / 2, [1.0]])
    weights: np.ndarray = np.diff(edges)
    return weights


def crps_per_day(q: np.ndarray, y: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """CRPS approximated from the quantiles (2 x weighted pinball), one value per day."""
    per_day: np.ndarray = 2.0 * pinball(q, y, levels) @ crps_weights(levels)
    return per_day


def violations(lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True on the days the realised value fell outside [lower, upper]."""
    outside: np.ndarray = (y < lower) | (y > upper)
    return outside


def winkler(lower: np.ndarray, upper: np.ndarray, y: np.ndarray, coverage: float) -> np.ndarray:
    """Interval (Winkler) score per day: width plus 2/alpha times the distance outside."""
    alpha = 1.0 - coverage
    below = np.clip(lower - y, 0.0, None)
    above = np.clip(y - upper, 0.0, None)
    score: np.ndarray = (upper - lower) + (2.0 / alpha) * (below + above)
    return score


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else x * math.log(y)


def kupiec_pvalue(hits: np.ndarray, coverage: float) -> float:
    """Kupiec's proportion-of-failures LR test: is the violation rate 1 - coverage?"""
    n = len(hits)
    if n == 0:
        return math.nan
    x = int(np.sum(hits))
    p = 1.0 - coverage
    observed = x / n
    log_null = _xlogy(n - x, 1 - p) + _xlogy(x, p)
    log_alt = _xlogy(n - x, 1 - observed) + _xlogy(x, observed)
    lr = max(-2.0 * (log_null - log_alt), 0.0)
    return float(stats.chi2.sf(lr, df=1))


def christoffersen_pvalue(hits: np.ndarray) -> float:
    """Christoffersen's independence LR test: do violations cluster (first-order Markov)?

    NaN when the test is undefined: no violations at all, or violations on every day.
    """
    h = np.asarray(hits, dtype=bool)
    if len(h) < 2 or h.all() or not h.any():
        return math.nan
    prev, curr = h[:-1], h[1:]
    n00 = int(np.sum(~prev & ~curr))
    n01 = int(np.sum(~prev & curr))
    n10 = int(np.sum(prev & ~curr))
    n11 = int(np.sum(prev & curr))
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    log_null = _xlogy(n00 + n10, 1 - pi) + _xlogy(n01 + n11, pi)
    log_alt = _xlogy(n00, 1 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1 - pi1) + _xlogy(n11, pi1)
    lr = max(-2.0 * (log_null - log_alt), 0.0)
    return float(stats.chi2.sf(lr, df=1))


def newey_west_lags(n: int) -> int:
    """Newey and West's (1994) rule of thumb, floor(4 (n / 100)^(2/9)): loss differentials of
    volatility forecasts are serially correlated even one step ahead (volatility clusters)."""
    return math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)) if n > 0 else 0


def long_run_variance(d: np.ndarray, lags: int) -> float:
    """Newey-West (Bartlett kernel) long-run variance of a series about its mean:
    gamma_0 + 2 sum_{j=1..L} (1 - j / (L + 1)) gamma_j, autocovariances divided by n."""
    centred = d - d.mean()
    n = len(centred)
    total = float(centred @ centred) / n
    for j in range(1, min(lags, n - 1) + 1):
        total += 2.0 * (1.0 - j / (lags + 1.0)) * float(centred[j:] @ centred[:-j]) / n
    return total


def diebold_mariano(
    loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1, lags: int | None = None
) -> tuple[float, float, float]:
    """Diebold-Mariano test of equal loss with a HAC variance and the Harvey-Leybourne-Newbold
    small-sample correction.

    The mean loss differential d = a - b is divided by the square root of its Newey-West
    long-run variance over n (`lags` autocovariances, at least horizon - 1 since h-step errors
    overlap; Newey-West's rule of thumb by default), times HLN's factor
    sqrt((n + 1 - 2h + h(h - 1)/n) / n), and referred to Student's t with n - 1 degrees of
    freedom (Harvey, Leybourne and Newbold 1997). Returns
    (statistic, p-value that `a` is better, p-value that `a` is worse), one-sided: a negative
    statistic means `a` has the smaller losses. NaN where the variance is not positive.
    """
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    n, h = len(d), int(horizon)
    if n < 3 or h < 1 or np.all(d == d[0]):
        return math.nan, math.nan, math.nan
    chosen = max(h - 1, newey_west_lags(n) if lags is None else int(lags))
    variance = long_run_variance(d, chosen)
    if not variance > 0:  # Bartlett weights keep it >= 0; 0 only for a constant differential
        return math.nan, math.nan, math.nan
    correction = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    dm = float(np.mean(d) / math.sqrt(variance / n)) * correction
    return dm, float(stats.t.cdf(dm, df=n - 1)), float(stats.t.sf(dm, df=n - 1))


def pit_values(q: np.ndarray, y: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Probability integral transform from the quantiles, by linear interpolation of the CDF
    between levels (clipped to the outermost levels); uniform if the forecasts are calibrated
    within the range the levels cover."""
    tau = _levels(levels)
    out = np.empty(len(y))
    for i in range(len(y)):
        out[i] = np.interp(y[i], q[i], tau, left=0.0, right=1.0)
    return out


def lowest(losses: Mapping[str, float]) -> str | None:
    """The name with the lowest finite mean loss (the first on a tie), or None: how the gate,
    the routes and the summaries name the strongest comparator."""
    finite = {name: loss for name, loss in losses.items() if math.isfinite(loss)}
    return min(finite, key=lambda name: finite[name]) if finite else None
