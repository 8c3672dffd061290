"""Metrics in price space for the model and two baselines on exactly the same target days.

Naive persistence (tomorrow's close = today's close) is the bar: a forecast that merely lags the
price looks good on a plot and scores an MAE ratio of about 1. On daily index data a ratio far
below ~0.98, or a directional accuracy above ~0.58, almost certainly means look-ahead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.linear_model import Ridge

from forecaster.windows import Windows


@dataclass(frozen=True)
class PointMetrics:
    mae: float
    rmse: float
    mape: float  # percent
    directional_accuracy: float  # share of days whose predicted sign matches the realised one


@dataclass(frozen=True)
class ModelMetrics(PointMetrics):
    coverage: float  # share of realised closes inside the interval
    interval_width: float  # mean width of the interval, in price units
    interval_level: float  # nominal coverage


@dataclass(frozen=True)
class Evaluation:
    model: ModelMetrics
    naive: PointMetrics
    linear: PointMetrics
    n_days: int
    mae_ratio_vs_naive: float
    linear_mae_ratio_vs_naive: float
    up_day_share: float
    directional_accuracy_ci: tuple[float, float]  # 95% binomial (Clopper-Pearson) interval
    up_day_share_ci: tuple[float, float]
    dm_statistic: float  # Diebold-Mariano, absolute errors, model vs naive; < 0: model better
    dm_pvalue: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat_metrics(self) -> dict[str, float]:
        """Flat `model_mae`, `naive_rmse`, ... for MLflow."""
        out: dict[str, float] = {}
        for prefix, metrics in (
            ("model", self.model),
            ("naive", self.naive),
            ("linear", self.linear),
        ):
            for key, value in asdict(metrics).items():
                out[f"{prefix}_{key}"] = float(value)
        for key in ("mae_ratio_vs_naive", "linear_mae_ratio_vs_naive", "up_day_share",
                    "dm_statistic", "dm_pvalue"):  # fmt: skip
            out[key] = float(getattr(self, key))
        out["n_days"] = float(self.n_days)
        return out


def point_metrics(
    predicted_close: np.ndarray, actual_close: np.ndarray, last_close: np.ndarray
) -> PointMetrics:
    error = predicted_close - actual_close
    predicted_move = np.sign(predicted_close - last_close)
    actual_move = np.sign(actual_close - last_close)
    return PointMetrics(
        mae=float(np.mean(np.abs(error))),
        rmse=float(np.sqrt(np.mean(error**2))),
        mape=float(100 * np.mean(np.abs(error) / actual_close)),
        directional_accuracy=float(np.mean(predicted_move == actual_move)),
    )


def diebold_mariano(errors_a: np.ndarray, errors_b: np.ndarray) -> tuple[float, float]:
    """DM test of equal absolute-error loss for 1-step forecasts, with the Harvey-Leybourne-
    Newbold small-sample correction; returns (statistic, two-sided p-value)."""
    d = np.abs(errors_a) - np.abs(errors_b)
    n = len(d)
    variance = np.var(d, ddof=0)
    if n < 3 or variance == 0:
        return math.nan, math.nan
    dm = float(np.mean(d) / math.sqrt(variance / n))
    dm *= math.sqrt((n - 1) / n)  # HLN correction for h = 1
    pvalue = float(2 * stats.t.sf(abs(dm), df=n - 1))
    return dm, pvalue


def _proportion_ci(successes: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def evaluate(
    windows: Windows,
    model_quantiles: np.ndarray,
    linear_returns: np.ndarray,
    interval_level: float,
) -> Evaluation:
    """Score (n, 3) lower/median/upper log-return quantiles and the linear baseline on `windows`."""
    n = len(windows)
    if n == 0:
        raise ValueError("cannot evaluate on zero windows")
    last, actual = windows.last_close, windows.target_close
    lower, median, upper = (last * np.exp(model_quantiles[:, i]) for i in (0, 1, 2))
    base = point_metrics(median, actual, last)
    model = ModelMetrics(
        **asdict(base),
        coverage=float(np.mean((actual >= lower) & (actual <= upper))),
        interval_width=float(np.mean(upper - lower)),
        interval_level=interval_level,
    )
    naive = point_metrics(last.copy(), actual, last)
    linear = point_metrics(last * np.exp(linear_returns), actual, last)
    ups = int(np.sum(actual > last))
    hits = round(model.directional_accuracy * n)
    dm, pvalue = diebold_mariano(median - actual, last - actual)
    return Evaluation(
        model=model,
        naive=naive,
        linear=linear,
        n_days=n,
        mae_ratio_vs_naive=model.mae / naive.mae,
        linear_mae_ratio_vs_naive=linear.mae / naive.mae,
        up_day_share=ups / n,
        directional_accuracy_ci=_proportion_ci(hits, n),
        up_day_share_ci=_proportion_ci(ups, n),
        dm_statistic=dm,
        dm_pvalue=pvalue,
    )


def fit_linear_baseline(train: Windows, val: Windows, alphas: Sequence[float]) -> Ridge:
    """Ridge regression of the next log return on the same flattened (scaled) windows.

    The L2 strength is picked on the validation windows, as the LSTM's epochs are, so the
    baseline gets the same care as the model it is compared with.
    """
    x_train, x_val = train.x.reshape(len(train), -1), val.x.reshape(len(val), -1)
    best: tuple[float, Ridge] | None = None
    for alpha in alphas:
        model = Ridge(alpha=alpha).fit(x_train, train.y)
        error = float(np.mean((model.predict(x_val) - val.y) ** 2))
        if best is None or error < best[0]:
            best = (error, model)
    if best is None:
        raise ValueError("no ridge alphas to try")
    return best[1]


def linear_predict(model: Ridge, windows: Windows) -> np.ndarray:
    return np.asarray(model.predict(windows.x.reshape(len(windows), -1)), dtype=np.float64)
