"""Where the time of one client-history prediction goes, step by step, old way vs new way.

    python benchmarks/bench_request_path.py [--rows 80] [--repeats 2000]

Single-threaded micro-timings (median of `--repeats` calls, after a warm-up) of each step the
API runs for a POST /v1/predictions with the history in the body, each next to the
alternative it replaced or was weighed against: parsing (pydantic's JSON validator with a
model per row; the standard library's json + pydantic; orjson + the array fast path),
validation and windowing (a validated DataFrame, as before; arrays), the forward pass (one
window alone; one window's share of a micro-batch of 16), and the response (pydantic's
serialiser; orjson on the model's dict).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import torch

from forecaster.config import load_config
from forecaster.data.features import compute_features
from forecaster.data.scaling import FeatureScaler
from forecaster.data.schemas import validate_ohlcv
from forecaster.data.sources import SampleSource
from forecaster.registry.bundle import ModelBundle
from forecaster.registry.predictor import Forecaster
from service.client_history import check_history
from service.requests import RequestHistory, parse_prediction
from service.schemas import PredictionRequest, PredictionResponse


def timed(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(min(200, repeats)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = load_config(None)
    sample = SampleSource().load("^GSPC")
    frame = sample.tail(args.rows)
    rows = [{"date": str(d.date()), **{k: float(v) for k, v in r.items()}}
            for d, r in frame.iterrows()]  # fmt: skip
    raw = json.dumps({"ticker": "ACME", "history": rows}).encode()
    features = config.features
    scaler = FeatureScaler.fit(compute_features(sample, features).to_numpy(), features.names)
    bundle = ModelBundle(
        features=features, lookback=config.windows.lookback, interval_level=0.8,
        quantiles=config.model.quantiles, scaler=scaler, n_features=len(features.names),
        hidden_size=config.model.hidden_size, num_layers=config.model.num_layers,
        dropout=0.0, intervals=config.model.intervals,
    )  # fmt: skip
    model = Forecaster(bundle, bundle.build_network())

    def pydantic_rows() -> RequestHistory:
        body = PredictionRequest.model_validate_json(raw)
        return RequestHistory.of_rows(body.history or [])

    def stdlib_json() -> PredictionRequest:
        return PredictionRequest.model_validate(json.loads(raw))

    def frame_window() -> np.ndarray:
        days = np.array([r["date"] for r in rows], dtype="datetime64[ns]")
        table = pd.DataFrame({"date": days, **{k: [r[k] for r in rows] for k in
                              ("open", "high", "low", "close", "volume")}})  # fmt: skip
        clean = validate_ohlcv(table, origin="history", line_numbers=range(len(rows)), unit="row")
        return model.prepare_window(clean)

    history = parse_prediction(raw, 5000).history
    assert history is not None

    def array_window() -> np.ndarray:
        check_history(history, "history for ACME")
        return model.prepare_arrays(history.prices, "history for ACME")

    window = array_window()
    sixteen = np.concatenate([window] * 16)
    q = model.forecast_window(window)
    response = PredictionResponse.model_validate({
        "ticker": "ACME", "as_of": "2018-12-31", "target_date": "2019-01-02",
        "last_close": 2506.85, "predicted_close": 2507.0, "predicted_return": float(q[3]),
        "interval": {"lower": 2400.0, "upper": 2600.0, "level": 0.8},
        "quantiles": {str(lv): 2500.0 + i for i, lv in enumerate(bundle.quantiles)},
        "intervals": {str(c): {"lower": 2400.0, "upper": 2600.0, "level": c}
                      for c in bundle.served_intervals},
        "volatility": 0.01, "model": {"name": "stock-lstm", "version": "1", "run_id": "x"},
        "history_source": "request",
    })  # fmt: skip
    steps = {
        "parse: pydantic JSON validator, a model per row, to arrays": pydantic_rows,
        "parse: stdlib json.loads + pydantic": stdlib_json,
        "parse: orjson + array fast path (served)": lambda: parse_prediction(raw, 5000),
        "validate + window: validated DataFrame (before)": frame_window,
        "validate + window: arrays (served)": array_window,
        "forward: one window alone": lambda: model.forecast_windows(window),
        "forward: batch of 16, per window": lambda: model.forecast_windows(sixteen),
        "response: pydantic model_dump_json (served)": response.model_dump_json,
        "response: orjson.dumps(model_dump())": lambda: orjson.dumps(response.model_dump()),
    }
    print(f"{platform.machine()}, Python {platform.python_version()}, torch "
          f"{torch.__version__}, 1 thread; {args.rows}-row body of {len(raw):,} bytes; "
          f"median of {args.repeats}")  # fmt: skip
    for name, fn in steps.items():
        micros = timed(fn, args.repeats)
        if name.startswith("forward: batch of 16"):
            micros /= 16
        print(f"  {name:<62} {micros:8.1f} us")


if __name__ == "__main__":
    main()
