"""`forecaster tune` on the embedded SQLite storage, with real training and a real MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient

from forecaster.config import config_to_yaml, load_config
from pipelines.cli import main
from pipelines.retrain import run_retrain
from tests.integration.conftest import tiny_config

pytestmark = pytest.mark.integration

# A small space the tiny data can take: every draw trains in a second.
SPACE = [
    "tuning.folds=2",
    "tuning.space={windows.lookback: {kind: choice, choices: [8, 10]},"
    " model.hidden_size: {kind: choice, choices: [4, 8]},"
    " training.learning_rate: {kind: float, low: 0.0005, high: 0.005, log: true},"
    " features.names: {kind: choice, choices: [[log_return, range_vol_5],"
    " [log_return, overnight_gap, intraday_range, close_location, log_volume_ratio, volatility,"
    " gk_volatility, range_variance, range_vol_5, range_vol_22]]}}",
]


def tune(config_file: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["-q", "tune", "--config", str(config_file), "--json", *args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err.strip())


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(config_to_yaml(tiny_config(tmp_path / "data", *SPACE)), encoding="utf-8")
    return path


def test_tune_runs_the_study_logs_every_trial_and_writes_a_config_that_retrains(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best_file = tmp_path / "best.yaml"
    code, payload = tune(config_file, capsys, "--trials", "3", "--best-config", str(best_file))
    assert code == 0, payload
    assert payload["trials"] == payload["ran_here"] == 3
    assert payload["complete"] + payload["pruned"] == 3
    assert payload["storage"] == f"sqlite:///{tmp_path / 'data' / 'optuna.db'}"
    # Trial 0 is the untuned config, so the search is always compared with it.
    assert payload["baseline"]["number"] == 0
    assert payload["best"]["val_pinball"] <= payload["baseline"]["val_pinball"]

    study = optuna.load_study(study_name="stock-lstm", storage=payload["storage"])
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert study.trials[0].params["windows.lookback"] == 10  # the tiny config's own value
    # The pruning callback reported every epoch of the first fold.
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)

    config = load_config(config_file)
    client = MlflowClient(str(config.tracking.tracking_uri))
    experiment = client.get_experiment_by_name("forecaster-tuning")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "study stock-lstm"]
    assert parent.info.run_id == payload["mlflow_run_id"]
    assert parent.data.metrics["best_val_pinball"] == pytest.approx(payload["best"]["val_pinball"])
    trials = {r.data.tags["optuna.trial"]: r for r in runs if r.info.run_name != "study stock-lstm"}
    assert sorted(trials) == ["0", "1", "2"]
    for number, run in trials.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["trial_number"] == number
        assert set(study.trials[int(number)].params) <= set(run.data.params)
        curve = client.get_metric_history(run.info.run_id, "fold1_val_loss")
        assert [m.step for m in curve] == list(range(len(curve)))
        if run.data.tags["optuna.state"] == "COMPLETE":
            assert run.data.metrics["val_pinball"] == pytest.approx(study.trials[int(number)].value)

    # The best config is the base config with the best trial's values, ensemble size kept.
    best = load_config(best_file)
    for key, value in payload["best"]["params"].items():
        node: Any = best
        for part in key.split("."):
            node = getattr(node, part)
        assert (", ".join(node) if isinstance(node, tuple) else node) == (
            value.strip("[]") if isinstance(value, str) else value
        )
    assert best.model.ensemble_size == config.model.ensemble_size
    assert best.data == config.data
    assert best.split == config.split

    # It trains and goes through the gate like any config; the tuner itself promoted nothing.
    assert client.search_registered_models() == []
    result = run_retrain(best, force=True)
    assert result.model_version is not None
    assert result.decision is not None

    # --trials is the study's total: a second run with the same N has nothing to do.
    code, again = tune(config_file, capsys, "--trials", "3")
    assert code == 0
    assert again["ran_here"] == 0
    assert again["trials"] == 3


def test_a_failing_trial_is_marked_failed_and_the_study_goes_on(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impossible = "tuning.space={features.volatility_window: {kind: choice, choices: [100000]}}"
    code, err = tune(config_file, capsys, "--trials", "2", "--set", impossible)
    assert code == 1
    assert err.startswith("forecaster: error: study stock-lstm: no trial has completed (2 failed")
    assert "\n" not in err
    # The same study goes on with a space that trains: the next trial completes.
    code, payload = tune(config_file, capsys, "--trials", "3")
    assert code == 0, payload
    assert (payload["failed"], payload["complete"] + payload["pruned"]) == (2, 1)
    assert payload["best"]["number"] == 2

    storage = f"sqlite:///{tmp_path / 'data' / 'optuna.db'}"
    study = optuna.load_study(study_name="stock-lstm", storage=storage)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [0, 1]
    assert all("need at least 100011" in t.user_attrs["fail_reason"] for t in failed)
    client = MlflowClient(str(load_config(config_file).tracking.tracking_uri))
    experiment = client.get_experiment_by_name("forecaster-tuning")
    assert experiment is not None
    statuses = {r.data.tags.get("optuna.trial"): r.info.status
                for r in client.search_runs([experiment.experiment_id])}  # fmt: skip
    assert statuses["0"] == statuses["1"] == "FAILED"
    assert statuses["2"] == "FINISHED"


def test_tune_refuses_a_space_that_would_touch_the_test_period(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "tuning.space={split.test_fraction: {kind: float, low: 0.1, high: 0.3}}"
    code, err = tune(config_file, capsys, "--trials", "1", "--set", bad)
    assert code == 1
    assert "space key 'split.test_fraction': a search may change features, windows" in err
    code, err = tune(config_file, capsys, "--trials", "0")
    assert code == 1
    assert "--trials 0" in err


def test_a_worker_with_another_space_is_refused_before_it_trains(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = tune(config_file, capsys, "--trials", "1")
    assert code == 0, first
    other = "tuning.space={model.hidden_size: {kind: choice, choices: [4, 16]}}"
    code, err = tune(config_file, capsys, "--trials", "2", "--set", other)
    assert code == 1
    assert err.startswith("forecaster: error: study stock-lstm: model.hidden_size was drawn from")
    assert "name another --study" in err
