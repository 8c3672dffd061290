"""Vectorised multivariate sliding windows with their next-day targets.

A window ending on day t holds feature rows t-lookback+1 .. t; its target is the log return from
close_t to close_{t+1}. Tickers are windowed separately and concatenated, so no window ever
spans two tickers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from forecaster.config import FeatureConfig
from forecaster.data.features import compute_features, latest_features, next_log_return, warmup_rows
from forecaster.data.schemas import CLOSE, OHLCVArrays, frame_meta
from forecaster.errors import DataValidationError


def sliding_windows(
    values: np.ndarray, lookback: int, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """(n_rows, n_features) -> contiguous (n_rows - lookback + 1, lookback, n_features).

    Windowing both axes keeps each window a contiguous block of the source rows, so the
    materialising copy is a run of memcpys, not a transpose.
    """
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D (rows, features) array, got shape {values.shape}")
    n_rows, n_features = values.shape
    if n_rows < lookback:
        raise ValueError(f"{n_rows} rows cannot fill one window of {lookback}")
    view = sliding_window_view(values, (lookback, n_features))[:, 0]
    out = np.empty(view.shape, dtype=dtype)
    np.copyto(out, view, casting="same_kind" if out.dtype == values.dtype else "unsafe")
    return out


@dataclass(frozen=True)
class Windows:
    """Aligned arrays, one entry per window; `x` is unscaled unless a scaler was applied."""

    x: np.ndarray  # (n, lookback, n_features) float32
    y: np.ndarray  # (n,) float32 next-day log return of close
    end_dates: np.ndarray  # (n,) datetime64[ns]: date of the window's last row (as-of date)
    target_dates: np.ndarray  # (n,) datetime64[ns]: the trading day being forecast
    last_close: np.ndarray  # (n,) float64: close on the as-of date
    target_close: np.ndarray  # (n,) float64: realised close on the target date
    tickers: np.ndarray  # (n,) object: ticker of each window
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: np.ndarray) -> Windows:
        return Windows(
            x=self.x[index],
            y=self.y[index],
            end_dates=self.end_dates[index],
            target_dates=self.target_dates[index],
            last_close=self.last_close[index],
            target_close=self.target_close[index],
            tickers=self.tickers[index],
            feature_names=self.feature_names,
        )

    def with_x(self, x: np.ndarray) -> Windows:
        if x.shape != self.x.shape:
            raise ValueError(f"replacement windows have shape {x.shape}, expected {self.x.shape}")
        return Windows(
            x=x,
            y=self.y,
            end_dates=self.end_dates,
            target_dates=self.target_dates,
            last_close=self.last_close,
            target_close=self.target_close,
            tickers=self.tickers,
            feature_names=self.feature_names,
        )


def min_rows(features: FeatureConfig, lookback: int) -> int:
    """Rows a ticker needs for one training window: warm-up + lookback + the target day."""
    return warmup_rows(features) + lookback + 1


def _features_for_windows(
    frame: pd.DataFrame, features: FeatureConfig, lookback: int, needed: int, why: str
) -> pd.DataFrame:
    meta = frame_meta(frame)
    if len(frame) < needed:
        raise DataValidationError(
            f"{meta.origin or meta.ticker or 'history'}: {len(frame)} rows, need at least "
            f"{needed} ({why})"
        )
    feats = compute_features(frame, features)
    finite = np.isfinite(feats.to_numpy()).all(axis=1)
    if not finite.all():
        bad = feats.index[~finite][0]
        raise DataValidationError(f"{meta.origin}: features are not finite on {bad.date()}")
    return feats


def all_windows(
    frame: pd.DataFrame, features: FeatureConfig, lookback: int
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Every full window of a frame, the last (live) one included, with its as-of dates."""
    needed = warmup_rows(features) + lookback
    why = f"lookback {lookback} + {warmup_rows(features)} warm-up rows"
    feats = _features_for_windows(frame, features, lookback, needed, why)
    return sliding_windows(feats.to_numpy(), lookback), feats.index[lookback - 1 :]


def ticker_windows(
    frame: pd.DataFrame, features: FeatureConfig, lookback: int, ticker: str | None = None
) -> Windows:
    """All windows of one validated OHLCV frame that have a known target, labelled `ticker`
    (default: the frame's own)."""
    meta = frame_meta(frame)
    why = f"lookback {lookback} + {warmup_rows(features)} warm-up rows + 1 target day"
    feats = _features_for_windows(frame, features, lookback, min_rows(features, lookback), why)
    target = next_log_return(frame).reindex(feats.index)
    close = frame[CLOSE].reindex(feats.index)
    # Drop the last window: its target day is not in the data yet (that is the live forecast).
    x = sliding_windows(feats.to_numpy(), lookback)[:-1]
    ends = feats.index[lookback - 1 : -1]
    dates = frame.index
    target_pos = dates.get_indexer(ends) + 1
    return Windows(
        x=x,
        y=target.loc[ends].to_numpy(dtype=np.float32),
        end_dates=ends.to_numpy(dtype="datetime64[ns]"),
        target_dates=dates[target_pos].to_numpy(dtype="datetime64[ns]"),
        last_close=close.loc[ends].to_numpy(dtype=np.float64),
        target_close=frame[CLOSE].to_numpy(dtype=np.float64)[target_pos],
        tickers=np.full(len(ends), meta.ticker if ticker is None else ticker, dtype=object),
        feature_names=tuple(feats.columns),
    )


def latest_window(frame: pd.DataFrame, features: FeatureConfig, lookback: int) -> np.ndarray:
    """The (1, lookback, n_features) window ending on the frame's last day: the live input."""
    meta = frame_meta(frame)
    return latest_array_window(
        OHLCVArrays.of(frame), features, lookback, meta.origin or meta.ticker or "history"
    )


def latest_array_window(
    data: OHLCVArrays, features: FeatureConfig, lookback: int, origin: str
) -> np.ndarray:
    """`latest_window` of validated arrays: the API's path, with no DataFrame."""
    needed = warmup_rows(features) + lookback
    if len(data) < needed:
        raise DataValidationError(
            f"{origin}: {len(data)} rows, need at least {needed} "
            f"(lookback {lookback} + {warmup_rows(features)} warm-up rows)"
        )
    rows = latest_features(data, features, lookback).astype(np.float32)
    return rows[np.newaxis]


def concat_windows(parts: Sequence[Windows]) -> Windows:
    if not parts:
        raise ValueError("no windows to concatenate")
    names = parts[0].feature_names
    if any(p.feature_names != names for p in parts):
        raise ValueError("cannot concatenate windows built from different features")
    return Windows(
        x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        end_dates=np.concatenate([p.end_dates for p in parts]),
        target_dates=np.concatenate([p.target_dates for p in parts]),
        last_close=np.concatenate([p.last_close for p in parts]),
        target_close=np.concatenate([p.target_close for p in parts]),
        tickers=np.concatenate([p.tickers for p in parts]),
        feature_names=names,
    )
