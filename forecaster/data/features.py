"""Causal features: pure functions of the OHLCV arrays that read only the current and past rows.

One implementation serves training and the API: they work on plain float64 arrays
(`OHLCVArrays`), so training wraps them in DataFrames at its edges and the service builds a
request's window without constructing any. Trailing statistics are computed window by window
(not by a running sum), so a feature's value on a day depends only on the rows its window
covers: the service, which computes features on a history's last rows only, gets the same
numbers as training did on the whole series.

Every feature is scale-free (log ratios, shares), so one model can serve tickers at any price
level. The target is the next trading day's log return of close; the price forecast is
`close_t * exp(r_hat)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from forecaster.config import FeatureConfig, FeatureName
from forecaster.data.ranges import daily_range_variance
from forecaster.data.schemas import CLOSE, OHLCVArrays

TARGET = "target"


FeatureFn = Callable[[OHLCVArrays, FeatureConfig], np.ndarray]


def _lagged(values: np.ndarray) -> np.ndarray:
    """values shifted one day later; NaN on the first day."""
    out = np.empty_like(values)
    out[:1] = np.nan
    out[1:] = values[:-1]
    return out


def _trailing(values: np.ndarray, window: int, statistic: str) -> np.ndarray:
    """A trailing mean or sample standard deviation over `window` rows ending at each row;
    NaN until the window is full (or where it holds a NaN). The arithmetic is numpy's mean
    and std (ddof=1) on a strided view of the windows, without their per-call overhead,
    which dominates on the 50-row tail a request needs."""
    out = np.full(values.shape, np.nan)
    count = len(values) - window + 1
    if count > 0:
        values = np.ascontiguousarray(values, dtype=np.float64)
        step = values.strides[0]
        view = np.ndarray((count, window), np.float64, values, 0, (step, step))
        mean = view.sum(axis=1) / window
        if statistic == "mean":
            out[window - 1 :] = mean
        else:
            deviation = view - mean[:, np.newaxis]
            out[window - 1 :] = np.sqrt((deviation * deviation).sum(axis=1) / (window - 1))
    return out


def log_return(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """log(close_t / close_{t-1})."""
    log_close: np.ndarray = np.log(data.close)
    returns: np.ndarray = log_close - _lagged(log_close)
    return returns


def overnight_gap(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """log(open_t / close_{t-1}): news that arrived while the market was shut."""
    gap: np.ndarray = np.log(data.open / _lagged(data.close))
    return gap


def intraday_range(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """log(high_t / low_t): the day's range, a robust volatility estimate (Parkinson)."""
    spread: np.ndarray = np.log(data.high / data.low)
    return spread


def close_location(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """Where close sits in the day's range, centred: -0.5 at the low, +0.5 at the high."""
    span = data.high - data.low
    where: np.ndarray = np.divide(
        data.close - data.low, span, out=np.full(len(data), 0.5), where=span > 0
    )
    return where - 0.5


def log_volume_ratio(data: OHLCVArrays, config: FeatureConfig) -> np.ndarray:
    """log((1 + volume_t) / (1 + trailing mean volume over the window ending at t))."""
    volume = 1.0 + data.volume
    ratio: np.ndarray = np.log(volume / _trailing(volume, config.volume_window, "mean"))
    return ratio


def volatility(data: OHLCVArrays, config: FeatureConfig) -> np.ndarray:
    """Standard deviation of daily log returns over the trailing window ending at t."""
    return _trailing(log_return(data, config), config.volatility_window, "std")


def gk_volatility(data: OHLCVArrays, config: FeatureConfig) -> np.ndarray:
    """Garman-Klass volatility: square root of the trailing mean of the daily range-based
    variance 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2. It uses the whole day's range, so it is
    several times more efficient than close-to-close volatility and less thrown by one spike.
    """
    range_term = 0.5 * np.log(data.high / data.low) ** 2
    drift_term = (2 * np.log(2) - 1) * np.log(data.close / data.open) ** 2
    variance = np.clip(range_term - drift_term, 0.0, None)
    vol: np.ndarray = np.sqrt(_trailing(variance, config.volatility_window, "mean"))
    return vol


def _range_variance(data: OHLCVArrays) -> np.ndarray:
    """Each day's overnight gap squared plus Garman-Klass (forecaster.data.ranges); NaN on the
    first day (no previous close)."""
    out = np.full(len(data), np.nan)
    out[1:] = daily_range_variance(data.open, data.high, data.low, data.close)
    return out


def range_variance(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """log of the day's range-based variance: the HAR regressor at a one-day span."""
    log_variance: np.ndarray = np.log(_range_variance(data))
    return log_variance


def range_vol_5(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """Volatility from the mean range-based variance of the last 5 days (a week)."""
    vol: np.ndarray = np.sqrt(_trailing(_range_variance(data), 5, "mean"))
    return vol


def range_vol_22(data: OHLCVArrays, _: FeatureConfig) -> np.ndarray:
    """Volatility from the mean range-based variance of the last 22 days (a month): longer
    than the lookback's own memory of single days, as HAR's monthly term."""
    vol: np.ndarray = np.sqrt(_trailing(_range_variance(data), 22, "mean"))
    return vol


FEATURES: dict[FeatureName, FeatureFn] = {
    "log_return": log_return,
    "overnight_gap": overnight_gap,
    "intraday_range": intraday_range,
    "close_location": close_location,
    "log_volume_ratio": log_volume_ratio,
    "volatility": volatility,
    "gk_volatility": gk_volatility,
    "range_variance": range_variance,
    "range_vol_5": range_vol_5,
    "range_vol_22": range_vol_22,
}


def warmup_rows(config: FeatureConfig) -> int:
    """Leading rows whose features are undefined (no previous close, trailing windows not full)."""
    needs = {
        "log_return": 1,
        "overnight_gap": 1,
        "intraday_range": 0,
        "close_location": 0,
        "log_volume_ratio": config.volume_window - 1,
        "volatility": config.volatility_window,
        "gk_volatility": config.volatility_window - 1,
        "range_variance": 1,
        "range_vol_5": 5,
        "range_vol_22": 22,
    }
    return max(needs[name] for name in config.names)


def feature_matrix(data: OHLCVArrays, config: FeatureConfig) -> np.ndarray:
    """(rows - warm-up, n_features) float64 feature rows in config order."""
    skip = warmup_rows(config)
    columns = [FEATURES[name](data, config)[skip:] for name in config.names]
    return np.stack(columns, axis=1) if columns else np.empty((max(len(data) - skip, 0), 0))


def latest_features(data: OHLCVArrays, config: FeatureConfig, rows: int) -> np.ndarray:
    """The last `rows` feature rows, computed from only the price rows they depend on."""
    return feature_matrix(data.tail(warmup_rows(config) + rows), config)


def compute_features(frame: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Feature columns in config order, warm-up rows dropped; index is the frame's dates."""
    matrix = feature_matrix(OHLCVArrays.of(frame), config)
    index = frame.index[warmup_rows(config) :]
    return pd.DataFrame(matrix, index=index, columns=list(config.names))


def next_log_return(frame: pd.DataFrame) -> pd.Series:
    """Target aligned to day t: log(close_{t+1} / close_t); NaN on the last day."""
    return np.log(frame[CLOSE]).diff().shift(-1).rename(TARGET)
