"""What each change to the network's inputs or scale does, on validation days only.

    python benchmarks/bench_model_variants.py [--variant NAME KEY=VALUE ...] ...

Each variant is the default config with some `--set` overrides; the network ensemble is trained
on the training days (early stopping on validation, as always) and its raw quantiles (before the
per-ticker recalibration) are scored on the validation days, pooled and per ticker, next to the
classic forecasters fitted on the training days and scored on the same days. The test days are
never read. The combination's weights are fitted on these validation days, so its score here
is in-sample and shown for reference only. Prints one JSON object per variant and a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import torch

from forecaster.config import load_config
from forecaster.data.dataset import prepare
from forecaster.data.sources import load_frames
from forecaster.evaluation.backtest import fit_baselines
from forecaster.evaluation.metrics import MODEL, evaluate
from forecaster.methods.lstm import LSTMForecaster
from forecaster.methods.windowed import ClassicForecaster

RANGE = (
    "features.names=[log_return,overnight_gap,intraday_range,close_location,log_volume_ratio,"
    "volatility,gk_volatility,range_variance,range_vol_5,range_vol_22]"
)
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "range inputs": [RANGE],
    "range inputs, scale_by range_vol_22": [RANGE, "model.scale_by=range_vol_22"],
    "range inputs, scale_by range_vol_5": [RANGE, "model.scale_by=range_vol_5"],
    "scale_by gk_volatility": ["model.scale_by=gk_volatility"],
    "range_vol_5 added, scale_by range_vol_5": [
        "features.names=[log_return,overnight_gap,intraday_range,close_location,"
        "log_volume_ratio,volatility,gk_volatility,range_vol_5]",
        "model.scale_by=range_vol_5",
    ],
    "median at persistence": ["model.median=persistence"],
    "median at persistence, seeds from 1000": ["model.median=persistence", "training.seed=1000"],
    "default, seeds from 1000": ["training.seed=1000"],
    "range inputs, scale_by range_vol_5, seeds from 1000": [
        RANGE,
        "model.scale_by=range_vol_5",
        "training.seed=1000",
    ],
}


def run(name: str, overrides: list[str]) -> dict[str, Any]:
    config = load_config(None, overrides)
    frames = load_frames(config.data)
    data = prepare(frames, config)
    start = time.perf_counter()
    model = LSTMForecaster(config).fit(data)
    seconds = time.perf_counter() - start
    val = data.windows.take(data.split.val)
    classic = {n: f for n, f in fit_baselines(data, config).items()
               if isinstance(f, ClassicForecaster)}  # fmt: skip
    forecasts = {MODEL: model.predict_raw(val), **{n: f.predict(val) for n, f in classic.items()}}
    ev = evaluate(val, forecasts, config.model.quantiles, config.model.intervals,
                  config.model.interval_level)  # fmt: skip
    out: dict[str, Any] = {"variant": name, "overrides": overrides, "days": len(val),
                           "train_seconds": round(seconds, 1)}  # fmt: skip
    out["pinball_bp"] = {n: round(1e4 * s.pinball, 4) for n, s in ev.scores.items()}
    out["ratio"] = {n: round(ev.ratio("pinball", vs=n), 4) for n in classic}
    out["per_ticker_ratio"] = {
        t: {n: round(e.ratio("pinball", vs=n), 4) for n in ("garch", "egarch", "har")}
        for t, e in ev.by_ticker().items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), help="variant names")
    args = parser.parse_args()
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    results = []
    for name in args.only:
        result = run(name, VARIANTS[name])
        print(json.dumps(result), flush=True)
        results.append(result)
    print(f"{'variant':<40}{'model bp':>10}{'vs garch':>10}{'vs egarch':>10}{'vs har':>10}")
    for r in results:
        ratio = r["ratio"]
        print(f"{r['variant']:<40}{r['pinball_bp']['model']:>10.3f}{ratio['garch']:>10.4f}"
              f"{ratio['egarch']:>10.4f}{ratio['har']:>10.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
