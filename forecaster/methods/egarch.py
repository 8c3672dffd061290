"""EGARCH(1,1)-t (Nelson 1991) with a constant mean: the log variance responds to the size and
the sign of yesterday's standardised shock, so it needs no positivity constraint and captures
the leverage effect on stocks.

`fit` is `arch`'s maximum likelihood (`vol="EGARCH", o=1`, returns in percent); `path` is arch's
recursion from arch's backcast, run forward with the parameters fixed (a loop over the history,
a fraction of a millisecond for a year of days). A test holds every row to `arch`'s own
`fix(...).forecast(...)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from forecaster.methods.base import Bars, Fit, Params
from forecaster.methods.garch import Garch, arch_fit, backcast

_SQRT2_OV_PI = math.sqrt(2.0 / math.pi)
_LNSIGMA_MAX = math.log(np.finfo(np.float64).max) - 0.1  # arch's ceiling on the log variance


def egarch_variances(returns_pct: np.ndarray, params: Params) -> np.ndarray:
    """(n + 1,) conditional variances (percent squared) of a constant-mean EGARCH(1,1,1):
    ln s2_t = omega + alpha (|z_{t-1}| - sqrt(2/pi)) + gamma z_{t-1} + beta ln s2_{t-1}, from
    arch's log backcast (the shock terms are absent on the first day, as in arch)."""
    e = returns_pct - params["mu"]
    omega, alpha = params["omega"], params["alpha[1]"]
    gamma, beta = params["gamma[1]"], params["beta[1]"]
    n = len(e)
    log_s2 = np.empty(n + 1)
    log_s2[0] = min(omega + beta * math.log(backcast(e**2)), _LNSIGMA_MAX)
    previous = log_s2[0]
    for t in range(n):
        z = e[t] / math.exp(0.5 * previous)
        previous = min(omega + alpha * (abs(z) - _SQRT2_OV_PI) + gamma * z + beta * previous,
                       _LNSIGMA_MAX)  # fmt: skip
        log_s2[t + 1] = previous
    variances: np.ndarray = np.exp(log_s2)
    return variances


class Egarch(Garch):
    name = "egarch"
    description = "EGARCH(1,1)-t"
    label = "EGARCH"

    def fit(self, bars: Bars, levels: Sequence[float]) -> Fit:
        return arch_fit(bars, vol="EGARCH", p=1, o=1, q=1)

    def variances(self, returns_pct: np.ndarray, params: Params) -> np.ndarray:
        return egarch_variances(returns_pct, params)
