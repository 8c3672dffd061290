"""The one train-evaluate-register-promote flow: explicit steps, typed inputs and outputs.

ingest -> validate -> features -> train -> evaluate -> register -> promote

`forecaster train` is this pipeline forced (it trains even without new data); `forecaster
retrain` and the scheduler run it as it is. One MLflow parent run per pipeline run, one nested
run per step (with its duration). Any failure marks the run FAILED with the step and reason and
leaves the champion alone: the alias moves only in the last step, as the pure gate decides. A
file lock keeps a second run from starting while one runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import PreparedData, prepare
from forecaster.data.schemas import validate_ohlcv
from forecaster.data.sources import load_frames
from forecaster.data.windows import min_rows
from forecaster.errors import DataValidationError, RetrainError, TrackingError, first_line
from forecaster.evaluation.backtest import (
    FoldResult,
    day_scores,
    fit_baselines,
    gate_config,
    leave_tickers_out,
    method_params,
    method_settings,
    model_calibrations,
    score_on_test,
    ticker_routes,
    unseen_route,
)
from forecaster.evaluation.gate import ChampionScores, Decision, Route, decide
from forecaster.evaluation.metrics import MODEL, NAIVE, Evaluation, summary_row
from forecaster.evaluation.scores import pinball_per_day
from forecaster.levels import shared
from forecaster.methods.lstm import LSTMForecaster
from forecaster.methods.windowed import QuantileForecaster
from forecaster.registry.bundle import ModelBundle
from forecaster.registry.loader import (
    CHAMPION,
    alias_version,
    data_end,
    latest_version,
    model_quantiles,
    register,
    set_champion,
)
from forecaster.registry.predictor import Forecaster
from forecaster.registry.tracking import (
    log_config,
    log_datasets,
    log_epochs,
    log_pyfunc,
    resolve_tracking_uri,
    setup_tracking,
)
from pipelines.lock import exclusive_lock
from pipelines.orphans import close_orphaned_runs, owner_tags
from pipelines.run_artifacts import input_example, log_figures, log_per_ticker, version_tags

logger = logging.getLogger(__name__)

STEPS = ("ingest", "validate", "features", "train", "evaluate", "register", "promote")
T = TypeVar("T")


@dataclass(frozen=True)
class Ingested:
    frames: Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class Validated:
    frames: Mapping[str, pd.DataFrame]
    last_date: pd.Timestamp
    champion_version: str | None
    # The newest data any comparable version (champion, or latest on the same tickers) saw.
    seen_version: str | None
    seen_last_date: pd.Timestamp | None

    @property
    def has_new_data(self) -> bool:
        return self.seen_last_date is None or self.last_date > self.seen_last_date


@dataclass(frozen=True)
class Evaluated:
    fold: FoldResult
    champion: ChampionScores | None
    per_ticker: Mapping[str, Any]  # {ticker: the summary's keys on that ticker's test days}
    routes: Mapping[str, Route]  # which forecaster serves each ticker, on what evidence
    unseen: Route | None  # how tickers outside the universe are served


@dataclass(frozen=True)
class RetrainResult:
    status: str  # promoted, kept, skipped, partial (stopped early with --until)
    reason: str
    run_id: str | None
    tracking_uri: str = ""
    model_name: str = ""
    ui_url: str = ""  # where people open the MLflow UI ("": derived from tracking_uri)
    model_version: str | None = None
    decision: Decision | None = None
    evaluation: Evaluation | None = None
    fold: FoldResult | None = None  # in-process forecasters and test windows (not serialised)
    step_seconds: Mapping[str, float] | None = None
    experiment_id: str = ""
    step_runs: Mapping[str, str] | None = None  # step name -> its nested run's id
    # {ticker: {"first", "last"}} of the training rows, and each ticker's own test scores.
    universe: Mapping[str, Mapping[str, str]] | None = None
    per_ticker: Mapping[str, Any] | None = None
    routes: Mapping[str, Route] | None = None
    unseen: Route | None = None

    @property
    def model_uri(self) -> str | None:
        return f"models:/{self.model_name}/{self.model_version}" if self.model_version else None

    def to_dict(self) -> dict[str, Any]:
        trained = self.fold.trained if self.fold is not None else None
        return {
            "status": self.status,
            "reason": self.reason,
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "ui_url": self.ui_url or None,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "promoted": bool(self.decision and self.decision.promoted),
            "decision": asdict(self.decision) if self.decision else None,
            "epochs": trained.epochs if trained else None,
            # Per ensemble member: its seed, epochs run and the (1-based) epoch restored.
            "members": [
                {"seed": m.seed, "epochs": len(m.history), "best_epoch": m.best_epoch + 1}
                for m in trained.members
            ]
            if trained
            else None,
            "step_seconds": dict(self.step_seconds or {}),
            "experiment_id": self.experiment_id or None,
            "step_runs": dict(self.step_runs or {}),
            "universe": {t: dict(r) for t, r in (self.universe or {}).items()},
            "metrics": self.evaluation.summary() if self.evaluation else None,
            "per_ticker": dict(self.per_ticker) if self.per_ticker is not None else None,
            "routes": {t: r.to_dict() for t, r in (self.routes or {}).items()},
            "unseen": self.unseen.to_dict() if self.unseen is not None else None,
        }


# --- the steps: plain functions, typed in and out -------------------------------------------


def ingest(config: ForecasterConfig) -> Ingested:
    """Refresh the cache from the configured source and load every ticker."""
    return Ingested(frames=load_frames(config.data))


def validate(data: Ingested, config: ForecasterConfig) -> Validated:
    """Re-check the contract, the size needed for training, and whether there is new data
    compared with the champion and with the latest version trained on the same tickers."""
    needed = min_rows(config.features, config.windows.lookback) * 3
    for ticker, frame in data.frames.items():
        validate_ohlcv(frame, origin=f"{ticker} (retrain)")
        if len(frame) < needed:
            raise DataValidationError(
                f"{ticker}: {len(frame)} rows; retraining needs at least {needed} for "
                "train, validation and test windows"
            )
        returns = np.diff(np.log(frame["close"].to_numpy(dtype=np.float64)))
        if not np.std(returns) > 1e-12:
            raise DataValidationError(
                f"{ticker}: the close's daily log returns never vary over its {len(frame)} "
                "rows (a constant or steadily trending price); there is no distribution to "
                "learn or forecast, so it is not trained on"
            )
    last_date = max(frame.index[-1] for frame in data.frames.values())
    name = config.tracking.model_name
    champion = alias_version(name, CHAMPION)
    latest = latest_version(name, list(data.frames))
    seen: tuple[str | None, pd.Timestamp | None] = (None, None)
    for version in dict.fromkeys(v for v in (champion, latest) if v is not None):
        end = data_end(name, version)
        if end is not None and (seen[1] is None or end > seen[1]):
            seen = (version, end)
    return Validated(data.frames, last_date, champion, *seen)


def features(data: Validated, config: ForecasterConfig) -> PreparedData:
    return prepare(data.frames, config)


def train(data: PreparedData, config: ForecasterConfig) -> LSTMForecaster:
    """Fit the LSTM; the baselines are fitted in the evaluate step, on the same fold."""
    model = LSTMForecaster(config).fit(data)
    if model.trained is not None:
        members = model.trained.members
        for i, member in enumerate(members):
            log_epochs(member.history, prefix=f"member{i}_" if len(members) > 1 else "")
    return model


def _champion_scores(
    config: ForecasterConfig, version: str, data: PreparedData, ev: Evaluation
) -> ChampionScores:
    """The champion re-scored on the candidate's test days, on the levels both models have."""
    uri = f"models:/{config.tracking.model_name}@{CHAMPION}"
    try:
        levels, q = model_quantiles(uri, data.frames, ev.windows)
    except (MlflowException, TrackingError, OSError, ValueError, KeyError) as exc:
        return ChampionScores(version, error=first_line(exc))
    ours, theirs = shared(ev.levels, levels)
    if not ours:
        return ChampionScores(version, error="it shares no quantile level with the candidate")
    w = ev.windows
    y = np.log(w.target_close / w.last_close)
    common = [ev.levels[i] for i in ours]
    return ChampionScores(
        version,
        champion_pinball=pinball_per_day(q[:, theirs], y, common),
        candidate_pinball=pinball_per_day(ev.forecasts[MODEL][:, ours], y, common),
    )


def evaluate_step(
    data: PreparedData, model: LSTMForecaster, validated: Validated, config: ForecasterConfig
) -> Evaluated:
    """Model, naive, GARCH, linear and the current champion on exactly the same test days."""
    forecasters: dict[str, QuantileForecaster] = {MODEL: model, **fit_baselines(data, config)}
    evaluation = score_on_test(data, forecasters, config)
    fold = FoldResult(forecasters, evaluation)
    champion = None
    if validated.champion_version is not None:
        champion = _champion_scores(config, validated.champion_version, data, evaluation)
        if champion.champion_pinball is not None:
            mlflow.log_metric("champion_pinball", float(np.mean(champion.champion_pinball)))
        else:
            logger.warning("champion v%s could not be scored: %s", champion.version,
                           champion.error)  # fmt: skip
    summary = evaluation.summary(config.evaluation.lookahead_pinball_ratio)
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.flat_metrics().items()})
    mlflow.log_dict(summary, "evaluation.json")
    for flag in summary["red_flags"]:
        logger.warning("red flag (probable look-ahead, check the data): %s", flag)
    log_figures(fold, config)
    per_ticker = log_per_ticker(evaluation, config)
    routes = ticker_routes(evaluation, config)
    held = leave_tickers_out(data, evaluation, config)
    unseen = held.route if held is not None else unseen_route(config)
    if held is not None:
        block = held.evaluation.summary(config.evaluation.lookahead_pinball_ratio)
        mlflow.log_dict({"held_out": list(held.tickers), **block}, "holdout.json")
        mlflow.log_metrics({f"holdout.{k}": float(v) for k, v in summary_row(block).items()
                            if isinstance(v, int | float)})  # fmt: skip
    mlflow.log_dict({"routes": {t: r.to_dict() for t, r in routes.items()},
                     "unseen": unseen.to_dict() if unseen else None}, "routes.json")  # fmt: skip
    for ticker, r in routes.items():
        logger.info("%s served by %s: %s", ticker, r.method, r.reason)
    if unseen is not None:
        logger.info("unseen tickers served by %s: %s", unseen.method, unseen.reason)
    return Evaluated(fold, champion, per_ticker, routes, unseen)


def register_step(data: PreparedData, evaluated: Evaluated, config: ForecasterConfig) -> str:
    bundle = ModelBundle.from_config(
        config,
        data.scaler,
        data.frames,
        data.universe(),
        routes=evaluated.routes,
        unseen=evaluated.unseen,
        method_params=method_params(evaluated.fold),
        calibration=model_calibrations(evaluated.fold),
        method_settings=method_settings(evaluated.fold),
    )
    forecaster = Forecaster(bundle, evaluated.fold.trained.network)
    if bundle.calibration:
        mlflow.log_dict({t: c.to_dict() for t, c in bundle.calibration.items()},
                        "calibration.json")  # fmt: skip
    info = log_pyfunc(forecaster, input_example(data.frames, bundle))
    mlflow.log_dict(data.scaler.to_dict(), "scaler.json")
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    tags = version_tags(data, evaluated.fold.evaluation, run_id)
    tags["routes"] = ",".join(f"{t}={r.method}" for t, r in evaluated.routes.items())[:4000]
    return register(info.model_uri, config.tracking.model_name, tags)


def promote_step(
    evaluated: Evaluated, version: str, config: ForecasterConfig, force: bool
) -> Decision:
    """Apply the pure gate's decision; the registry only moves the alias it says to."""
    ev = evaluated.fold.evaluation
    decision = decide(
        day_scores(ev, MODEL),
        day_scores(ev, NAIVE),
        evaluated.champion,
        gate_config(config),
        force=force,
    )
    for criterion in decision.criteria:
        mlflow.set_tag(f"gate.{criterion.name}", f"{'pass' if criterion.passed else 'fail'}: "
                       f"{criterion.detail}"[:4000])  # fmt: skip
    if decision.promoted:
        set_champion(config.tracking.model_name, version)
    logger.info("v%s %s", version, decision.reason)
    return decision


# --- orchestration ---------------------------------------------------------------------------


class _Runner:
    """Runs each step in a nested MLflow run and records how long it took."""

    def __init__(self, until: str, experiment_id: str) -> None:
        self.until = until
        self.experiment_id = experiment_id
        self.seconds: dict[str, float] = {}
        self.run_ids: dict[str, str] = {}
        self.current = "start"

    def step(self, name: str, fn: Callable[[], T]) -> T:
        self.current = name
        start = time.perf_counter()
        logger.info("retrain: step %s", name)
        # The experiment must be named again: a nested run otherwise lands in the default one.
        with mlflow.start_run(run_name=name, nested=True, experiment_id=self.experiment_id) as run:
            self.run_ids[name] = run.info.run_id
            mlflow.set_tags({"pipeline.step": name, **owner_tags()})
            try:
                return fn()
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[name] = elapsed
                mlflow.log_metric("duration_s", elapsed)

    def stop_after(self, name: str) -> bool:
        return STEPS.index(name) >= STEPS.index(self.until)


def _run_steps(
    config: ForecasterConfig, options: RunOptions, runner: _Runner, run_id: str
) -> RetrainResult:
    base = RetrainResult("partial", f"stopped after step {runner.until}", run_id,
                         resolve_tracking_uri(config), config.tracking.model_name,
                         ui_url=config.tracking.ui_url or "", experiment_id=runner.experiment_id,
                         step_runs=runner.run_ids)  # fmt: skip
    partial = base

    ingested = runner.step("ingest", lambda: ingest(config))
    if runner.stop_after("ingest"):
        return partial
    validated = runner.step("validate", lambda: validate(ingested, config))
    log_datasets(validated.frames)
    mlflow.set_tag("data.last_date", str(validated.last_date.date()))
    if not validated.has_new_data and not options.force:
        seen = validated.seen_last_date
        reason = (
            f"no new trading day since the data of v{validated.seen_version} "
            f"(ends {seen.date() if seen is not None else '?'}); nothing to train or register "
            "(use --force to retrain anyway)"
        )
        return replace(base, status="skipped", reason=reason, step_seconds=runner.seconds)
    if runner.stop_after("validate"):
        return partial
    prepared = runner.step("features", lambda: features(validated, config))
    universe = prepared.universe()
    mlflow.log_dict(universe, "universe.json")
    partial = base = replace(base, universe=universe)
    if runner.stop_after("features"):
        return partial
    model = runner.step("train", lambda: train(prepared, config))
    if runner.stop_after("train"):
        return partial
    evaluated = runner.step("evaluate", lambda: evaluate_step(prepared, model, validated, config))
    if runner.stop_after("evaluate"):
        return partial
    version = runner.step("register", lambda: register_step(prepared, evaluated, config))
    if runner.stop_after("register") or not config.tracking.promote:
        why = "stopped after step register" if config.tracking.promote else "tracking.promote off"
        return replace(base, status="kept", reason=why, model_version=version,
                       fold=evaluated.fold, evaluation=evaluated.fold.evaluation,
                       per_ticker=evaluated.per_ticker, routes=evaluated.routes,
                       unseen=evaluated.unseen,
                       step_seconds=runner.seconds)  # fmt: skip
    decision = runner.step(
        "promote", lambda: promote_step(evaluated, version, config, options.replace_champion)
    )
    return replace(
        base,
        status="promoted" if decision.promoted else "kept",
        reason=decision.reason,
        model_version=version,
        decision=decision,
        evaluation=evaluated.fold.evaluation,
        per_ticker=evaluated.per_ticker,
        routes=evaluated.routes,
        unseen=evaluated.unseen,
        fold=evaluated.fold,
        step_seconds=runner.seconds,
    )


@dataclass(frozen=True)
class RunOptions:
    force: bool = False  # train and register even without new data
    replace_champion: bool = False  # replace a champion that cannot be scored
    until: str = "promote"
    trigger: str = ""  # why this run started when it is not the schedule or a person


def run_retrain(
    config: ForecasterConfig,
    *,
    force: bool = False,
    until: str = "promote",
    replace_champion: bool | None = None,
    name: str = "retrain",
    trigger: str = "",
) -> RetrainResult:
    """Run the pipeline once under the lock; raises RetrainError (champion untouched) on failure.

    `replace_champion` defaults to `force`: `forecaster retrain --force` also replaces a
    champion that cannot be scored; `forecaster train` trains anyway but asks for its own
    `--force` before replacing one.
    """
    if until not in STEPS:
        raise RetrainError(f"unknown step {until!r}; steps: {', '.join(STEPS)}")
    options = RunOptions(force, force if replace_champion is None else replace_champion, until,
                         trigger)  # fmt: skip
    with exclusive_lock(config.data.data_dir / "retrain.lock"):
        experiment_id = setup_tracking(config)
        close_orphaned_runs(resolve_tracking_uri(config), experiment_id)
        try:
            result = _run_parent(config, options, experiment_id, name)
        except MlflowException as exc:
            # Closing a run failed too: the tracking server went away mid-run.
            if isinstance(exc.__context__, RetrainError):
                raise exc.__context__ from exc
            raise RetrainError(
                f"{name} failed: MLflow unreachable ({first_line(exc)}); the "
                "champion was not changed"
            ) from exc
    if result.decision is not None:  # the promote step has logged the gate's reason
        logger.info("%s finished: v%s %s", name, result.model_version, result.status)
    else:
        logger.info("%s %s: %s", name, result.status, result.reason)
    return result


def _run_parent(
    config: ForecasterConfig, options: RunOptions, experiment_id: str, name: str
) -> RetrainResult:
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as parent:
        run_id = parent.info.run_id
        mlflow.set_tags({"pipeline": name, "pipeline.force": str(options.force), **owner_tags()})
        if options.trigger:
            mlflow.set_tag("pipeline.trigger", options.trigger[:4000])
        log_config(config)
        runner = _Runner(options.until, experiment_id)
        try:
            result = _run_steps(config, options, runner, run_id)
        except Exception as exc:
            reason = first_line(exc)
            _mark_failed(runner.current, reason)
            raise RetrainError(
                f"{name} failed at step {runner.current}: {reason}; the champion was not changed"
            ) from exc
        mlflow.set_tags({"pipeline.status": result.status, "pipeline.reason": result.reason[:4000]})
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
