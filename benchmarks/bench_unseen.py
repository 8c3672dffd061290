"""What a stock in no training set gets: each single stock of the offline universe left out in
turn, the served forecast for it scored against every classic comparator on the same days.

    python benchmarks/bench_unseen.py [--stocks AAPL GOOG IBM MSFT] [--set KEY=VALUE ...]

For each left-out stock S: the default pipeline's science on the other tickers (the ensemble,
its per-ticker recalibration, leave-tickers-out evidence deciding the unseen rule), then S
served by that rule, as the API serves a ticker outside the universe: the model (its bands
recalibrated on S's own earlier outcomes, never seen in training) or the rule's classic method
(its bands recalibrated on its own earlier forecasts of S, as served).
S's test days are its own chronological test split; its baselines are fitted on its training
split. Prints one JSON object per stock and a summary; nothing is registered.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from forecaster.config import ForecasterConfig, load_config
from forecaster.data.dataset import prepare
from forecaster.data.sources import load_frames
from forecaster.data.windows import Windows, concat_windows
from forecaster.evaluation.backtest import (
    fit_baselines,
    leave_tickers_out,
    score_on_test,
    unseen_route,
)
from forecaster.evaluation.metrics import GARCH, MODEL, NAIVE, RAW, evaluate
from forecaster.evaluation.scores import lowest
from forecaster.methods import NETWORK, Bars, Method
from forecaster.methods.calibration import conformity_scores, recalibrate, rolling_factors
from forecaster.methods.lstm import LSTMForecaster
from forecaster.methods.windowed import ClassicForecaster

SERVED = "served"


def recalibrated(
    method: Method, frame: pd.DataFrame, params: dict[str, float], test: Windows,
    config: ForecasterConfig,
) -> np.ndarray:  # fmt: skip
    """A classic method's forecasts of the test days with the parameters fitted on the stock's
    training days, each band rescaled by the rolling conformal factors of the method's own
    earlier forecasts (outcomes known by the as-of day only), as the service serves an unseen
    ticker."""
    model = config.model
    bars = Bars.of_frame(frame)
    first = method.earliest
    path = method.path(bars, params, model.quantiles, first)  # row k: as of close first + k
    realised = np.log(bars.close[first + 1 :] / bars.close[first:-1])
    scores = conformity_scores(path[:-1], realised, model.quantiles, model.intervals)
    known_at = frame.index[first + 1 :].to_numpy(dtype="datetime64[ns]")
    rows = frame.index.get_indexer(pd.DatetimeIndex(test.end_dates)) - first
    factors = rolling_factors(scores, known_at, test.end_dates, model.calibration_window or 250,
                              model.calibration_min_days, model.intervals)  # fmt: skip
    return recalibrate(path[rows], factors, model.quantiles, model.intervals)


def one(stock: str, overrides: list[str]) -> dict[str, Any]:
    config = load_config(None, overrides)
    frames = load_frames(config.data)
    rest = {t: f for t, f in frames.items() if t != stock}
    start = time.perf_counter()
    data = prepare(rest, config)
    model = LSTMForecaster(config).fit(data)
    forecasters = {MODEL: model, **fit_baselines(data, config)}
    ev = score_on_test(data, forecasters, config)
    held = leave_tickers_out(data, ev, config)
    rule = held.route if held is not None else unseen_route(config)
    assert rule is not None
    # The stock alone, split by its own dates; the model's forecasts over its validation and
    # test days in one call, so its test days' bands are recalibrated on its earlier outcomes.
    own = prepare({stock: frames[stock]}, config)
    val, test = own.windows.take(own.split.val), own.windows.take(own.split.test)
    both = concat_windows([val, test])
    baselines = fit_baselines(own, config)
    classic = {n: f for n, f in baselines.items() if isinstance(f, ClassicForecaster)}
    forecasts = {name: f.predict(test) for name, f in classic.items()}
    model_q = model.predict(both)[len(val) :]
    raw_q = model.predict_raw(test)
    levels, intervals = config.model.quantiles, config.model.intervals
    # Each classic method as served: its bands recalibrated on its own earlier forecasts.
    calibrated = {
        f"{n}_recalibrated": recalibrated(f.method, frames[stock], f.params.get(stock, {}),
                                          test, config)
        for n, f in classic.items()
    }  # fmt: skip
    served = model_q if rule.method == NETWORK else calibrated[f"{rule.method}_recalibrated"]
    scored = evaluate(test, {SERVED: served, MODEL: model_q, RAW: raw_q, **calibrated,
                             **forecasts},
                      levels, intervals, config.model.interval_level)  # fmt: skip
    out: dict[str, Any] = {
        "stock": stock,
        "trained_on": list(rest),
        "rule": rule.method,
        "rule_reason": rule.reason,
        "days": len(test),
        "test": f"{str(test.end_dates.min())[:10]}..{str(test.end_dates.max())[:10]}",
        "seconds": round(time.perf_counter() - start, 1),
    }
    strongest = lowest({n: scored.scores[n].pinball for n in calibrated})
    out["strongest_recalibrated"] = strongest
    for name in (SERVED, MODEL, RAW, *calibrated):
        s = scored.scores[name]
        out[name] = {
            "pinball_vs_garch": s.pinball / scored.scores[GARCH].pinball,
            "pinball_vs_naive": s.pinball / scored.scores[NAIVE].pinball,
            "pinball_vs_strongest": s.pinball / scored.scores[str(strongest)].pinball,
            "coverage": {repr(c): round(100 * i.coverage, 1) for c, i in s.intervals.items()},
            "kupiec": {repr(c): round(i.kupiec_pvalue, 3) for c, i in s.intervals.items()},
        }
    out["garch_coverage"] = {
        repr(c): round(100 * i.coverage, 1) for c, i in scored.scores[GARCH].intervals.items()
    }
    _, better, worse = scored.dm("pinball", GARCH, name=SERVED)
    out["served_vs_garch_dm_p"] = {"better": better, "worse": worse}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stocks", nargs="+", default=["AAPL", "GOOG", "IBM", "MSFT"])
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    results = []
    for stock in args.stocks:
        result = one(stock, args.overrides)
        print(json.dumps(result), flush=True)
        results.append(result)
    served = [r[SERVED]["pinball_vs_garch"] for r in results]
    print(
        json.dumps(
            {
                "mean_served_pinball_vs_garch": float(np.mean(served)),
                "max_served_pinball_vs_garch": float(np.max(served)),
                "max_served_pinball_vs_strongest": max(
                    r[SERVED]["pinball_vs_strongest"] for r in results
                ),
                "max_abs_80_coverage_error": max(
                    abs(r[SERVED]["coverage"]["0.8"] - 80.0) for r in results
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
