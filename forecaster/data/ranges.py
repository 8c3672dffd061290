"""Range-based daily variance: one owner for the estimators the features and the HAR method
read. Pure numpy on price arrays (no pandas), so the served methods may import it.

A day's variance is the overnight gap ln(O_t / C_{t-1}) squared plus an open-to-close
estimator from the day's bar: Garman-Klass (1980), 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2, the
most efficient without drift; Rogers-Satchell (1991), unbiased under drift; or Parkinson's
(1980) high-low ln(H/L)^2 / (4 ln 2). Each carries several times the information of a squared
close-to-close return.
"""

from __future__ import annotations

import math

import numpy as np

ESTIMATORS = ("garman_klass", "rogers_satchell", "parkinson")
# A day whose bar did not move gets this variance (a 0.01% daily volatility), not log(0).
FLOOR = 1e-8
_GK = 2.0 * math.log(2.0) - 1.0


def daily_range_variance(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    estimator: str = "garman_klass",
) -> np.ndarray:
    """(n - 1,) variances of bars 1 .. n - 1 (each needs the close before it), floored."""
    o, h, lo, c = (np.log(np.asarray(v, dtype=np.float64)) for v in (open_, high, low, close))
    gap = (o[1:] - c[:-1]) ** 2
    hl, co = h[1:] - lo[1:], c[1:] - o[1:]
    if estimator == "garman_klass":
        day = 0.5 * hl**2 - _GK * co**2
    elif estimator == "rogers_satchell":
        day = (h[1:] - c[1:]) * (h[1:] - o[1:]) + (lo[1:] - c[1:]) * (lo[1:] - o[1:])
    elif estimator == "parkinson":
        day = hl**2 / (4.0 * math.log(2.0))
    else:
        raise ValueError(f"unknown range estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    out: np.ndarray = np.maximum(gap + np.maximum(day, 0.0), FLOOR)
    return out
