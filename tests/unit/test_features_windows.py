"""Alignment and no-look-ahead: the classic windowing mistakes, each caught by a test."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from forecaster.config import FeatureConfig, ForecasterConfig
from forecaster.data.dataset import prepare
from forecaster.data.features import compute_features, next_log_return, warmup_rows
from forecaster.data.schemas import frame_meta, with_meta
from forecaster.data.windows import (
    concat_windows,
    latest_window,
    min_rows,
    sliding_windows,
    ticker_windows,
)
from forecaster.errors import DataValidationError

FEATURES = FeatureConfig(volume_window=5, volatility_window=5)
LOOKBACK = 10


def test_sliding_windows_match_a_plain_loop() -> None:
    values = np.random.default_rng(0).normal(size=(50, 4))
    windows = sliding_windows(values, 7)
    assert windows.shape == (44, 7, 4)
    assert windows.flags.c_contiguous
    for i in range(44):
        np.testing.assert_array_equal(windows[i], values[i : i + 7].astype(np.float32))


def test_features_have_known_values_on_a_tiny_frame() -> None:
    frame = pd.DataFrame(
        {
            "open": [10.0, 10.5, 11.0],
            "high": [11.0, 11.0, 12.0],
            "low": [9.0, 10.0, 10.0],
            "close": [10.0, 11.0, 11.0],
            "volume": [100.0, 200.0, 300.0],
        },
        index=pd.bdate_range("2024-01-01", periods=3),
    )
    config = FeatureConfig(
        names=("log_return", "overnight_gap", "intraday_range", "close_location")
    )
    feats = compute_features(frame, config)
    assert warmup_rows(config) == 1
    np.testing.assert_allclose(feats["log_return"], [np.log(1.1), 0.0])
    np.testing.assert_allclose(feats["overnight_gap"], [np.log(10.5 / 10), 0.0])
    np.testing.assert_allclose(feats["intraday_range"], [np.log(1.1), np.log(1.2)])
    np.testing.assert_allclose(feats["close_location"], [0.5, -0.0])
    np.testing.assert_allclose(next_log_return(frame).iloc[:2], [np.log(1.1), 0.0])


def test_window_target_is_the_day_after_its_last_row(walk: Callable[..., pd.DataFrame]) -> None:
    frame = walk(120)
    windows = ticker_windows(frame, FEATURES, LOOKBACK)
    feats = compute_features(frame, FEATURES)
    dates = frame.index
    for i in (0, 17, len(windows) - 1):
        end = pd.Timestamp(windows.end_dates[i])
        target_day = pd.Timestamp(windows.target_dates[i])
        assert dates.get_loc(target_day) == dates.get_loc(end) + 1
        close = frame["close"]
        assert windows.y[i] == pytest.approx(np.log(close[target_day] / close[end]), rel=1e-5)
        assert windows.last_close[i] == close[end]
        assert windows.target_close[i] == close[target_day]
        # The window's last row is the features of its as-of date.
        np.testing.assert_allclose(windows.x[i, -1], feats.loc[end].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(
            windows.x[i, 0], feats.iloc[feats.index.get_loc(end) - LOOKBACK + 1], rtol=1e-6
        )
    # The final day has no target yet: no window ends there.
    assert pd.Timestamp(windows.end_dates[-1]) == dates[-2]
    assert len(windows) == len(frame) - warmup_rows(FEATURES) - LOOKBACK


def test_changing_the_future_changes_no_past_window_target_or_scaler(
    walk: Callable[..., pd.DataFrame],
) -> None:
    frame = walk(400)
    cutoff = frame.index[250]
    future = frame.copy()
    later = future.index > cutoff
    future.loc[later, ["open", "high", "low", "close"]] *= 1.7
    future.loc[later, "volume"] *= 3.0
    with_meta(future, frame_meta(frame))

    before = ticker_windows(frame, FEATURES, LOOKBACK)
    after = ticker_windows(future, FEATURES, LOOKBACK)
    # Windows whose target is on or before the cutoff are untouched, bit for bit.
    past = before.target_dates <= np.datetime64(cutoff)
    assert past.sum() > 100
    np.testing.assert_array_equal(before.x[past], after.x[past])
    np.testing.assert_array_equal(before.y[past], after.y[past])
    # ... while the perturbation is visible later (the test can fail).
    assert not np.array_equal(before.y[~past], after.y[~past])

    config = ForecasterConfig.model_validate(
        {
            "features": FEATURES.model_dump(),
            "windows": {"lookback": LOOKBACK},
            "split": {"test_start": str(cutoff.date() + pd.Timedelta(days=60))[:10],
                      "val_start": str(cutoff.date())},
        }
    )  # fmt: skip
    scaler_before = prepare({"W": frame}, config).scaler
    scaler_after = prepare({"W": future}, config).scaler
    assert scaler_before == scaler_after


def test_latest_window_is_the_tail_of_the_full_feature_history(
    walk: Callable[..., pd.DataFrame],
) -> None:
    frame = walk(200)
    latest = latest_window(frame, FEATURES, LOOKBACK)
    full = compute_features(frame, FEATURES).to_numpy(dtype=np.float32)[-LOOKBACK:]
    assert latest.shape == (1, LOOKBACK, len(FEATURES.names))
    np.testing.assert_allclose(latest[0], full, rtol=1e-6)
    needed = LOOKBACK + warmup_rows(FEATURES)  # 10 + 22 (range_vol_22's month)
    assert needed == 32
    with pytest.raises(DataValidationError, match=rf"need at least {needed}"):
        latest_window(frame.iloc[: needed - 1], FEATURES, LOOKBACK)


def test_tickers_are_windowed_separately(walk: Callable[..., pd.DataFrame]) -> None:
    a = walk(100, seed=1, ticker="AAA")
    b = walk(80, seed=2, ticker="BBB", start="2020-03-02")
    both = concat_windows([ticker_windows(f, FEATURES, LOOKBACK) for f in (a, b)])
    assert len(both) == len(a) + len(b) - 2 * (warmup_rows(FEATURES) + LOOKBACK)
    for ticker, frame in (("AAA", a), ("BBB", b)):
        mask = both.tickers == ticker
        own = ticker_windows(frame, FEATURES, LOOKBACK)
        np.testing.assert_array_equal(both.x[mask], own.x)
        # Every as-of and target date of a ticker's windows is one of its own trading days.
        assert set(both.end_dates[mask]).issubset(set(frame.index.to_numpy()))
        assert set(both.target_dates[mask]).issubset(set(frame.index.to_numpy()))


def test_too_few_rows_for_the_window_is_a_clear_error(walk: Callable[..., pd.DataFrame]) -> None:
    needed = min_rows(FEATURES, LOOKBACK)
    ticker_windows(walk(needed), FEATURES, LOOKBACK)
    with pytest.raises(
        DataValidationError, match=rf"WALK: {needed - 1} rows, need at least {needed}"
    ):
        ticker_windows(walk(needed - 1), FEATURES, LOOKBACK)


def test_range_features_are_the_har_methods_variance_in_har_form(
    walk: Callable[..., pd.DataFrame],
) -> None:
    """range_variance is the log of the HAR comparator's daily variance (one owner:
    forecaster.data.ranges); range_vol_5/22 the square roots of its trailing 5/22-day means."""
    from forecaster.data.ranges import daily_range_variance
    from forecaster.methods.base import Bars
    from forecaster.methods.har import range_variance as har_variance

    frame = walk(120)
    config = FeatureConfig(names=("range_variance", "range_vol_5", "range_vol_22"))
    got = compute_features(frame, config)
    v = daily_range_variance(*(frame[c].to_numpy() for c in ("open", "high", "low", "close")))
    np.testing.assert_array_equal(v, har_variance(Bars.of_frame(frame)))
    assert warmup_rows(config) == 22
    day = got.index[-1]
    t = len(v)  # variance of the last bar is v[-1]
    assert got.loc[day, "range_variance"] == pytest.approx(np.log(v[t - 1]), rel=1e-12)
    assert got.loc[day, "range_vol_5"] == pytest.approx(np.sqrt(v[-5:].mean()), rel=1e-12)
    assert got.loc[day, "range_vol_22"] == pytest.approx(np.sqrt(v[-22:].mean()), rel=1e-12)
    first = got.index[0]  # the first row with a full 22-day mean: bars 1..22
    assert first == frame.index[22]
    assert got.loc[first, "range_vol_22"] == pytest.approx(np.sqrt(v[:22].mean()), rel=1e-12)
