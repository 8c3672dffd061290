"""GARCH(1,1) with standardised Student-t errors and a constant mean: the volatility baseline a
quant uses.

`fit` is `arch`'s maximum likelihood on returns in percent (imported only when a fit runs);
`path` is the model run forward with those parameters fixed, arch's recursion from arch's
backcast in numpy (microseconds), so each day's forecast reads returns up to that day only. A
test holds every row of it to `arch`'s own `fix(...).forecast(...)`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter
from scipy.stats import t as student_t

from forecaster.errors import DataValidationError
from forecaster.methods.base import Fit, Method, Params, log_returns

# arch's optimiser is best conditioned on returns in percent; parameters are stored that way.
PERCENT = 100.0
# arch's backcast: an exponentially weighted mean of the first squared residuals.
_BACKCAST_DAYS, _BACKCAST_DECAY = 75, 0.94


def standardised_t(levels: Sequence[float], nu: float) -> np.ndarray:
    """Quantiles of Student's t scaled to unit variance (arch's `StudentsT`)."""
    z: np.ndarray = student_t.ppf(np.asarray(levels, dtype=np.float64), nu) * math.sqrt(
        (nu - 2.0) / nu
    )
    return z


def garch_variances(returns_pct: np.ndarray, params: Params) -> np.ndarray:
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


class Garch(Method):
    name = "garch"
    description = "GARCH(1,1)-t"
    label = "GARCH"
    min_returns = 2
    earliest = 0  # the first forecast comes from the backcast alone
    # A fit on fewer returns than this is too noisy to trust (about a trading year).
    fit_min_returns = 250

    def fit(self, closes: np.ndarray) -> Fit:
        from arch import arch_model  # only fits pay for the import; serving filters

        returns = log_returns(closes) * PERCENT
        model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t",
                           rescale=False)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter: checked below
            result = model.fit(disp="off", show_warning=False)
        params = {str(k): float(v) for k, v in result.params.items()}
        problem = None
        if result.convergence_flag != 0:
            problem = f"the optimiser did not converge (flag {result.convergence_flag})"
        elif not all(math.isfinite(v) for v in params.values()):
            problem = "a parameter is not finite"
        return Fit(params, problem)

    def path(
        self, closes: np.ndarray, params: Params, levels: Sequence[float], first: int
    ) -> np.ndarray:
        returns = log_returns(closes) * PERCENT
        if len(returns) < self.min_returns or not 0 <= first < len(closes):
            raise DataValidationError(f"GARCH needs at least {self.min_returns} returns")
        std = np.sqrt(garch_variances(returns, params)[first:])[:, None]
        out: np.ndarray = (params["mu"] + std * standardised_t(levels, params["nu"])) / PERCENT
        return out
