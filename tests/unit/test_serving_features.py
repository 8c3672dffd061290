"""Training and serving build the model's input with the same code: random valid histories go
through both paths (the training frames, and the API's request body -> arrays path) and must
give the same windows and the same forecasts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.config import ALL_FEATURES, FeatureConfig
from forecaster.data.features import compute_features, latest_features, warmup_rows
from forecaster.data.scaling import FeatureScaler
from forecaster.data.schemas import FrameMeta, validate_ohlcv, with_meta
from forecaster.data.windows import all_windows
from forecaster.errors import DataValidationError
from forecaster.methods.network.forward import predict_quantiles
from forecaster.registry.bundle import ModelBundle
from forecaster.registry.predictor import Forecaster
from service.client_history import check_history
from service.requests import parse_prediction


def history(n: int, seed: int, level: float, zero_volume: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(pd.Timestamp("1995-01-02") + pd.Timedelta(days=seed % 5000),
                           periods=n, name="date")  # fmt: skip
    close = level * np.exp(np.cumsum(rng.normal(0, rng.uniform(0.002, 0.05), n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    low[rng.random(n) < 0.05] = np.minimum(open_, close)[0]  # some flat-bottomed days
    volume = rng.integers(0 if zero_volume else 1, 10**9, n).astype("float64")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=dates
    )
    low = np.minimum(frame["low"], frame[["open", "close"]].min(axis=1))
    frame["low"] = low
    return with_meta(frame, FrameMeta("ACME", "test", "as_given", "ACME"))


def forecaster_for(frame: pd.DataFrame, config: FeatureConfig, lookback: int) -> Forecaster:
    rows = compute_features(frame, config).to_numpy()
    bundle = ModelBundle(
        features=config, lookback=lookback, interval_level=0.8, quantiles=(0.1, 0.5, 0.9),
        scaler=FeatureScaler.fit(rows, tuple(config.names)), n_features=len(config.names),
        hidden_size=8, num_layers=1, dropout=0.0, intervals=(0.8,),
    )  # fmt: skip
    torch.manual_seed(0)
    return Forecaster(bundle, bundle.build_network())


def request_body(frame: pd.DataFrame) -> bytes:
    rows = [{"date": str(day.date()), **{k: float(v) for k, v in row.items()}}
            for day, row in frame.iterrows()]  # fmt: skip
    return json.dumps({"ticker": "ACME", "history": rows}).encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.sampled_from(ALL_FEATURES), min_size=1, unique=True),
    volume_window=st.integers(2, 30),
    volatility_window=st.integers(2, 30),
    lookback=st.integers(1, 40),
    extra_rows=st.integers(0, 120),
    seed=st.integers(0, 10**6),
    level=st.sampled_from([0.01, 1.0, 35.7, 2500.0, 250_000.0]),
    zero_volume=st.booleans(),
)
def test_training_and_serving_give_the_same_windows_and_forecasts(
    names: list[str], volume_window: int, volatility_window: int, lookback: int,
    extra_rows: int, seed: int, level: float, zero_volume: bool,
) -> None:  # fmt: skip
    config = FeatureConfig.model_validate(
        {"names": names, "volume_window": volume_window, "volatility_window": volatility_window}
    )
    frame = history(warmup_rows(config) + lookback + extra_rows + 1, seed, level, zero_volume)
    forecaster = forecaster_for(frame, config, lookback)

    # Training path: the whole series as a DataFrame, windows of every day.
    train_rows = compute_features(frame, config).to_numpy()[-lookback:]
    x_all, as_of = all_windows(frame, config, lookback)
    train_window = forecaster.bundle.scaler.transform(x_all[-1:])
    assert as_of[-1] == frame.index[-1]

    # Serving path: the JSON body the API receives, to arrays, checked, windowed.
    request = parse_prediction(request_body(frame), max_rows=5000)
    assert request.history is not None
    check_history(request.history, "history for ACME")
    serve_rows = latest_features(request.history.prices, config, lookback)
    serve_window = forecaster.prepare_arrays(request.history.prices, "history for ACME")

    np.testing.assert_allclose(serve_rows, train_rows, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(serve_window, train_window)
    served = forecaster.forecast_windows(serve_window)
    np.testing.assert_array_equal(served, predict_quantiles(forecaster.network, train_window))
    # The backtest's batched forward over every window: equal up to float32 matmul rounding.
    backtest = forecaster.predict_all(frame)
    np.testing.assert_allclose(
        served[0], backtest[["q0.1", "q0.5", "q0.9"]].to_numpy()[-1], rtol=0, atol=1e-6
    )


def test_a_request_history_is_refused_with_the_csv_validation_message() -> None:
    frame = history(60, seed=3, level=100.0, zero_volume=False)
    frame.iloc[7, frame.columns.get_loc("high")] = frame["low"].iloc[7] * 0.5
    frame.iloc[9, frame.columns.get_loc("close")] = frame["high"].iloc[9] * 2
    request = parse_prediction(request_body(frame), max_rows=5000)
    assert request.history is not None
    with pytest.raises(DataValidationError) as served:
        check_history(request.history, "history for ACME")
    with pytest.raises(DataValidationError) as csv:
        validate_ohlcv(frame.reset_index(), origin="history for ACME",
                       line_numbers=range(len(frame)), unit="row")  # fmt: skip
    assert str(served.value) == str(csv.value)
    assert str(served.value).startswith(f"history for ACME: row 7 ({frame.index[7].date()}): ")
