"""The retraining pipeline: explicit steps with typed inputs and outputs.

ingest -> validate -> features -> train -> evaluate -> register -> promote

One MLflow parent run per pipeline run, one nested run per step (with its duration). Any
failure marks the run FAILED with the step and reason and leaves the champion alone: the alias
moves only in the last step. A file lock keeps a second retrain from starting while one runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecaster.config import ForecasterConfig
from forecaster.dataset import PreparedData, prepare
from forecaster.errors import DataValidationError, ForecasterError
from forecaster.evaluation import Evaluation
from forecaster.inference import Forecaster
from forecaster.registry import (
    CHAMPION,
    PromotionDecision,
    alias_version,
    champion_mae_on,
    promote_if_better,
    register,
)
from forecaster.schemas import validate_ohlcv
from forecaster.sources import load_frames
from forecaster.tracking import (
    TrackingError,
    log_config,
    log_datasets,
    log_epochs,
    log_pyfunc,
    setup_tracking,
)
from forecaster.train import TrainedModel, train_network
from forecaster.windows import min_rows
from pipelines.lock import exclusive_lock
from pipelines.training import (
    FittedFold,
    evaluate_trained,
    evaluation_summary,
    input_example,
    log_figures,
    make_bundle,
    version_tags,
)

logger = logging.getLogger(__name__)

STEPS = ("ingest", "validate", "features", "train", "evaluate", "register", "promote")
T = TypeVar("T")


class RetrainError(ForecasterError):
    """A pipeline step failed; the champion was left as it was."""


@dataclass(frozen=True)
class Ingested:
    frames: Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Validated:
    frames: Mapping[str, pd.DataFrame]
    last_date: pd.Timestamp
    champion_version: str | None
    champion_last_date: pd.Timestamp | None

    @property
    def has_new_data(self) -> bool:
        return self.champion_last_date is None or self.last_date > self.champion_last_date


@dataclass(frozen=True)
class Evaluated:
    fold: FittedFold
    champion_mae: float | None


@dataclass(frozen=True)
class RetrainResult:
    status: str  # promoted, kept, skipped, partial (stopped early with --until)
    reason: str
    run_id: str | None
    model_version: str | None = None
    decision: PromotionDecision | None = None
    evaluation: Evaluation | None = None
    step_seconds: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "run_id": self.run_id,
            "model_version": self.model_version,
            "promoted": bool(self.decision and self.decision.promoted),
            "step_seconds": dict(self.step_seconds or {}),
            "metrics": evaluation_summary(self.evaluation) if self.evaluation else None,
        }


# --- the steps: plain functions, typed in and out -------------------------------------------


def ingest(config: ForecasterConfig) -> Ingested:
    """Refresh the cache from the configured source and load every ticker."""
    return Ingested(frames=load_frames(config.data))


def validate(data: Ingested, config: ForecasterConfig) -> Validated:
    """Re-check the contract, the size needed for training, and whether there is new data."""
    needed = min_rows(config.features, config.windows.lookback) * 3
    for ticker, frame in data.frames.items():
        validate_ohlcv(frame, origin=f"{ticker} (retrain)")
        if len(frame) < needed:
            raise DataValidationError(
                f"{ticker}: {len(frame)} rows; retraining needs at least {needed} for "
                "train, validation and test windows"
            )
    last_date = max(frame.index[-1] for frame in data.frames.values())
    name = config.tracking.model_name
    champion = alias_version(name, CHAMPION)
    champion_last = None
    if champion is not None:
        tags = MlflowClient().get_model_version(name, champion).tags
        data_range = tags.get("data_range", "")
        if ".." in data_range:
            champion_last = pd.Timestamp(data_range.split("..")[1])
    return Validated(data.frames, last_date, champion, champion_last)


def features(data: Validated, config: ForecasterConfig) -> PreparedData:
    return prepare(data.frames, config)


def train(data: PreparedData, config: ForecasterConfig) -> TrainedModel:
    trained = train_network(data.part("train"), data.part("val"), config)
    log_epochs(trained.history)
    return trained


def evaluate_step(
    data: PreparedData, trained: TrainedModel, validated: Validated, config: ForecasterConfig
) -> Evaluated:
    """Model, naive, linear and the current champion on exactly the same test days."""
    fold = evaluate_trained(data, trained, config)
    evaluation, test = fold.evaluation, fold.test
    champion_mae = None
    if validated.champion_version is not None:
        uri = f"models:/{config.tracking.model_name}@{CHAMPION}"
        try:
            champion_mae = champion_mae_on(uri, data.frames, test)
            mlflow.log_metric("champion_mae", champion_mae)
        except (MlflowException, TrackingError, OSError, ValueError) as exc:
            # A champion that cannot be scored must not block every future retrain; the
            # promote step decides what to do about it (and says so).
            logger.warning("champion v%s could not be evaluated: %s",
                           validated.champion_version, exc)  # fmt: skip
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.flat_metrics().items()})
    mlflow.log_dict(evaluation_summary(evaluation), "evaluation.json")
    log_figures(fold, config.model.interval_level)
    return Evaluated(fold, champion_mae)


def register_step(data: PreparedData, evaluated: Evaluated, config: ForecasterConfig) -> str:
    bundle = make_bundle(config, data.scaler, len(data.windows.feature_names))
    forecaster = Forecaster(bundle, evaluated.fold.trained.network)
    info = log_pyfunc(forecaster, input_example(data.frames, bundle))
    mlflow.log_dict(data.scaler.to_dict(), "scaler.json")
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    tags = version_tags(data, evaluated.fold.evaluation, run_id)
    return register(info.model_uri, config.tracking.model_name, tags)


def promote_step(
    data: PreparedData, evaluated: Evaluated, version: str, config: ForecasterConfig
) -> PromotionDecision:
    ev = evaluated.fold.evaluation
    return promote_if_better(
        config.tracking.model_name, version, ev.model.mae, ev.naive.mae, data.frames,
        evaluated.fold.test, champion_mae=evaluated.champion_mae,
    )  # fmt: skip


# --- orchestration ---------------------------------------------------------------------------


class _Runner:
    """Runs each step in a nested MLflow run and records how long it took."""

    def __init__(self, until: str, experiment_id: str) -> None:
        self.until = until
        self.experiment_id = experiment_id
        self.seconds: dict[str, float] = {}
        self.current = "start"

    def step(self, name: str, fn: Callable[[], T]) -> T:
        self.current = name
        start = time.perf_counter()
        logger.info("retrain: step %s", name)
        # The experiment must be named again: a nested run otherwise lands in the default one.
        with mlflow.start_run(run_name=name, nested=True, experiment_id=self.experiment_id):
            mlflow.set_tag("pipeline.step", name)
            try:
                return fn()
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[name] = elapsed
                mlflow.log_metric("duration_s", elapsed)

    def stop_after(self, name: str) -> bool:
        return STEPS.index(name) >= STEPS.index(self.until)


def _run_steps(
    config: ForecasterConfig, force: bool, runner: _Runner, run_id: str
) -> RetrainResult:
    until = runner.until
    partial = RetrainResult("partial", f"stopped after step {until}", run_id)

    ingested = runner.step("ingest", lambda: ingest(config))
    if runner.stop_after("ingest"):
        return partial
    validated = runner.step("validate", lambda: validate(ingested, config))
    log_datasets(validated.frames)
    mlflow.set_tag("data.last_date", str(validated.last_date.date()))
    if not validated.has_new_data and not force:
        champion_last = validated.champion_last_date
        reason = (
            f"no new trading day since champion v{validated.champion_version}'s data ended "
            f"({champion_last.date() if champion_last is not None else '?'}); "
            "nothing to train (use --force to retrain anyway)"
        )
        return RetrainResult("skipped", reason, run_id, step_seconds=runner.seconds)
    if runner.stop_after("validate"):
        return partial
    prepared = runner.step("features", lambda: features(validated, config))
    if runner.stop_after("features"):
        return partial
    trained = runner.step("train", lambda: train(prepared, config))
    if runner.stop_after("train"):
        return partial
    evaluated = runner.step("evaluate", lambda: evaluate_step(prepared, trained, validated, config))
    if runner.stop_after("evaluate"):
        return partial
    version = runner.step("register", lambda: register_step(prepared, evaluated, config))
    if runner.stop_after("register"):
        return partial
    decision = runner.step("promote", lambda: promote_step(prepared, evaluated, version, config))
    return RetrainResult(
        status="promoted" if decision.promoted else "kept",
        reason=decision.reason,
        run_id=run_id,
        model_version=version,
        decision=decision,
        evaluation=evaluated.fold.evaluation,
        step_seconds=runner.seconds,
    )


def run_retrain(
    config: ForecasterConfig, *, force: bool = False, until: str = "promote"
) -> RetrainResult:
    """Run the pipeline once under the lock; raises RetrainError (champion untouched) on failure."""
    if until not in STEPS:
        raise RetrainError(f"unknown step {until!r}; steps: {', '.join(STEPS)}")
    with exclusive_lock(config.data.data_dir / "retrain.lock"):
        experiment_id = setup_tracking(config)
        try:
            result = _run_parent(config, force, until, experiment_id)
        except MlflowException as exc:
            # Closing a run failed too: the tracking server went away mid-run.
            if isinstance(exc.__context__, RetrainError):
                raise exc.__context__ from exc
            text = str(exc.message).strip().splitlines()
            raise RetrainError(
                f"retrain failed: MLflow unreachable ({text[0] if text else exc}); the "
                "champion was not changed"
            ) from exc
    logger.info("retrain %s: %s", result.status, result.reason)
    return result


def _run_parent(
    config: ForecasterConfig, force: bool, until: str, experiment_id: str
) -> RetrainResult:
    with mlflow.start_run(experiment_id=experiment_id, run_name="retrain") as parent:
        run_id = parent.info.run_id
        mlflow.set_tags({"pipeline": "retrain", "pipeline.force": str(force)})
        log_config(config)
        runner = _Runner(until, experiment_id)
        try:
            result = _run_steps(config, force, runner, run_id)
        except Exception as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            _mark_failed(runner.current, reason)
            raise RetrainError(
                f"retrain failed at step {runner.current}: {reason}; the champion was not changed"
            ) from exc
        mlflow.set_tags({"pipeline.status": result.status, "pipeline.reason": result.reason})
        if result.step_seconds:
            mlflow.log_metrics({f"step_{k}_s": v for k, v in result.step_seconds.items()})
    return result


def _mark_failed(step: str, reason: str) -> None:
    """Best effort: the tracking server may be the thing that failed."""
    try:
        mlflow.set_tags({"pipeline.status": "failed", "pipeline.failed_step": step,
                         "pipeline.reason": reason[:4000]})  # fmt: skip
    except (MlflowException, OSError, TrackingError) as exc:
        logger.warning("could not record the failure on the run: %s", exc)


def retrain_text(result: RetrainResult) -> str:
    lines = [f"retrain {result.status}: {result.reason}"]
    if result.run_id:
        lines.append(f"run {result.run_id}")
    if result.step_seconds:
        lines.append("steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.step_seconds.items()))
    if result.evaluation is not None:
        ev = result.evaluation
        lines.append(
            f"test MAE {ev.model.mae:.4f} vs naive {ev.naive.mae:.4f} (ratio "
            f"{ev.mae_ratio_vs_naive:.4f}), linear {ev.linear.mae:.4f}"
        )
    return "\n".join(lines)
