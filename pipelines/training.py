"""What train, retrain and backtest share: the forecasters of a fold, their evaluation on the
same days, the model bundle, figures and registry tags. The one train-evaluate-register-promote
flow is `pipelines.retrain`; the backtest refits the same forecasters per walk-forward fold."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.dataset import PreparedData, build_windows, fit_scaler
from forecaster.evaluation import GARCH, MODEL, NAIVE, Evaluation, evaluate
from forecaster.forecasters import (
    GarchForecaster,
    LinearQuantileForecaster,
    NaiveEmpiricalForecaster,
    QuantileForecaster,
)
from forecaster.forecasters.lstm import LSTMForecaster
from forecaster.inference import ModelBundle, quantile_column
from forecaster.plots import (
    calibration_figure,
    forecast_figure,
    pit_figure,
    return_bands_figure,
    training_curves_figure,
)
from forecaster.progress import bar
from forecaster.registry import model_history_input
from forecaster.scaling import FeatureScaler
from forecaster.schemas import frame_meta
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
    fitted = {}
    for name, forecaster in baselines(config).items():
        fitted[name] = forecaster.fit(data)
    return fitted


def fit_fold(data: PreparedData, config: ForecasterConfig) -> FoldResult:
    forecasters: dict[str, QuantileForecaster] = {MODEL: LSTMForecaster(config).fit(data)}
    forecasters.update(fit_baselines(data, config))
    return FoldResult(forecasters, score_on_test(data, forecasters, config))


def make_bundle(
    config: ForecasterConfig,
    scaler: FeatureScaler,
    n_features: int,
    frames: Mapping[str, pd.DataFrame],
) -> ModelBundle:
    adjustments = {frame_meta(f).adjustment for f in frames.values()}
    return ModelBundle(
        features=config.features,
        lookback=config.windows.lookback,
        interval_level=config.model.interval_level,
        quantiles=config.model.quantiles,
        scaler=scaler,
        n_features=n_features,
        hidden_size=config.model.hidden_size,
        num_layers=config.model.num_layers,
        dropout=config.model.dropout,
        intervals=config.model.intervals,
        scale_feature=(
            config.features.names.index(config.model.scale_by) if config.model.scale_by else None
        ),
        data_source=config.data.source,
        adjustment=adjustments.pop() if len(adjustments) == 1 else "mixed",
        tickers=tuple(frames),
        ensemble_size=config.model.ensemble_size,
    )


def input_example(frames: Mapping[str, pd.DataFrame], bundle: ModelBundle) -> pd.DataFrame:
    ticker, frame = next(iter(frames.items()))
    return model_history_input(frame.iloc[-bundle.min_history :], ticker)


def log_figures(fold: FoldResult, config: ForecasterConfig) -> None:
    """The headline pictures: realised returns inside the model's and GARCH's bands."""
    ev = fold.evaluation
    for ticker in list(dict.fromkeys(ev.windows.tickers))[:4]:
        safe = "".join(c if c.isalnum() else "_" for c in ticker)
        for name in (MODEL, GARCH):
            if name in ev.forecasts:
                figure = return_bands_figure(ev, name, ticker)
                mlflow.log_figure(figure, f"plots/return_bands_{name}_{safe}.png")
        mlflow.log_figure(
            forecast_figure(ev.windows, ev.forecasts[MODEL], ticker, config.model),
            f"plots/forecast_{safe}.png",
        )
    mlflow.log_figure(pit_figure(ev), "plots/pit.png")
    mlflow.log_figure(calibration_figure(ev), "plots/calibration.png")
    mlflow.log_figure(training_curves_figure(fold.trained.members), "plots/training_curves.png")


def _ratio_tag(ratio: float | None) -> str:
    """A ratio is None when its baseline scored 0 (prices that never move)."""
    return "n/a" if ratio is None else f"{ratio:.6f}"


def version_tags(data: PreparedData, ev: Evaluation, run_id: str) -> dict[str, str]:
    """Registry tags: what data the version saw and how it scored."""
    first = min(f.index[0] for f in data.frames.values()).date()
    last = max(f.index[-1] for f in data.frames.values()).date()
    summary = ev.summary()
    return {
        "tickers": ",".join(data.frames),
        "data_range": f"{first}..{last}",
        "test_range": f"{data.split.test_start.date()}..{data.split.test_end.date()}",
        "test_mae": f"{ev.model.point.mae:.6f}",
        "naive_mae": f"{ev.scores[NAIVE].point.mae:.6f}",
        "mae_ratio_vs_naive": _ratio_tag(summary["mae_ratio_vs_naive"]),
        "test_pinball": f"{ev.model.pinball:.8f}",
        "pinball_ratio_vs_naive": _ratio_tag(summary["pinball_ratio_vs_naive"]),
        "pinball_ratio_vs_garch": _ratio_tag(summary["pinball_ratio_vs_garch"]),
        "run_id": run_id,
    }


# --- walk-forward backtest -------------------------------------------------------------------


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
    folds = walk_forward_folds(windows.target_dates, config.split)
    results = []
    pooled: list[Evaluation] = []
    folds_bar = bar(len(folds), "backtest folds", "fold")
    for number, split in enumerate(folds, start=1):
        last_train_day = pd.Timestamp(windows.end_dates[split.train].max())
        scaler = fit_scaler(frames, config, last_train_day)
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
    }
