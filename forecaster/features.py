"""Causal features: pure DataFrame -> Series functions that read only the current and past rows.

Every feature is scale-free (log ratios, shares), so one model can serve tickers at any price
level. The target is the next trading day's log return of close; the price forecast is
`close_t * exp(r_hat)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from forecaster.config import FeatureConfig, FeatureName
from forecaster.schemas import CLOSE, HIGH, LOW, OPEN, VOLUME

TARGET = "target"

FeatureFn = Callable[[pd.DataFrame, FeatureConfig], pd.Series]


def log_return(frame: pd.DataFrame, _: FeatureConfig) -> pd.Series:
    """log(close_t / close_{t-1})."""
    return np.log(frame[CLOSE]).diff()


def overnight_gap(frame: pd.DataFrame, _: FeatureConfig) -> pd.Series:
    """log(open_t / close_{t-1}): news that arrived while the market was shut."""
    return np.log(frame[OPEN] / frame[CLOSE].shift(1))


def intraday_range(frame: pd.DataFrame, _: FeatureConfig) -> pd.Series:
    """log(high_t / low_t): the day's range, a robust volatility estimate (Parkinson)."""
    return np.log(frame[HIGH] / frame[LOW])


def close_location(frame: pd.DataFrame, _: FeatureConfig) -> pd.Series:
    """Where close sits in the day's range, centred: -0.5 at the low, +0.5 at the high."""
    span = (frame[HIGH] - frame[LOW]).to_numpy()
    where = np.divide(
        (frame[CLOSE] - frame[LOW]).to_numpy(),
        span,
        out=np.full(len(frame), 0.5),
        where=span > 0,
    )
    return pd.Series(where - 0.5, index=frame.index)


def log_volume_ratio(frame: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log((1 + volume_t) / (1 + trailing mean volume over the window ending at t))."""
    volume = 1.0 + frame[VOLUME]
    trailing = volume.rolling(config.volume_window, min_periods=config.volume_window).mean()
    return np.log(volume / trailing)


def volatility(frame: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Standard deviation of daily log returns over the trailing window ending at t."""
    returns = np.log(frame[CLOSE]).diff()
    window = config.volatility_window
    return returns.rolling(window, min_periods=window).std()


def gk_volatility(frame: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Garman-Klass volatility: square root of the trailing mean of the daily range-based
    variance 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2. It uses the whole day's range, so it is
    several times more efficient than close-to-close volatility and less thrown by one spike.
    """
    range_term = 0.5 * np.log(frame[HIGH] / frame[LOW]) ** 2
    drift_term = (2 * np.log(2) - 1) * np.log(frame[CLOSE] / frame[OPEN]) ** 2
    window = config.volatility_window
    variance = (range_term - drift_term).clip(lower=0.0)
    return np.sqrt(variance.rolling(window, min_periods=window).mean())


FEATURES: dict[FeatureName, FeatureFn] = {
    "log_return": log_return,
    "overnight_gap": overnight_gap,
    "intraday_range": intraday_range,
    "close_location": close_location,
    "log_volume_ratio": log_volume_ratio,
    "volatility": volatility,
    "gk_volatility": gk_volatility,
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
    }
    return max(needs[name] for name in config.names)


def compute_features(frame: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Feature columns in config order, warm-up rows dropped; index is the frame's dates."""
    features = pd.DataFrame(
        {name: FEATURES[name](frame, config) for name in config.names}, index=frame.index
    )
    return features.iloc[warmup_rows(config) :].astype("float64")


def next_log_return(frame: pd.DataFrame) -> pd.Series:
    """Target aligned to day t: log(close_{t+1} / close_t); NaN on the last day."""
    return np.log(frame[CLOSE]).diff().shift(-1).rename(TARGET)
