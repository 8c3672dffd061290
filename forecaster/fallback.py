"""The baselines as served forecasters: GARCH(1,1)-t and the empirical random walk, computed
from a history's closes at request time.

Where the model has not earned a ticker, one of these answers instead (see `gate.route`). For a
ticker of the universe, GARCH runs with the parameters fitted on its training returns and is only
filtered over the request's history (microseconds); for a ticker no model has seen, it is fitted
on the request's own history when that holds at least GARCH_MIN_RETURNS returns (tens of
milliseconds), and below that the empirical random walk answers. Pure numpy and scipy here; the
`arch` fit is imported only when a fit is needed.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.signal import lfilter
from scipy.stats import t as student_t

from forecaster.errors import DataValidationError

logger = logging.getLogger(__name__)

# arch's optimiser works on returns in percent; parameters are stored that way.
PERCENT = 100.0
# A GARCH(1,1)-t fit on fewer returns than this is too noisy to trust (about a trading year).
GARCH_MIN_RETURNS = 250
# The empirical random walk needs this many returns for its quantiles.
NAIVE_MIN_RETURNS = 20
# arch's backcast: an exponentially weighted mean of the first squared residuals.
_BACKCAST_DAYS, _BACKCAST_DECAY = 75, 0.94


def log_returns(closes: np.ndarray) -> np.ndarray:
    returns: np.ndarray = np.diff(np.log(np.asarray(closes, dtype=np.float64)))
    return returns


def naive_quantiles(closes: np.ndarray, levels: Sequence[float], window: int) -> np.ndarray:
    """The random walk's log-return quantiles: the trailing `window` returns' empirical
    quantiles, shifted to a zero median (as the backtest's naive baseline)."""
    returns = log_returns(closes)[-window:]
    if len(returns) < NAIVE_MIN_RETURNS:
        raise DataValidationError(
            f"the random walk needs {NAIVE_MIN_RETURNS} returns, the history has {len(returns)}"
        )
    out: np.ndarray = np.quantile(returns, levels) - np.median(returns)
    return out


def standardised_t(levels: Sequence[float], nu: float) -> np.ndarray:
    """Quantiles of Student's t scaled to unit variance (arch's `StudentsT`)."""
    z: np.ndarray = student_t.ppf(np.asarray(levels, dtype=np.float64), nu) * math.sqrt(
        (nu - 2.0) / nu
    )
    return z


def garch_variances(returns_pct: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """(n + 1,) conditional variances (percent squared) of a constant-mean GARCH(1,1) filtered
    over n returns with fixed parameters from arch's backcast: entry t is return t's, as
    forecast the day before; the last is the next day's."""
    e2 = (returns_pct - params["mu"]) ** 2
    tau = min(_BACKCAST_DAYS, len(e2))
    weights = _BACKCAST_DECAY ** np.arange(tau)
    backcast = float(np.sum(weights / weights.sum() * e2[:tau]))
    omega, alpha, beta = params["omega"], params["alpha[1]"], params["beta[1]"]
    lagged = np.concatenate([[backcast], e2])  # e_{t-1}^2 for t = 0 .. n
    sigma2, _ = lfilter([1.0], [1.0, -beta], omega + alpha * lagged, zi=[beta * backcast])
    variances: np.ndarray = sigma2
    return variances


def garch_next_variance(returns_pct: np.ndarray, params: Mapping[str, float]) -> float:
    """Next-day variance (percent squared): the last of `garch_variances`."""
    return float(garch_variances(returns_pct, params)[-1])


def garch_path(
    closes: np.ndarray, levels: Sequence[float], params: Mapping[str, float]
) -> np.ndarray:
    """(n_returns + 1, n_levels) GARCH(1,1)-t log-return quantiles: row t is the forecast of
    return t made the day before, the last row the next day's."""
    returns = log_returns(closes) * PERCENT
    if len(returns) < 2:
        raise DataValidationError("GARCH needs at least 2 returns")
    std = np.sqrt(garch_variances(returns, params))[:, None]
    out: np.ndarray = (params["mu"] + std * standardised_t(levels, params["nu"])) / PERCENT
    return out


def garch_quantiles(
    closes: np.ndarray, levels: Sequence[float], params: Mapping[str, float]
) -> np.ndarray:
    """Next-day log-return quantiles of GARCH(1,1)-t with the given (percent) parameters."""
    last: np.ndarray = garch_path(closes, levels, params)[-1]
    return last


def naive_path(closes: np.ndarray, levels: Sequence[float], window: int, days: int) -> np.ndarray:
    """(m + 1, n_levels): the random walk's forecasts of the last m <= `days` returns, each from
    the `window` returns before it (at least NAIVE_MIN_RETURNS), then the next day's."""
    returns = log_returns(closes)
    n = len(returns)
    first = max(NAIVE_MIN_RETURNS, n - days)
    if first > n:
        raise DataValidationError(
            f"the random walk needs {NAIVE_MIN_RETURNS} returns, the history has {n}"
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


def fit_garch(closes: np.ndarray) -> dict[str, float]:
    """GARCH(1,1)-t parameters (percent units) fitted on a history's own returns."""
    returns = log_returns(closes) * PERCENT
    if len(returns) < GARCH_MIN_RETURNS:
        raise DataValidationError(
            f"a GARCH fit needs {GARCH_MIN_RETURNS} returns, the history has {len(returns)}"
        )
    from arch import arch_model  # only unseen tickers with long histories pay for the import

    model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(disp="off", show_warning=False)
    params = {str(k): float(v) for k, v in result.params.items()}
    if result.convergence_flag != 0 or not all(math.isfinite(v) for v in params.values()):
        raise DataValidationError("the GARCH fit on this history did not converge")
    return params
