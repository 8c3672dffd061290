"""`forecaster tune`: a hyper-parameter search on Optuna's shared-storage engine.

Any number of `forecaster tune` processes, on any machines that reach the storage, work on one
study: each asks the storage for the next trial and reports back. `--trials N` is the study's
total, counted under a lock (a PostgreSQL advisory lock, or a file lock for SQLite), so the
workers together run exactly N. Every trial is an MLflow run under the study's run. Nothing
is registered or promoted here: `--best-config` writes a config for `forecaster retrain`,
whose gate decides.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from forecaster.config import ForecasterConfig, config_to_yaml, with_values
from forecaster.data.sources import load_frames
from forecaster.errors import TuningError, first_line
from forecaster.filelock import blocking_lock
from forecaster.local_state import optuna_store, shown_url
from forecaster.registry.tracking import resolve_tracking_uri, setup_tracking
from pipelines.orphans import close_orphaned_runs, owner_tags
from pipelines.search import (
    FoldScore,
    current_params,
    label,
    score_config,
    space_conflict,
    suggest,
    trial_config,
)
from pipelines.search import test_start as first_test_day

logger = logging.getLogger(__name__)

RUN_ATTR, TEST_START_ATTR = "mlflow_run_id", "test_start"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STARTED = (*FINISHED, TrialState.RUNNING)


def storage_url(config: ForecasterConfig, override: str | None = None) -> str:
    url = override or config.tuning.storage
    return url if url is not None else optuna_store(config.data.data_dir)


@contextmanager
def storage_lock(url: str, name: str) -> Iterator[None]:
    """Serialises workers on one storage: while one creates the tables or the study, and while
    one counts the study's trials and asks for one (so there is no (N+1)th trial)."""
    if url.startswith("sqlite:///"):
        with blocking_lock(Path(f"{url.removeprefix('sqlite:///')}.{name}.lock")):
            yield
        return
    if url.startswith("postgresql"):
        key = zlib.crc32(f"forecaster-tune:{name}".encode())
        try:
            engine = create_engine(url, poolclass=NullPool)
            conn = engine.connect()
        except (ArgumentError, SQLAlchemyError, ImportError) as exc:
            raise TuningError(f"tuning storage {shown_url(url)}: {first_line(exc)}") from exc
        try:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        finally:
            conn.close()
            engine.dispose()
        return
    yield  # another database: workers may overshoot --trials by one each (said at start)


def open_study(config: ForecasterConfig, url: str, name: str) -> tuple[optuna.Study, bool]:
    """(study, whether this process created it)."""
    tuning = config.tuning
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=tuning.pruner.startup_trials, n_warmup_steps=tuning.pruner.warmup_epochs
    )
    seed = tuning.seed
    # Optuna creates its tables on first use; two workers doing it at once collide.
    with storage_lock(url, "init"):
        try:
            storage = optuna.storages.RDBStorage(url)
        except (ArgumentError, SQLAlchemyError, ImportError, ValueError) as exc:
            raise TuningError(f"tuning storage {shown_url(url)}: {first_line(exc)}") from exc
        try:
            sampler = optuna.samplers.TPESampler(seed=seed)
            return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                       pruner=pruner, direction="minimize"), True  # fmt: skip
        except optuna.exceptions.DuplicatedStudyError:
            # A second worker with the same seed would draw the first worker's trials again.
            sampler = optuna.samplers.TPESampler(seed=None if seed is None else seed ^ os.getpid())
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                     pruner=pruner), False  # fmt: skip


def _study_run(
    study: optuna.Study, created: bool, client: MlflowClient, experiment_id: str,
    config: ForecasterConfig, url: str,
) -> str:  # fmt: skip
    """The study's MLflow run: made by the creating worker, found by the others."""
    if not created:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = study.user_attrs.get(RUN_ATTR)
            if found:
                return str(found)
            time.sleep(0.5)
            study = optuna.load_study(study_name=study.study_name, storage=url)
        logger.warning("study %s has no MLflow run yet; starting one", study.study_name)
    tags = {"optuna.study": study.study_name, "optuna.storage": shown_url(url), **owner_tags()}
    run = client.create_run(experiment_id, run_name=f"study {study.study_name}", tags=tags)
    run_id = str(run.info.run_id)
    client.log_text(run_id, config_to_yaml(config), "config.yaml")
    study.set_user_attr(RUN_ATTR, run_id)
    return run_id


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


class _Worker:
    """Runs trials of one study in this process, each as an MLflow run under the study's."""

    def __init__(
        self, study: optuna.Study, base: ForecasterConfig, frames: Mapping[str, pd.DataFrame],
        before: pd.Timestamp, client: MlflowClient, experiment_id: str, parent: str,
    ) -> None:  # fmt: skip
        self.study, self.base, self.frames, self.before = study, base, frames, before
        self.client, self.experiment_id, self.parent = client, experiment_id, parent

    def run(self, trial: optuna.Trial) -> TrialState:
        number = trial.number
        run_id = self.client.create_run(
            self.experiment_id, run_name=f"trial {number}",
            tags={MLFLOW_PARENT_RUN_ID: self.parent, "optuna.study": self.study.study_name,
                  "optuna.trial": str(number), **owner_tags()},
        ).info.run_id  # fmt: skip
        try:
            values = suggest(trial, self.base.tuning.space)
            params = [Param(k, _text(v)[:6000]) for k, v in values.items()]
            self.client.log_batch(run_id, params=[*params, Param("trial_number", str(number))])
            config = trial_config(self.base, values, number)
            pruning = PyTorchLightningPruningCallback(trial, monitor="val_loss")
            scores = score_config(config, self.frames, self.before, [pruning],
                                  lambda s: self._log_fold(run_id, s))  # fmt: skip
            value = float(np.mean([s.pinball for s in scores]))
            self.client.log_metric(run_id, "val_pinball", value)
            self.study.tell(trial, value)
            self._end(run_id, TrialState.COMPLETE, "FINISHED")
            logger.info("trial %d: val pinball %.6f", number, value)
            return TrialState.COMPLETE
        except optuna.TrialPruned:
            self.study.tell(trial, state=TrialState.PRUNED)
            self._end(run_id, TrialState.PRUNED, "FINISHED")
            logger.info("trial %d pruned", number)
            return TrialState.PRUNED
        except Exception as exc:  # a failed trial must not end the study
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            trial.set_user_attr("fail_reason", reason[:1000])
            self.study.tell(trial, state=TrialState.FAIL)
            self.client.set_tag(run_id, "optuna.fail_reason", reason[:4000])
            self._end(run_id, TrialState.FAIL, "FAILED")
            logger.warning("trial %d failed: %s", number, reason)
            return TrialState.FAIL
        except BaseException:  # Ctrl+C: the trial is not left RUNNING in the study
            self.study.tell(trial, state=TrialState.FAIL)
            self._end(run_id, TrialState.FAIL, "KILLED")
            raise

    def _log_fold(self, run_id: str, score: FoldScore) -> None:
        now = int(time.time() * 1000)
        prefix = f"fold{score.fold}_"
        metrics = [Metric(f"{prefix}val_pinball", score.pinball, now, 0)]
        for r in score.epochs:
            metrics += [Metric(f"{prefix}train_loss", r.train_loss, now, r.epoch),
                        Metric(f"{prefix}val_loss", r.val_loss, now, r.epoch)]  # fmt: skip
        self.client.log_batch(run_id, metrics=metrics)

    def _end(self, run_id: str, state: TrialState, status: str) -> None:
        self.client.set_tag(run_id, "optuna.state", state.name)
        self.client.set_terminated(run_id, status)


def run_tune(
    config: ForecasterConfig,
    trials: int,
    study_name: str | None = None,
    storage: str | None = None,
    timeout: float | None = None,
    best_config: Path | None = None,
) -> dict[str, Any]:
    """Work on the study until it holds `trials` trials or `timeout` seconds have passed (no
    trial starts after that); returns the study's summary."""
    if trials < 1:
        raise TuningError(f"--trials {trials}: give the number of trials the study should hold")
    name = study_name or config.tuning.study
    url = storage_url(config, storage)
    if not url.startswith(("sqlite:///", "postgresql")):
        logger.warning("%s: trials are counted without a lock on this database; workers may "
                       "overshoot --trials by one each", shown_url(url))  # fmt: skip
    frames = load_frames(config.data)
    before = first_test_day(config, frames)
    study, created = open_study(config, url, name)
    if created:
        study.set_user_attr(TEST_START_ATTR, str(before.date()))
        baseline = current_params(config, config.tuning.space)
        if baseline is not None:  # the untuned config is trial 0: what the search must beat
            study.enqueue_trial(baseline, user_attrs={"baseline": True})
    elif study.user_attrs.get(TEST_START_ATTR, str(before.date())) != str(before.date()):
        raise TuningError(
            f"study {name} scores days before {study.user_attrs[TEST_START_ATTR]}, but this "
            f"worker's data puts the test period at {before.date()}: run every worker of a "
            "study with the same data config, or name another --study"
        )
    conflict = None if created else space_conflict(study, config.tuning.space)
    if conflict is not None:
        raise TuningError(
            f"study {name}: {conflict}; this config's tuning.space differs: keep the study's "
            "space, or name another --study"
        )
    experiment_id = setup_tracking(config, f"{config.tracking.experiment}-tuning")
    tracking_uri = resolve_tracking_uri(config)
    close_orphaned_runs(tracking_uri, experiment_id)
    client = MlflowClient(tracking_uri)
    parent = _study_run(study, created, client, experiment_id, config, url)
    worker = _Worker(study, config, frames, before, client, experiment_id, parent)
    started, ran = time.monotonic(), 0
    while timeout is None or time.monotonic() - started < timeout:
        with storage_lock(url, name):
            # A WAITING trial (the enqueued untuned config) is not started yet: not counted.
            if len(study.get_trials(deepcopy=False, states=STARTED)) >= trials:
                break
            trial = study.ask()
        worker.run(trial)
        ran += 1
    payload = summary(study, url, parent, ran)
    _log_best(client, parent, payload)
    client.set_terminated(parent, "FINISHED")
    if payload["best"] is None:
        raise TuningError(
            f"study {name}: no trial has completed ({payload['failed']} failed, "
            f"{payload['pruned']} pruned); see each trial's reason in the log above"
        )
    if best_config is not None:
        write_best_config(config, payload["best"]["params"], best_config, payload)
        payload["best_config"] = str(best_config)
    return payload


def summary(study: optuna.Study, url: str, parent: str, ran: int) -> dict[str, Any]:
    all_trials = study.get_trials(deepcopy=False, states=STARTED)
    count = {s: sum(t.state == s for t in all_trials) for s in (*FINISHED, TrialState.RUNNING)}
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    baseline = next((t for t in complete if t.user_attrs.get("baseline")), None)
    return {
        "study": study.study_name,
        "storage": shown_url(url),
        "trials": len(all_trials),
        "ran_here": ran,
        "complete": count[TrialState.COMPLETE],
        "pruned": count[TrialState.PRUNED],
        "failed": count[TrialState.FAIL],
        "running": count[TrialState.RUNNING],
        "best": None if best is None else {
            "number": best.number, "val_pinball": best.value, "params": best.params},
        "baseline": None if baseline is None else {
            "number": baseline.number, "val_pinball": baseline.value},
        "mlflow_run_id": parent,
        "best_config": None,
    }  # fmt: skip


def _log_best(client: MlflowClient, parent: str, payload: dict[str, Any]) -> None:
    best = payload["best"]
    if best is not None:
        client.log_metric(parent, "best_val_pinball", float(best["val_pinball"]))
        client.set_tag(parent, "optuna.best_trial", str(best["number"]))
    client.log_metric(parent, "trials", payload["trials"])


def write_best_config(
    base: ForecasterConfig, params: Mapping[str, Any], path: Path, payload: dict[str, Any]
) -> None:
    """The base config with the best trial's values, atomically: a file `forecaster retrain
    --config` takes as it is, keeping the base's ensemble size."""
    space = base.tuning.space
    values = {}
    for key, stored in params.items():
        choices = getattr(space.get(key), "choices", None)
        if choices is not None:
            stored = next(c for c in choices if label(c) == stored)
        values[key] = stored
    config = with_values(base, values, f"best trial {payload['best']['number']}")
    header = (
        f"# Best trial {payload['best']['number']} of Optuna study {payload['study']} "
        f"({payload['storage']}): mean validation pinball {payload['best']['val_pinball']:.6g} "
        f"over walk-forward folds before the test period.\n"
        "# Train it through the gate with: forecaster retrain --config THIS_FILE\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(header + config_to_yaml(config))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def tune_text(payload: dict[str, Any]) -> str:
    lines = [
        f"study {payload['study']} ({payload['storage']}): {payload['trials']} trials "
        f"({payload['complete']} complete, {payload['pruned']} pruned, {payload['failed']} "
        f"failed, {payload['running']} running elsewhere); {payload['ran_here']} ran here"
    ]
    best = payload["best"]
    lines.append(f"best trial {best['number']}: validation pinball {best['val_pinball']:.6g}")
    for key, value in best["params"].items():
        lines.append(f"  {key}: {value}")
    base = payload["baseline"]
    if base is not None:
        ratio = best["val_pinball"] / base["val_pinball"] if base["val_pinball"] else float("nan")
        lines.append(f"untuned config (trial {base['number']}): {base['val_pinball']:.6g} "
                     f"(best / untuned {ratio:.4f})")  # fmt: skip
    if payload["best_config"]:
        lines.append(f"wrote {payload['best_config']}; train it through the gate with: "
                     f"forecaster retrain --config {payload['best_config']}")  # fmt: skip
    return "\n".join(lines)
