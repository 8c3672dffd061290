from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from forecaster.config import ForecasterConfig, SplitConfig
from forecaster.data.dataset import prepare
from forecaster.data.scaling import FeatureScaler
from forecaster.data.splits import chronological_split, walk_forward_folds
from forecaster.errors import DataValidationError


def dates(n: int, tickers: int = 1) -> np.ndarray:
    days = pd.bdate_range("2010-01-01", periods=n).to_numpy()
    return np.concatenate([days] * tickers)


def test_split_parts_are_disjoint_and_in_calendar_order() -> None:
    target = dates(500, tickers=2)
    split = chronological_split(target, SplitConfig(val_fraction=0.2, test_fraction=0.1))
    parts = [split.train, split.val, split.test]
    assert sum(len(p) for p in parts) == len(target)
    assert len(set(np.concatenate(parts))) == len(target)
    assert target[split.train].max() < target[split.val].min()
    assert target[split.val].max() < target[split.test].min()
    # Shared calendar: both tickers' test windows cover the same days.
    assert len(split.test) == 2 * 50


def test_gap_leaves_days_out_before_each_boundary() -> None:
    target = dates(300)
    split = chronological_split(target, SplitConfig(gap=5))
    unique = np.unique(target)
    val_pos = np.searchsorted(unique, target[split.val].min())
    test_pos = np.searchsorted(unique, target[split.test].min())
    assert np.searchsorted(unique, target[split.train].max()) == val_pos - 6
    assert np.searchsorted(unique, target[split.val].max()) == test_pos - 6
    assert len(split.train) + len(split.val) + len(split.test) == 300 - 10


def test_explicit_dates_and_bad_dates() -> None:
    target = dates(300)
    split = chronological_split(
        target, SplitConfig(val_start="2010-06-01", test_start="2010-09-01")
    )
    assert pd.Timestamp(target[split.val].min()) == pd.Timestamp("2010-06-01")
    assert pd.Timestamp(target[split.test].min()) == pd.Timestamp("2010-09-01")
    with pytest.raises(DataValidationError, match="must fall inside"):
        chronological_split(target, SplitConfig(val_start="2009-01-01", test_start="2009-06-01"))


def test_walk_forward_folds_expand_and_never_overlap() -> None:
    target = dates(1000)
    folds = walk_forward_folds(target, SplitConfig(folds=4, test_fraction=0.2, val_fraction=0.1))
    assert len(folds) == 4
    tests = np.concatenate([f.test for f in folds])
    assert len(tests) == len(set(tests)) == 200
    for prev, fold in itertools.pairwise(folds):
        assert len(fold.train) > len(prev.train)
        assert target[prev.test].max() < target[fold.test].min()
    for fold in folds:
        assert target[fold.train].max() < target[fold.val].min() <= target[fold.val].max()
        assert target[fold.val].max() < target[fold.test].min()
    with pytest.raises(DataValidationError, match="too few"):
        walk_forward_folds(dates(12), SplitConfig(folds=10, test_fraction=0.3, val_fraction=0.3))


def test_scaler_round_trips_and_standardises_training_rows() -> None:
    rows = np.random.default_rng(3).normal(5, 2, size=(200, 3))
    rows[:, 2] = 7.0  # a constant feature must not divide by zero
    scaler = FeatureScaler.fit(rows, ("a", "b", "c"))
    scaled = scaler.transform(rows)
    np.testing.assert_allclose(scaled[:, :2].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled[:, :2].std(axis=0), 1, atol=1e-4)
    assert np.isfinite(scaled).all()
    assert FeatureScaler.from_dict(scaler.to_dict()) == scaler
    with pytest.raises(ValueError, match="fitted on 3 features"):
        scaler.transform(np.zeros((2, 4)))


def test_prepared_training_part_is_standardised_but_test_part_is_not_refit(
    walk: Callable[..., pd.DataFrame],
) -> None:
    config = ForecasterConfig.model_validate({"windows": {"lookback": 10}})
    data = prepare({"W": walk(600)}, config)
    train = data.part("train")
    last_rows = train.x[:, -1, :]
    assert np.abs(last_rows.mean(axis=0)).max() < 0.1
    assert data.part("test").x.dtype == np.float32
    assert len(data.part("val")) == len(data.split.val)


def test_tickers_with_different_ranges_each_get_their_own_split() -> None:
    """An index since 2010 and a stock that ends earlier: fractions apply to each ticker's own
    dates, so the stock is tested on its own last days instead of on none."""
    index = pd.bdate_range("2010-01-01", periods=1000).to_numpy()
    stock = pd.bdate_range("2011-01-03", periods=400).to_numpy()
    target = np.concatenate([index, stock])
    tickers = np.array(["IDX"] * 1000 + ["STK"] * 400, dtype=object)
    config = SplitConfig(val_fraction=0.2, test_fraction=0.1)
    split = chronological_split(target, config, tickers)
    for name, n in (("IDX", 1000), ("STK", 400)):
        rows = [idx[tickers[idx] == name] for idx in (split.train, split.val, split.test)]
        assert [len(r) for r in rows] == [n - round(0.2 * n) - round(0.1 * n),
                                          round(0.2 * n), round(0.1 * n)]  # fmt: skip
        assert target[rows[0]].max() < target[rows[1]].min()
        assert target[rows[1]].max() < target[rows[2]].min()
    # The calendar split alone would leave the stock with no test day at all.
    assert chronological_split(target, config).test.min() < 1000
    assert not np.any(tickers[chronological_split(target, config).test] == "STK")
    assert split.test_start == pd.Timestamp(stock[360])
    assert split.test_end == pd.Timestamp(index[-1])
    folds = walk_forward_folds(target, SplitConfig(folds=2, test_fraction=0.2), tickers)
    for fold in folds:
        assert set(tickers[fold.test]) == {"IDX", "STK"}


def test_a_ticker_too_short_to_split_is_named() -> None:
    target = np.concatenate([dates(500), dates(2)])
    tickers = np.array(["LONG"] * 500 + ["TINY"] * 2, dtype=object)
    with pytest.raises(DataValidationError, match=r"^TINY: split"):
        chronological_split(target, SplitConfig(val_fraction=0.2, test_fraction=0.2), tickers)


def test_balanced_sampling_gives_every_ticker_the_same_share() -> None:
    from forecaster.methods.network.datamodule import ticker_weights

    tickers = np.array(["A"] * 900 + ["B"] * 100, dtype=object)
    weights = ticker_weights(tickers)
    assert weights[tickers == "A"].sum() == pytest.approx(weights[tickers == "B"].sum())
