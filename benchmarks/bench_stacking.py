"""Would stacking the network with the classic forecasters help? Measured inside the validation
days only.

    python benchmarks/bench_stacking.py [--set KEY=VALUE ...]

The default network ensemble is trained on the training days (early stopping on validation, as
always) and the classic forecasters fitted on the training days. Each ticker's validation days
are cut at its own median date: pinball-optimal weights (forecaster.methods.combination, an
exact LP) are fitted on the first half, for the classics alone and for the classics plus the
network, and every forecaster is scored on the second half, pooled and per ticker. The test
days are never read. (The network's early stopping did see the whole validation period, which
favours it a little on both halves.)
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from forecaster.config import load_config
from forecaster.data.dataset import prepare
from forecaster.data.sources import load_frames
from forecaster.evaluation.backtest import fit_baselines
from forecaster.evaluation.scores import pinball_per_day
from forecaster.methods.combination import combination_weights
from forecaster.methods.lstm import LSTMForecaster
from forecaster.methods.windowed import ClassicForecaster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    args = parser.parse_args()
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    config = load_config(None, args.overrides)
    levels = config.model.quantiles
    data = prepare(load_frames(config.data), config)
    start = time.perf_counter()
    model = LSTMForecaster(config).fit(data)
    val = data.windows.take(data.split.val)
    skip = ("naive", "combination")  # the combination is refitted below, on the first half
    classic = {n: f for n, f in fit_baselines(data, config).items()
               if isinstance(f, ClassicForecaster) and n not in skip}  # fmt: skip
    q = {"lstm": model.predict_raw(val), **{n: f.predict(val) for n, f in classic.items()}}
    y = np.log(val.target_close / val.last_close)
    # Each ticker's validation days cut at its own median date (the tickers' periods differ).
    stamp = val.end_dates.astype("int64")
    first = np.zeros(len(val), dtype=bool)
    for ticker in dict.fromkeys(val.tickers):
        own = val.tickers == ticker
        first |= own & (stamp <= np.median(stamp[own]))
    second = ~first
    members = [n for n in q if n != "lstm"]
    w_classic = combination_weights({n: q[n][first] for n in members}, y[first], levels)
    w_stack = combination_weights({n: q[n][first] for n in q}, y[first], levels)
    q["classic combination"] = sum(w * q[n] for n, w in w_classic.items())
    q["stack"] = sum(w * q[n] for n, w in w_stack.items())
    day = {n: pinball_per_day(f[second], y[second], levels) for n, f in q.items()}
    tickers = val.tickers[second]
    out = {
        "first_half_days": int(first.sum()), "second_half_days": int(second.sum()),
        "seconds": round(time.perf_counter() - start, 1),
        "weights": {"classic combination": w_classic, "stack": w_stack},
        "pinball_bp": {n: round(1e4 * float(np.nanmean(d)), 4) for n, d in day.items()},
        "per_ticker_bp": {
            str(t): {n: round(1e4 * float(np.nanmean(d[tickers == t])), 4) for n, d in day.items()}
            for t in dict.fromkeys(tickers)
        },
    }  # fmt: skip
    print(json.dumps(out))
    names = list(day)
    print(f"{'':<8}" + "".join(f"{n[:12]:>13}" for n in names))
    for label, row in [("pooled", out["pinball_bp"]), *out["per_ticker_bp"].items()]:
        print(f"{label:<8}" + "".join(f"{row[n]:>13.3f}" for n in names))


if __name__ == "__main__":
    main()
