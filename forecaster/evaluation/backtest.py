"""The science of a backtest: the baselines, one fold's forecasters fitted and scored on the
same days, and the walk-forward backtest over expanding folds.

Orchestration and MLflow logging stay in `pipelines/`; this module does no tracking IO.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import PreparedData, build_windows, fit_scaler, last_train_days
from forecaster.data.sources import load_frames
from forecaster.data.splits import walk_forward_folds
from forecaster.data.windows import Windows, concat_windows
from forecaster.evaluation.gate import (
    NO_EVIDENCE,
    UNSEEN_SCOPE,
    DayScores,
    GateConfig,
    Route,
    route,
)
from forecaster.evaluation.metrics import LINEAR, MODEL, RAW, Evaluation, evaluate
from forecaster.methods import CLASSIC, Combination, Garch, configured
from forecaster.methods.calibration import Calibration
from forecaster.methods.combination import combination_weights
from forecaster.methods.linear import LinearQuantileForecaster
from forecaster.methods.lstm import LSTMForecaster
from forecaster.methods.network.train import TrainedModel
from forecaster.methods.windowed import ClassicForecaster, QuantileForecaster
from forecaster.progress import bar
from forecaster.quantile_forecast import quantile_column, to_prices

logger = logging.getLogger(__name__)


def baselines(config: ForecasterConfig) -> dict[str, QuantileForecaster]:
    """The baselines a quant would use, unfitted; each is refitted on every fold: every classic
    method of the registry (forecaster.methods), by its name, and the ridge baseline."""
    levels = config.model.quantiles
    out: dict[str, QuantileForecaster] = {
        name: ClassicForecaster(method, levels)
        for name, method in configured(config.evaluation).items()
    }
    out[LINEAR] = LinearQuantileForecaster(levels, config.training.ridge_alphas)
    return out


@dataclass(frozen=True)
class FoldResult:
    """The fitted forecasters of one fold and their evaluation on its test windows."""

    forecasters: Mapping[str, QuantileForecaster]
    evaluation: Evaluation

    @property
    def trained(self) -> TrainedModel:
        model = self.forecasters[MODEL]
        if not isinstance(model, LSTMForecaster) or model.trained is None:
            raise TypeError("the fold's model is not a fitted LSTM")
        return model.trained

    @property
    def test(self) -> Windows:
        return self.evaluation.windows


def score_on_test(
    data: PreparedData, forecasters: Mapping[str, QuantileForecaster], config: ForecasterConfig
) -> Evaluation:
    """Every fitted forecaster on exactly the fold's test windows; a recalibrated model's raw
    quantiles are scored too (as RAW), so coverage before and after sits side by side."""
    test = data.windows.take(data.split.test)
    forecasts = {name: f.predict(test) for name, f in forecasters.items()}
    model = forecasters.get(MODEL)
    if isinstance(model, LSTMForecaster) and model.outcomes is not None:
        forecasts[RAW] = model.predict_raw(test)
    return evaluate(
        test,
        forecasts,
        config.model.quantiles,
        config.model.intervals,
        config.model.interval_level,
    )


def fit_baselines(data: PreparedData, config: ForecasterConfig) -> dict[str, QuantileForecaster]:
    fitted = {name: forecaster.fit(data) for name, forecaster in baselines(config).items()}
    combined = fit_combination(fitted, data)
    if combined is not None:
        fitted[Combination.name] = combined
    return fitted


def fit_combination(
    fitted: Mapping[str, QuantileForecaster], data: PreparedData
) -> ClassicForecaster | None:
    """The classic forecasters' quantiles averaged with weights that minimise their pooled
    pinball on the validation days (the members' parameters come from the training days, so the
    weights see neither the test days nor the days the members were fitted on). None without
    validation days."""
    members = {name: f for name, f in fitted.items() if isinstance(f, ClassicForecaster)}
    val = data.windows.take(data.split.val)
    if len(val) == 0 or len(members) < 2:
        return None
    levels = next(iter(members.values())).levels
    y = np.log(val.target_close / val.last_close)
    weights = combination_weights({n: f.predict(val) for n, f in members.items()}, y, levels)
    logger.info("combination weights on %d validation days: %s", len(val),
                ", ".join(f"{n} {w:.3f}" for n, w in weights.items()))  # fmt: skip
    return ClassicForecaster.combining(weights, members)


def day_scores(ev: Evaluation, name: str) -> DayScores:
    """One forecaster's per-day losses, as the gate and the routing rule read them."""
    s = ev.scores[name]
    return DayScores(pinball=s.day_pinball, abs_error=s.day_abs_error, violations=s.day_violations)


def gate_config(config: ForecasterConfig) -> GateConfig:
    return GateConfig(config.evaluation.dm_alpha, config.evaluation.kupiec_alpha)


def ticker_routes(ev: Evaluation, config: ForecasterConfig) -> dict[str, Route]:
    """Which forecaster serves each ticker, from the scores on that ticker's own test days
    (none with evaluation.route_per_ticker off: the model then serves every ticker)."""
    if not config.evaluation.route_per_ticker:
        return {}
    gate = gate_config(config)
    return {
        ticker: route(day_scores(t, MODEL), comparator_scores(t), gate)
        for ticker, t in ev.by_ticker().items()
    }


def comparator_scores(ev: Evaluation) -> dict[str, DayScores]:
    """Every classic method's per-day losses, by its name: what the routes compare with."""
    return {name: day_scores(ev, name) for name in CLASSIC if name in ev.scores}


def unseen_route(config: ForecasterConfig) -> Route | None:
    """The rule for a ticker outside the universe until leave-tickers-out evidence exists: no
    evidence that the model transfers, so a baseline on the ticker's own history serves."""
    if not config.evaluation.route_per_ticker:
        return None
    return Route(
        Garch.name,
        f"no evidence yet that the model transfers to tickers it has not seen: GARCH(1,1)-t "
        f"fitted on the request's history ({Garch.fit_min_returns}+ returns), else the random "
        "walk",
        NO_EVIDENCE,
    )


@dataclass(frozen=True)
class HeldOut:
    """Leave-tickers-out evidence: a model trained without `tickers`, scored on their test days
    against the baselines on the same days, and the rule it gives for unseen tickers."""

    tickers: tuple[str, ...]
    evaluation: Evaluation
    route: Route


def holdout_tickers(tickers: list[str], config: ForecasterConfig) -> list[str]:
    """The universe's last `evaluation.holdout_tickers` tickers, leaving at least one to train
    on (none when per-ticker routing is off)."""
    if not config.evaluation.route_per_ticker:
        return []
    n = min(config.evaluation.holdout_tickers, len(tickers) - 1)
    return tickers[-n:] if n > 0 else []


def leave_tickers_out(
    data: PreparedData, ev: Evaluation, config: ForecasterConfig
) -> HeldOut | None:
    """Train the model again without the held-out tickers (their rows reach neither the network
    nor the scaler) and score it on their test days: what a ticker the model has never seen can
    expect. The baselines' forecasts are the main evaluation's, on exactly those days."""
    held = holdout_tickers(list(data.frames), config)
    if not held:
        return None
    w, split = data.windows, data.split
    keep = ~np.isin(w.tickers, held)
    train, val = split.train[keep[split.train]], split.val[keep[split.val]]
    rest = {t: f for t, f in data.frames.items() if t not in held}
    scaler = fit_scaler(rest, config, last_train_days(w, train))
    sub = PreparedData(w, replace(split, train=train, val=val), scaler, data.frames)
    size = config.evaluation.holdout_ensemble_size
    logger.info("leave-tickers-out: training %d network(s) without %s", size, ", ".join(held))
    model = LSTMForecaster(
        config.model_copy(update={"model": config.model.model_copy(update={"ensemble_size": size})})
    ).fit(sub)
    rows = np.flatnonzero(np.isin(ev.windows.tickers, held))
    test = ev.windows.take(rows)
    scored = evaluate(
        test,
        {
            MODEL: model.predict(test),
            **{n: q[rows] for n, q in ev.forecasts.items() if n in CLASSIC},
        },
        ev.levels,
        ev.intervals,
        ev.interval_level,
    )
    r = route(day_scores(scored, MODEL), comparator_scores(scored), gate_config(config),
              scope=UNSEEN_SCOPE)  # fmt: skip
    note = f"leave-tickers-out ({', '.join(held)} held out of a {size}-network training): "
    return HeldOut(tuple(held), scored, Route(r.method, note + r.reason, r.evidence))


def method_params(fold: FoldResult) -> dict[str, dict[str, dict[str, float]]]:
    """Each classic method's parameters per ticker, fitted on the fold's training days (what
    the bundle serves with)."""
    return {
        name: forecaster.params
        for name, forecaster in fold.forecasters.items()
        if isinstance(forecaster, ClassicForecaster)
    }


def method_settings(fold: FoldResult) -> dict[str, dict[str, Any]]:
    """The settings of each classic method as the fold fitted it (a combination's weights)."""
    return {
        name: forecaster.method.settings()
        for name, forecaster in fold.forecasters.items()
        if isinstance(forecaster, ClassicForecaster)
    }


def model_calibrations(fold: FoldResult) -> dict[str, Calibration]:
    """Each ticker's band factors at the end of the fold's test days (the served bundle's)."""
    model = fold.forecasters.get(MODEL)
    return model.calibrations(fold.test) if isinstance(model, LSTMForecaster) else {}


def fit_fold(data: PreparedData, config: ForecasterConfig) -> FoldResult:
    forecasters: dict[str, QuantileForecaster] = {MODEL: LSTMForecaster(config).fit(data)}
    forecasters.update(fit_baselines(data, config))
    return FoldResult(forecasters, score_on_test(data, forecasters, config))


PREDICTION_COLUMNS = ("ticker", "as_of", "target_date", "last_close", "actual_close")


def write_predictions(path: Path, test: Windows, q: np.ndarray, levels: tuple[float, ...]) -> None:
    """Every test day's quantiles in price units, atomically (no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow([*PREDICTION_COLUMNS, *(quantile_column(lv) for lv in levels)])
            prices = to_prices(test.last_close, q)
            for i in range(len(test)):
                writer.writerow(
                    [
                        test.tickers[i],
                        pd.Timestamp(test.end_dates[i]).date(),
                        pd.Timestamp(test.target_dates[i]).date(),
                        repr(float(test.last_close[i])),
                        repr(float(test.target_close[i])),
                        *(repr(float(v)) for v in prices[i]),
                    ]
                )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fold_entry(number: int, data: PreparedData, fold: FoldResult) -> dict[str, Any]:
    split = data.split
    return {
        "fold": number,
        "test_start": str(split.test_start.date()),
        "test_end": str(split.test_end.date()),
        "train_windows": len(split.train),
        "epochs": fold.trained.epochs,
        **fold.evaluation.summary(),
    }


def run_backtest(config: ForecasterConfig, predictions: Path | None = None) -> dict[str, Any]:
    """Walk-forward backtest, expanding window: every forecaster refitted per fold and scored
    on the same days; nothing is registered. `predictions` gets every test day as CSV."""
    frames = load_frames(config.data)
    windows = build_windows(frames, config)
    folds = walk_forward_folds(windows.target_dates, config.split, windows.tickers)
    results = []
    pooled: list[Evaluation] = []
    folds_bar = bar(len(folds), "backtest folds", "fold")
    for number, split in enumerate(folds, start=1):
        scaler = fit_scaler(frames, config, last_train_days(windows, split.train))
        data = PreparedData(windows=windows, split=split, scaler=scaler, frames=frames)
        logger.info(
            "fold %d/%d: train %d, val %d, test %d windows (%s..%s)",
            number, len(folds), len(split.train), len(split.val), len(split.test),
            split.test_start.date(), split.test_end.date(),
        )  # fmt: skip
        fold = fit_fold(data, config)
        pooled.append(fold.evaluation)
        results.append(_fold_entry(number, data, fold))
        folds_bar.update(1)
    folds_bar.close()
    names = list(pooled[0].forecasts)
    all_test = concat_windows([ev.windows for ev in pooled])
    aggregate = evaluate(
        all_test,
        {name: np.concatenate([ev.forecasts[name] for ev in pooled]) for name in names},
        config.model.quantiles,
        config.model.intervals,
        config.model.interval_level,
    )
    if predictions is not None:
        write_predictions(predictions, all_test, aggregate.forecasts[MODEL], config.model.quantiles)
    return {
        "tickers": list(frames),
        "folds": results,
        "aggregate": aggregate.summary(config.evaluation.lookahead_pinball_ratio),
        # The same keys on each ticker's own days: evidence belongs to the series it is from.
        "per_ticker": aggregate.per_ticker_summary(config.evaluation.lookahead_pinball_ratio),
    }
