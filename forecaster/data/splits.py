"""Chronological train/validation/test splits and expanding walk-forward folds.

Splits are made on the windows' target dates, per ticker: within a ticker every training target
comes before every validation target, which comes before every test target, and an optional gap
leaves trading days out before each boundary. Fractions apply to each ticker's own dates, so
tickers with different date ranges (a stock listed in 2004, an index since 1999, a series that
ends in 2013) each get validation and test days; tickers with the same dates get the same
calendar boundaries. Explicit `val_start`/`test_start` dates are one calendar for all tickers.

A ticker's test days may fall inside another ticker's training period (a global model learns
from the 2011 index while a 2011 stock is scored): no window of the scored ticker's own future
is ever trained on, and the leave-tickers-out evidence has no such overlap at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
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
    val_start: pd.Timestamp  # the earliest over tickers
    test_start: pd.Timestamp  # the earliest over tickers
    test_end: pd.Timestamp  # the latest over tickers

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _per_ticker(
    target_dates: np.ndarray, tickers: np.ndarray | None, make: Callable[[np.ndarray], list[Split]]
) -> list[Split]:
    """`make` on each ticker's target dates, merged part by part into splits of all windows."""
    if tickers is None or len(np.unique(tickers)) <= 1:
        return make(target_dates)
    order = list(dict.fromkeys(tickers.tolist()))
    per: list[tuple[np.ndarray, list[Split]]] = []
    for ticker in order:
        rows = np.flatnonzero(tickers == ticker)
        try:
            per.append((rows, make(target_dates[rows])))
        except DataValidationError as exc:
            raise DataValidationError(f"{ticker}: {exc}") from exc
    counts = {len(splits) for _, splits in per}
    if len(counts) != 1:  # walk-forward folds: one count for all, so this cannot happen
        raise DataValidationError(f"tickers gave different numbers of folds: {sorted(counts)}")
    merged = []
    for k in range(counts.pop()):
        parts = [(rows, splits[k]) for rows, splits in per]
        merged.append(
            Split(
                train=np.sort(np.concatenate([rows[s.train] for rows, s in parts])),
                val=np.sort(np.concatenate([rows[s.val] for rows, s in parts])),
                test=np.sort(np.concatenate([rows[s.test] for rows, s in parts])),
                val_start=min(s.val_start for _, s in parts),
                test_start=min(s.test_start for _, s in parts),
                test_end=max(s.test_end for _, s in parts),
            )
        )
    return merged


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


def chronological_split(
    target_dates: np.ndarray, config: SplitConfig, tickers: np.ndarray | None = None
) -> Split:
    """One split of all windows; with `tickers`, each ticker is split on its own dates."""
    return _per_ticker(target_dates, tickers, lambda d: [_chronological(d, config)])[0]


def _chronological(target_dates: np.ndarray, config: SplitConfig) -> Split:
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


def walk_forward_folds(
    target_dates: np.ndarray, config: SplitConfig, tickers: np.ndarray | None = None
) -> list[Split]:
    """Expanding-window folds over the last `test_fraction` of dates (of each ticker's own
    dates, with `tickers`).

    The backtest period is cut into `folds` consecutive test blocks. Fold k trains on everything
    before its validation block, which is the `val_fraction` of dates just before test block k;
    each fold therefore trains on more history than the one before it.
    """
    return _per_ticker(target_dates, tickers, lambda d: _walk_forward(d, config))


def _walk_forward(target_dates: np.ndarray, config: SplitConfig) -> list[Split]:
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
