"""Chronological train/validation/test splits and expanding walk-forward folds.

Splits are made on the windows' target dates, shared across tickers: every training target comes
before every validation target, which comes before every test target, on the calendar. An
optional gap leaves trading days out before each boundary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.config import SplitConfig
from forecaster.errors import DataValidationError


@dataclass(frozen=True)
class Split:
    """Window indices of each part, plus the first target date of validation and test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _boundary(dates: np.ndarray, start: pd.Timestamp) -> int:
    return int(np.searchsorted(dates, np.datetime64(start), side="left"))


def _make_split(
    target_dates: np.ndarray,
    unique: np.ndarray,
    val_pos: int,
    test_pos: int,
    end_pos: int,
    gap: int,
) -> Split:
    """Parts by position in the sorted unique dates: train < val_pos-gap, val < test_pos-gap."""
    train_end = unique[max(val_pos - gap, 0)] if val_pos - gap > 0 else None
    val_lo, val_hi = unique[val_pos], unique[max(test_pos - gap, val_pos)]
    test_lo = unique[test_pos]
    test_hi = unique[end_pos - 1]
    train = np.flatnonzero(target_dates < train_end) if train_end is not None else np.array([], int)
    val = np.flatnonzero((target_dates >= val_lo) & (target_dates < val_hi))
    test = np.flatnonzero((target_dates >= test_lo) & (target_dates <= test_hi))
    split = Split(
        train=train,
        val=val,
        test=test,
        val_start=pd.Timestamp(val_lo),
        test_start=pd.Timestamp(test_lo),
        test_end=pd.Timestamp(test_hi),
    )
    empty = [name for name, size in split.sizes().items() if size == 0]
    if empty:
        raise DataValidationError(
            f"split: {', '.join(empty)} part(s) would be empty ({split.sizes()}); "
            "use more data, a shorter lookback, a smaller gap or other split fractions"
        )
    return split


def chronological_split(target_dates: np.ndarray, config: SplitConfig) -> Split:
    unique = np.unique(target_dates)
    n = len(unique)
    if config.test_start is not None:
        test_pos = _boundary(unique, pd.Timestamp(config.test_start))
    else:
        test_pos = n - max(1, round(n * config.test_fraction))
    if config.val_start is not None:
        val_pos = _boundary(unique, pd.Timestamp(config.val_start))
    else:
        val_pos = test_pos - max(1, round(n * config.val_fraction))
    if not 0 < val_pos < test_pos < n:
        raise DataValidationError(
            f"split: data has target dates {pd.Timestamp(unique[0]).date()} to "
            f"{pd.Timestamp(unique[-1]).date()}; validation and test starts must fall inside "
            "it, in that order, after some training dates"
        )
    return _make_split(target_dates, unique, val_pos, test_pos, n, config.gap)


def walk_forward_folds(target_dates: np.ndarray, config: SplitConfig) -> list[Split]:
    """Expanding-window folds over the last `test_fraction` of dates.

    The backtest period is cut into `folds` consecutive test blocks. Fold k trains on everything
    before its validation block, which is the `val_fraction` of dates just before test block k;
    each fold therefore trains on more history than the one before it.
    """
    unique = np.unique(target_dates)
    n = len(unique)
    n_test_total = max(config.folds, round(n * config.test_fraction))
    n_val = max(1, round(n * config.val_fraction))
    first_test = n - n_test_total
    if first_test - n_val - config.gap <= 0:
        raise DataValidationError(
            f"backtest: {n} target dates are too few for {config.folds} folds with "
            f"test_fraction {config.test_fraction} and val_fraction {config.val_fraction}"
        )
    edges = np.linspace(first_test, n, config.folds + 1).round().astype(int)
    return [
        _make_split(target_dates, unique, lo - n_val, lo, hi, config.gap)
        for lo, hi in itertools.pairwise(edges)
    ]
