"""The train and backtest jobs: data -> windows -> Lightning LSTM -> evaluation -> MLflow."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.dataset import PreparedData, build_windows, fit_scaler, prepare
from forecaster.evaluation import Evaluation, evaluate, fit_linear_baseline, linear_predict
from forecaster.inference import Forecaster, ModelBundle
from forecaster.plots import forecast_figure, residual_figure, training_curves_figure
from forecaster.registry import PromotionDecision, model_history_input, promote_if_better, register
from forecaster.scaling import FeatureScaler
from forecaster.sources import load_frames
from forecaster.splits import walk_forward_folds
from forecaster.tracking import (
    log_config,
    log_datasets,
    log_epochs,
    log_pyfunc,
    resolve_tracking_uri,
    setup_tracking,
)
from forecaster.train import TrainedModel, train_network
from forecaster.windows import Windows, concat_windows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FittedFold:
    trained: TrainedModel
    test: Windows
    quantiles: np.ndarray
    linear: np.ndarray
    evaluation: Evaluation


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    model_name: str
    model_version: str
    model_uri: str
    decision: PromotionDecision | None
    evaluation: Evaluation
    epochs: int
    best_epoch: int
    fold: FittedFold  # in-process network, test windows and predictions (not serialised)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": self.tracking_uri,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "promoted": bool(self.decision and self.decision.promoted),
            "decision": asdict(self.decision) if self.decision else None,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch + 1,
            "metrics": evaluation_summary(self.evaluation),
        }


def evaluation_summary(ev: Evaluation) -> dict[str, Any]:
    """The backtest/train JSON contract: model/naive/linear blocks plus headline ratios."""
    return {
        "model": asdict(ev.model),
        "naive": asdict(ev.naive),
        "linear": asdict(ev.linear),
        "n_days": ev.n_days,
        "mae_ratio_vs_naive": ev.mae_ratio_vs_naive,
        "linear_mae_ratio_vs_naive": ev.linear_mae_ratio_vs_naive,
        "up_day_share": ev.up_day_share,
        "up_day_share_ci95": list(ev.up_day_share_ci),
        "directional_accuracy_ci95": list(ev.directional_accuracy_ci),
        "diebold_mariano": {"statistic": ev.dm_statistic, "pvalue": ev.dm_pvalue},
    }


def make_bundle(config: ForecasterConfig, scaler: FeatureScaler, n_features: int) -> ModelBundle:
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
    )


def fit_and_evaluate(data: PreparedData, config: ForecasterConfig) -> FittedFold:
    trained = train_network(data.part("train"), data.part("val"), config)
    return evaluate_trained(data, trained, config)


def evaluate_trained(
    data: PreparedData, trained: TrainedModel, config: ForecasterConfig
) -> FittedFold:
    """The trained model and both baselines on the test windows."""
    train, val, test = data.part("train"), data.part("val"), data.part("test")
    quantiles = trained.predict(test.x)
    ridge = fit_linear_baseline(train, val, config.training.ridge_alphas)
    linear = linear_predict(ridge, test)
    evaluation = evaluate(test, quantiles, linear, config.model.interval_level)
    return FittedFold(trained, test, quantiles, linear, evaluation)


def input_example(frames: Mapping[str, pd.DataFrame], bundle: ModelBundle) -> pd.DataFrame:
    ticker, frame = next(iter(frames.items()))
    return model_history_input(frame.iloc[-bundle.min_history :], ticker)


def log_figures(fold: FittedFold, level: float) -> None:
    for ticker in list(dict.fromkeys(fold.test.tickers))[:4]:
        safe = "".join(c if c.isalnum() else "_" for c in ticker)
        mlflow.log_figure(
            forecast_figure(fold.test, fold.quantiles, ticker, level), f"plots/forecast_{safe}.png"
        )
    mlflow.log_figure(residual_figure(fold.test, fold.quantiles), "plots/residuals.png")
    mlflow.log_figure(training_curves_figure(fold.trained.history), "plots/training_curves.png")


def version_tags(data: PreparedData, ev: Evaluation, run_id: str) -> dict[str, str]:
    """Registry tags: what data the version saw and how it scored."""
    first = min(f.index[0] for f in data.frames.values()).date()
    last = max(f.index[-1] for f in data.frames.values()).date()
    return {
        "tickers": ",".join(data.frames),
        "data_range": f"{first}..{last}",
        "test_range": f"{data.split.test_start.date()}..{data.split.test_end.date()}",
        "test_mae": f"{ev.model.mae:.6f}",
        "naive_mae": f"{ev.naive.mae:.6f}",
        "mae_ratio_vs_naive": f"{ev.mae_ratio_vs_naive:.6f}",
        "run_id": run_id,
    }


def run_train(config: ForecasterConfig) -> TrainResult:
    """Train, evaluate against baselines, log everything, register, and try promotion."""
    frames = load_frames(config.data)
    data = prepare(frames, config)
    experiment_id = setup_tracking(config)
    name = config.tracking.model_name
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tag("mlflow.runName", f"train {'+'.join(frames)}")
        log_config(config)
        log_datasets(frames)
        mlflow.log_params({f"split.{k}_windows": v for k, v in data.split.sizes().items()})
        fold = fit_and_evaluate(data, config)
        log_epochs(fold.trained.history)
        mlflow.log_metrics({f"test_{k}": v for k, v in fold.evaluation.flat_metrics().items()})
        mlflow.log_metrics({"best_epoch": fold.trained.best_epoch + 1})
        mlflow.log_dict(evaluation_summary(fold.evaluation), "evaluation.json")
        mlflow.log_dict(data.scaler.to_dict(), "scaler.json")
        log_figures(fold, config.model.interval_level)

        bundle = make_bundle(config, data.scaler, len(data.windows.feature_names))
        forecaster = Forecaster(bundle, fold.trained.network)
        info = log_pyfunc(forecaster, input_example(frames, bundle))
        ev = fold.evaluation
        version = register(info.model_uri, name, version_tags(data, ev, run.info.run_id))
        decision = None
        if config.tracking.promote:
            decision = promote_if_better(
                name, version, ev.model.mae, ev.naive.mae, frames, fold.test
            )
            mlflow.set_tags(
                {"promotion.promoted": str(decision.promoted), "promotion.reason": decision.reason}
            )
    return TrainResult(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        tracking_uri=resolve_tracking_uri(config),
        model_name=name,
        model_version=version,
        model_uri=f"models:/{name}/{version}",
        decision=decision,
        evaluation=fold.evaluation,
        epochs=len(fold.trained.history),
        best_epoch=fold.trained.best_epoch,
        fold=fold,
    )


def run_backtest(config: ForecasterConfig) -> dict[str, Any]:
    """Walk-forward backtest, expanding window, refit per fold; nothing is registered."""
    frames = load_frames(config.data)
    windows = build_windows(frames, config)
    folds = walk_forward_folds(windows.target_dates, config.split)
    results = []
    pooled: list[tuple[Windows, np.ndarray, np.ndarray]] = []
    for number, split in enumerate(folds, start=1):
        last_train_day = pd.Timestamp(windows.end_dates[split.train].max())
        scaler = fit_scaler(frames, config, last_train_day)
        data = PreparedData(windows=windows, split=split, scaler=scaler, frames=frames)
        logger.info(
            "fold %d/%d: train %d, val %d, test %d windows (%s..%s)",
            number, len(folds), len(split.train), len(split.val), len(split.test),
            split.test_start.date(), split.test_end.date(),
        )  # fmt: skip
        fold = fit_and_evaluate(data, config)
        pooled.append((fold.test, fold.quantiles, fold.linear))
        results.append(
            {
                "fold": number,
                "test_start": str(split.test_start.date()),
                "test_end": str(split.test_end.date()),
                "train_windows": len(split.train),
                "epochs": len(fold.trained.history),
                **evaluation_summary(fold.evaluation),
            }
        )
    all_test = concat_windows([p[0] for p in pooled])
    aggregate = evaluate(
        all_test,
        np.concatenate([p[1] for p in pooled]),
        np.concatenate([p[2] for p in pooled]),
        config.model.interval_level,
    )
    return {"tickers": list(frames), "folds": results, "aggregate": evaluation_summary(aggregate)}
