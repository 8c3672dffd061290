"""GARCH(1,1) and GJR-GARCH(1,1) with standardised Student-t errors and a constant mean: the
volatility baselines a quant uses (GJR adds the leverage effect: a fall raises tomorrow's
variance more than a rise of the same size, Glosten, Jagannathan and Runkle 1993).

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
from forecaster.methods.base import Bars, Fit, Method, Params, log_returns

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


def backcast(e2: np.ndarray) -> float:
    """arch's starting variance: the exponentially weighted mean of the first squared
    residuals."""
    tau = min(_BACKCAST_DAYS, len(e2))
    weights = _BACKCAST_DECAY ** np.arange(tau)
    return float(np.sum(weights / weights.sum() * e2[:tau]))


def garch_variances(returns_pct: np.ndarray, params: Params) -> np.ndarray:
    """(n + 1,) conditional variances (percent squared) of a constant-mean GARCH(1,1), with the
    GJR term where the parameters have `gamma[1]`, filtered over n returns with fixed
    parameters from arch's backcast: entry t is return t's, as forecast the day before; the
    last is the next day's."""
    e = returns_pct - params["mu"]
    e2 = e**2
    start = backcast(e2)
    omega, alpha, beta = params["omega"], params["alpha[1]"], params["beta[1]"]
    gamma = params.get("gamma[1]", 0.0)
    # The shock of day t - 1 for t = 0 .. n; before the first return, arch puts the backcast
    # in the symmetric term and half of it in the asymmetric one.
    shock = omega + np.concatenate(
        [[(alpha + 0.5 * gamma) * start], (alpha + gamma * (e < 0)) * e2]
    )
    sigma2, _ = lfilter([1.0], [1.0, -beta], shock, zi=[beta * start])
    variances: np.ndarray = sigma2
    return variances


def arch_fit(bars: Bars, **model: object) -> Fit:
    """arch's maximum-likelihood fit of a constant-mean model with Student-t errors on the
    bars' returns in percent, and why it is doubtful where it is."""
    from arch import arch_model  # only fits pay for the import; serving filters

    returns = log_returns(bars.close) * PERCENT
    spec = arch_model(returns, mean="Constant", dist="t", rescale=False, **model)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter: checked below
        result = spec.fit(disp="off", show_warning=False)
    params = {str(k): float(v) for k, v in result.params.items()}
    problem = None
    if result.convergence_flag != 0:
        problem = f"the optimiser did not converge (flag {result.convergence_flag})"
    elif not all(math.isfinite(v) for v in params.values()):
        problem = "a parameter is not finite"
    return Fit(params, problem)


class Garch(Method):
    name = "garch"
    description = "GARCH(1,1)-t"
    label = "GARCH"
    min_returns = 2
    earliest = 0  # the first forecast comes from the backcast alone
    # A fit on fewer returns than this is too noisy to trust (about a trading year).
    fit_min_returns = 250
    asymmetric = 0  # arch's `o`: the order of the leverage term

    def fit(self, bars: Bars, levels: Sequence[float]) -> Fit:
        return arch_fit(bars, vol="GARCH", p=1, o=self.asymmetric, q=1)

    def variances(self, returns_pct: np.ndarray, params: Params) -> np.ndarray:
        """(n + 1,) conditional variances in percent squared; the last is the next day's."""
        return garch_variances(returns_pct, params)

    def path(self, bars: Bars, params: Params, levels: Sequence[float], first: int) -> np.ndarray:
        returns = log_returns(bars.close) * PERCENT
        if len(returns) < self.min_returns or not 0 <= first < len(bars):
            raise DataValidationError(f"{self.label} needs at least {self.min_returns} returns")
        std = np.sqrt(self.variances(returns, params)[first:])[:, None]
        out: np.ndarray = (params["mu"] + std * standardised_t(levels, params["nu"])) / PERCENT
        return out


class GjrGarch(Garch):
    name = "gjr"
    description = "GJR-GARCH(1,1)-t"
    label = "GJR-GARCH"
    asymmetric = 1
