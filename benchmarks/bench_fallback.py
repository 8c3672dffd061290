"""What each served method costs per request: the model's forward pass next to the baselines
that answer where the model has not earned a ticker.

    python benchmarks/bench_fallback.py [--rows 80] [--repeats 500]

Single-threaded medians after a warm-up, in process (no HTTP): the default 5-network ensemble's
forward for one window (the LSTM path's dominant step), GARCH(1,1)-t filtered with fixed
parameters over a client's history and over a server's full history (a universe ticker), a
GARCH fit on a history's own returns (an unseen ticker with enough history), and the empirical
random walk; then what recalibrating each one's bands costs (forecaster.methods.calibration): the
network's factors from its own forecasts over a history long enough for the full window, and
each baseline's forecast with its factors. Parameters come from a real fit on the bundled ^GSPC.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from bench_request_path import timed  # the same median-of-repeats timer

from forecaster.config import load_config
from forecaster.data.features import compute_features
from forecaster.data.scaling import FeatureScaler
from forecaster.data.sources import SampleSource
from forecaster.methods import Garch, RandomWalk
from forecaster.registry.bundle import MethodSpec, ModelBundle
from forecaster.registry.predictor import Forecaster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = load_config(None)
    sample = SampleSource().load("^GSPC")
    features = config.features
    scaler = FeatureScaler.fit(compute_features(sample, features).to_numpy(), features.names)
    bundle = ModelBundle.from_config(config, scaler)
    model = Forecaster(bundle, bundle.build_network())
    levels = bundle.quantiles
    closes = sample["close"].to_numpy()
    client = closes[-args.rows :]
    window = model.prepare_window(sample.tail(bundle.min_history))
    garch, walk = Garch(), RandomWalk(250)
    params = garch.fit(closes[-1000:]).params
    fit_rows = closes[-(Garch.fit_min_returns + 1) :]
    calibrating = sample.tail(bundle.min_history + (bundle.calibration_window or 0))
    cal_closes, cal_days = calibrating["close"].to_numpy(), calibrating.index.to_numpy()
    model.bundle = replace(
        bundle, methods={**bundle.methods, "garch": MethodSpec({}, {"X": params})}
    )
    steps: dict[str, tuple[Callable[[], Any], int]] = {
        f"lstm: forward of the {bundle.ensemble_size}-network ensemble, one window": (
            lambda: model.forecast_window(window), args.repeats),
        f"garch: fixed parameters filtered over {args.rows} rows (universe ticker)": (
            lambda: garch.next_day(client, params, levels), args.repeats),
        f"garch: fixed parameters filtered over {len(closes):,} rows (server history)": (
            lambda: garch.next_day(closes, params, levels), args.repeats),
        f"garch: fit + filter on {len(fit_rows)} rows (unseen ticker, the minimum)": (
            lambda: garch.next_day(fit_rows, garch.fit(fit_rows).params, levels),
            args.repeats // 10),
        "garch: fit + filter on 1,000 rows (unseen ticker)": (
            lambda: garch.next_day(closes[-1000:], garch.fit(closes[-1000:]).params, levels),
            args.repeats // 10),
        f"naive: empirical quantiles of {args.rows - 1} returns": (
            lambda: walk.next_day(client, {}, levels), args.repeats),
        # Band recalibration (forecaster.methods.calibration), as the API pays it per forecast.
        f"lstm: band factors from {len(calibrating)} rows ({bundle.calibration_window} outcomes)": (
            lambda: model.history_calibration(calibrating, "X"), args.repeats // 10),
        f"garch: filter + recalibrate over {len(calibrating)} rows (served, with dates)": (
            lambda: model.baseline_forecast("X", "garch", cal_closes, cal_days),
            args.repeats),
        f"naive: quantiles + recalibrate over {len(calibrating)} rows (served, with dates)": (
            lambda: model.baseline_forecast("X", "naive", cal_closes, cal_days),
            args.repeats),
    }  # fmt: skip
    print(f"{platform.machine()}, Python {platform.python_version()}, torch "
          f"{torch.__version__}, numpy {np.__version__}, 1 thread; medians")  # fmt: skip
    for name, (fn, repeats) in steps.items():
        print(f"  {name:<72} {timed(fn, repeats):10.1f} us  ({repeats} calls)")


if __name__ == "__main__":
    main()
