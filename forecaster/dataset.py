"""From validated frames to model-ready data: features, windows, a split and a fitted scaler.

The scaler sees only feature rows up to the last training window's as-of date, per ticker, so
nothing from the validation or test period leaks into the transform.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.features import compute_features
from forecaster.scaling import FeatureScaler
from forecaster.splits import Split, chronological_split
from forecaster.windows import Windows, concat_windows, ticker_windows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    windows: Windows  # unscaled, all tickers, in ticker then date order
    split: Split
    scaler: FeatureScaler
    frames: Mapping[str, pd.DataFrame]

    def part(self, name: str) -> Windows:
        """Scaled windows of one split part: 'train', 'val' or 'test'."""
        index = {"train": self.split.train, "val": self.split.val, "test": self.split.test}[name]
        part = self.windows.take(index)
        return part.with_x(self.scaler.transform(part.x))


def build_windows(frames: Mapping[str, pd.DataFrame], config: ForecasterConfig) -> Windows:
    return concat_windows(
        [
            ticker_windows(frame, config.features, config.windows.lookback)
            for frame in frames.values()
        ]
    )


def fit_scaler(
    frames: Mapping[str, pd.DataFrame], config: ForecasterConfig, last_train_day: pd.Timestamp
) -> FeatureScaler:
    """Fit on every feature row dated on or before the last training window's as-of date."""
    rows = []
    for frame in frames.values():
        feats = compute_features(frame.loc[frame.index <= last_train_day], config.features)
        rows.append(feats.to_numpy())
    return FeatureScaler.fit(
        np.concatenate(rows), tuple(config.features.names), config.scaling.method
    )


def prepare(frames: Mapping[str, pd.DataFrame], config: ForecasterConfig) -> PreparedData:
    windows = build_windows(frames, config)
    split = chronological_split(windows.target_dates, config.split)
    last_train_day = pd.Timestamp(windows.end_dates[split.train].max())
    scaler = fit_scaler(frames, config, last_train_day)
    logger.info(
        "prepared %d windows (%s), scaler fitted on rows up to %s",
        len(windows),
        split.sizes(),
        last_train_day.date(),
    )
    return PreparedData(windows=windows, split=split, scaler=scaler, frames=frames)
