"""What each served method costs per request: the model's forward pass next to every classic
method that answers where the model has not earned a ticker.

    python benchmarks/bench_fallback.py [--rows 80] [--repeats 500]

Single-threaded medians after a warm-up, in process (no HTTP): the default 5-network ensemble's
forward for one window (the LSTM path's dominant step); then, for each classic method of the
registry (forecaster.methods) and their equal-weight combination, its path with fixed
parameters over a client's history (a universe ticker) and over a server's full history, a fit
on a history's own bars (an unseen ticker with the minimum history), and the served forecast
with its bands recalibrated over the calibration window (forecaster.methods.calibration).
Parameters come from a real fit on the bundled ^GSPC.
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
from forecaster.methods import Bars, Combination, configured
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
    bars = Bars.of_frame(sample)
    client = bars.tail(args.rows)
    window = model.prepare_window(sample.tail(bundle.min_history))
    calibrating = sample.tail(bundle.min_history + (bundle.calibration_window or 0))
    cal_bars, cal_days = Bars.of_frame(calibrating), calibrating.index.to_numpy()
    chosen = configured(config.evaluation)
    chosen["combination"] = Combination({n: 1 / len(chosen) for n in chosen}, dict(chosen))
    params = {name: m.fit(bars.tail(1000), levels).params for name, m in chosen.items()}
    fit_rows = bars.tail(max(m.fit_min_returns for m in chosen.values()) + 1)
    model.bundle = replace(
        bundle,
        methods={n: MethodSpec(m.settings(), {"X": params[n]}) for n, m in chosen.items()},
    )
    model = Forecaster(model.bundle, model.network)
    steps: dict[str, tuple[Callable[[], Any], int]] = {
        f"lstm: forward of the {bundle.ensemble_size}-network ensemble, one window": (
            lambda: model.forecast_window(window), args.repeats),
        f"lstm: band factors from {len(calibrating)} rows ({bundle.calibration_window} outcomes)": (
            lambda: model.history_calibration(calibrating, "X"), args.repeats // 10),
    }  # fmt: skip
    for name, m in chosen.items():
        p = params[name]
        steps[f"{name}: fixed parameters over {args.rows} rows (universe ticker)"] = (
            lambda m=m, p=p: m.next_day(client, p, levels), args.repeats)  # fmt: skip
        steps[f"{name}: fixed parameters over {len(bars):,} rows (server history)"] = (
            lambda m=m, p=p: m.next_day(bars, p, levels), args.repeats // 10)  # fmt: skip
        if m.estimates:
            steps[f"{name}: fit + forecast on {len(fit_rows)} rows (unseen ticker)"] = (
                lambda m=m: m.next_day(fit_rows, m.fit(fit_rows, levels).params, levels),
                max(5, args.repeats // 50))  # fmt: skip
            # The served path for an unseen ticker whose history was fitted before: the fit
            # comes from the per-process cache (keyed by the history's digest).
            steps[f"{name}: unseen ticker, same {len(calibrating)} rows again (cached fit)"] = (
                lambda name=name: model.baseline_forecast("NEW", name, cal_bars, cal_days),
                args.repeats)  # fmt: skip
        steps[f"{name}: served with bands recalibrated over {len(calibrating)} rows"] = (
            lambda name=name: model.baseline_forecast("X", name, cal_bars, cal_days),
            args.repeats)  # fmt: skip
    print(f"{platform.machine()}, Python {platform.python_version()}, torch "
          f"{torch.__version__}, numpy {np.__version__}, 1 thread; medians")  # fmt: skip
    for name, (fn, repeats) in steps.items():
        print(f"  {name:<76} {timed(fn, repeats):10.1f} us  ({repeats} calls)")


if __name__ == "__main__":
    main()
