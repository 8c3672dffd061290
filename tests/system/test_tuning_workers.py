"""Two `forecaster tune` processes on one PostgreSQL-backed study, tracked by the MLflow server
on the same cluster: together they run exactly N trials, numbered 0..N-1, none lost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from forecaster.config import config_to_yaml
from tests.integration.conftest import tiny_config
from tests.integration.test_tuning import SPACE
from tests.system.conftest import BIN, MlflowServer, Postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRIALS = 6


@pytest.fixture(scope="module")
def study_storage(postgres: Postgres) -> str:
    """Optuna keeps its own `alembic_version` table: a database of its own, not MLflow's."""
    engine = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CREATE DATABASE optuna"))
    engine.dispose()
    return postgres.url.rsplit("/", 1)[0] + "/optuna"


def test_two_workers_share_one_study_and_run_exactly_n_trials(
    study_storage: str, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path / "data", *SPACE)
    tracking = config.tracking.model_copy(update={"tracking_uri": mlflow_server.url})
    config = config.model_copy(update={"tracking": tracking})
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(config_to_yaml(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    env["OMP_NUM_THREADS"] = "1"  # one torch thread per worker on 2 cores
    command = [str(BIN / "forecaster"), "-q", "tune", "--config", str(config_file), "--json",
               "--trials", str(TRIALS), "--study", "shared", "--storage", study_storage]  # fmt: skip
    workers = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    payloads = [json.loads(out) for out, _ in outputs]
    # Each worker took part, and together they ran the study's N trials.
    assert sum(p["ran_here"] for p in payloads) == TRIALS
    assert all(p["ran_here"] >= 1 for p in payloads), [p["ran_here"] for p in payloads]

    study = optuna.load_study(study_name="shared", storage=study_storage)
    assert sorted(t.number for t in study.trials) == list(range(TRIALS))
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states

    # One study run in MLflow, a child run per trial whichever worker ran it.
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("forecaster-tuning")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`optuna.study` = 'shared'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == list(range(TRIALS))
    assert len({r.data.tags["pipeline.pid"] for r in children}) == 2
    assert {p["mlflow_run_id"] for p in payloads} == {parents[0].info.run_id}
