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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.dataset import PreparedData, build_windows, fit_scaler, last_train_days
from forecaster.evaluation import GARCH, MODEL, NAIVE, Evaluation, evaluate
from forecaster.fallback import GARCH_MIN_RETURNS
from forecaster.forecasters import (
    GarchForecaster,
    LinearQuantileForecaster,
    NaiveEmpiricalForecaster,
    QuantileForecaster,
)
from forecaster.forecasters.lstm import LSTMForecaster
from forecaster.gate import (
    GARCH_METHOD,
    UNSEEN_SCOPE,
    DayScores,
    Evidence,
    GateConfig,
    Route,
    route,
)
from forecaster.inference import quantile_column
from forecaster.progress import bar
from forecaster.sources import load_frames
from forecaster.splits import walk_forward_folds
from forecaster.train import TrainedModel
from forecaster.windows import Windows, concat_windows

logger = logging.getLogger(__name__)


def baselines(config: ForecasterConfig) -> dict[str, QuantileForecaster]:
    """The baselines a quant would use, unfitted; each is refitted on every fold."""
    levels = config.model.quantiles
    return {
        NAIVE: NaiveEmpiricalForecaster(levels, window=config.evaluation.naive_window),
        GARCH: GarchForecaster(levels),
        "linear": LinearQuantileForecaster(levels, config.training.ridge_alphas),
    }


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
    """Every fitted forecaster on exactly the fold's test windows."""
    test = data.windows.take(data.split.test)
    return evaluate(
        test,
        {name: f.predict(test) for name, f in forecasters.items()},
        config.model.quantiles,
        config.model.intervals,
        config.model.interval_level,
    )


def fit_baselines(data: PreparedData, config: ForecasterConfig) -> dict[str, QuantileForecaster]:
    return {name: forecaster.fit(data) for name, forecaster in baselines(config).items()}


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
        ticker: route(day_scores(t, MODEL), day_scores(t, NAIVE), day_scores(t, GARCH), gate)
        for ticker, t in ev.by_ticker().items()
    }


def unseen_route(config: ForecasterConfig) -> Route | None:
    """The rule for a ticker outside the universe until leave-tickers-out evidence exists: no
    evidence that the model transfers, so a baseline on the ticker's own history serves."""
    if not config.evaluation.route_per_ticker:
        return None
    return Route(
        GARCH_METHOD,
        f"no evidence yet that the model transfers to tickers it has not seen: GARCH(1,1)-t "
        f"fitted on the request's history ({GARCH_MIN_RETURNS}+ returns), else the random walk",
        Evidence(UNSEEN_SCOPE, 0, None, None, None, None, {}),
    )


def garch_params(fold: FoldResult) -> dict[str, dict[str, float]]:
    forecaster = fold.forecasters.get(GARCH)
    return forecaster.params if isinstance(forecaster, GarchForecaster) else {}


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
            prices = test.last_close[:, None] * np.exp(q)
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
