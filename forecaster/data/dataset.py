"""From validated frames to model-ready data: features, windows, a split and a fitted scaler.

The scaler sees only feature rows up to each ticker's own last training window's as-of date, so
nothing from any ticker's validation or test period leaks into the transform.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.data.features import compute_features
from forecaster.data.scaling import FeatureScaler
from forecaster.data.splits import Split, chronological_split
from forecaster.data.windows import Windows, concat_windows, ticker_windows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    windows: Windows  # unscaled, all tickers, in ticker then date order
    split: Split
    scaler: FeatureScaler
    frames: Mapping[str, pd.DataFrame]

    def universe(self) -> dict[str, dict[str, str]]:
        """{ticker: {"first", "last"}}: the dates of the rows each ticker's training windows
        were built from, so anyone can tell a ticker the model has seen from one it has not."""
        train = self.windows.take(self.split.train)
        out = {}
        for ticker, frame in self.frames.items():
            mask = train.tickers == ticker
            if mask.any():
                last = pd.Timestamp(train.target_dates[mask].max())
                out[ticker] = {"first": str(frame.index[0].date()), "last": str(last.date())}
        return out

    def part(self, name: str) -> Windows:
        """Scaled windows of one split part: 'train', 'val' or 'test'."""
        index = {"train": self.split.train, "val": self.split.val, "test": self.split.test}[name]
        part = self.windows.take(index)
        return part.with_x(self.scaler.transform(part.x))


def build_windows(frames: Mapping[str, pd.DataFrame], config: ForecasterConfig) -> Windows:
    return concat_windows(
        [
            ticker_windows(frame, config.features, config.windows.lookback, ticker)
            for ticker, frame in frames.items()
        ]
    )


def last_train_days(windows: Windows, train: np.ndarray) -> dict[str, pd.Timestamp]:
    """Each ticker's last training as-of date (tickers with no training window are absent)."""
    tickers, ends = windows.tickers[train], windows.end_dates[train]
    return {str(t): pd.Timestamp(ends[tickers == t].max()) for t in dict.fromkeys(tickers.tolist())}


def fit_scaler(
    frames: Mapping[str, pd.DataFrame],
    config: ForecasterConfig,
    last_train_day: Mapping[str, pd.Timestamp],
) -> FeatureScaler:
    """Fit on every feature row dated on or before its ticker's last training as-of date."""
    rows = []
    for ticker, frame in frames.items():
        if ticker not in last_train_day:
            continue
        feats = compute_features(frame.loc[frame.index <= last_train_day[ticker]], config.features)
        rows.append(feats.to_numpy())
    return FeatureScaler.fit(
        np.concatenate(rows), tuple(config.features.names), config.scaling.method
    )


def prepare(frames: Mapping[str, pd.DataFrame], config: ForecasterConfig) -> PreparedData:
    windows = build_windows(frames, config)
    split = chronological_split(windows.target_dates, config.split, windows.tickers)
    cutoffs = last_train_days(windows, split.train)
    scaler = fit_scaler(frames, config, cutoffs)
    logger.info(
        "prepared %d windows (%s), scaler fitted on rows up to %s",
        len(windows),
        split.sizes(),
        ", ".join(f"{t} {d.date()}" for t, d in cutoffs.items()),
    )
    return PreparedData(windows=windows, split=split, scaler=scaler, frames=frames)
