"""Forecast quality on the bundled S&P 500: walk-forward backtest, model vs naive vs linear.

    python benchmarks/bench_backtest.py [--folds 5] [--set KEY=VALUE ...]

Uses the default config (the one `make run` trains), refits per fold on an expanding window,
and prints per-fold and pooled metrics with the wall time. Target: MAE ratio vs naive <= 1.00
and interval coverage within 3 points of nominal; the script reports what it measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings

from forecaster.config import load_config
from forecaster.evaluation.backtest import run_backtest
from pipelines.reports import backtest_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    config = load_config(None, [*args.overrides, f"split.folds={args.folds}"])
    start = time.perf_counter()
    payload = run_backtest(config)
    elapsed = time.perf_counter() - start
    print(backtest_text(payload))
    print(f"wall time {elapsed:.0f} s on {platform.machine()}, {os.cpu_count()} cores")
    print(json.dumps(payload["aggregate"]))


if __name__ == "__main__":
    main()
