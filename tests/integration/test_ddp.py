"""One network trained by two CPU processes (Lightning DDP on gloo) through the normal
train-evaluate-register flow, next to the same config trained by one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from forecaster.config import config_to_yaml
from pipelines.ddp import worker_rank
from tests.integration.conftest import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORECASTER = Path(sys.executable).parent / "forecaster"


def train(config_file: Path, *extra: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [str(FORECASTER), "train", "--config", str(config_file), "--json", *extra],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


def pinball_ratio(payload: dict[str, Any]) -> float:
    (criterion,) = [
        c for c in payload["decision"]["criteria"] if c["name"] == "pinball_beats_naive"
    ]
    return float(criterion["detail"].split("pinball ratio vs naive ")[1].split(",")[0])


def test_ddp_on_two_cpu_processes_trains_and_registers_the_same_kind_of_model(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(config_to_yaml(tiny_config(tmp_path / "data")), encoding="utf-8")
    ddp = ["--set", "training.strategy=ddp", "--set", "training.devices=2",
           "--set", "training.accelerator=cpu"]  # fmt: skip
    two, log = train(config_file, *ddp)
    one, _ = train(config_file)

    # Rank 1 joined the fits, and only rank 0 ran the pipeline: one run, one version each.
    assert "rank 1: joining the training of every network" in log
    assert log.count("retrain: step train") == 1
    assert (two["model_version"], one["model_version"]) == ("1", "2")
    client = MlflowClient(two["tracking_uri"])
    params = client.get_run(two["run_id"]).data.params
    assert (params["training.strategy"], params["training.devices"]) == ("ddp", "2")
    assert client.get_run(one["run_id"]).data.params["training.strategy"] == "auto"
    # Both are scored by the same gate on the same days; DDP averages the gradients of two
    # half-batches, so the fit differs a little, not in kind.
    assert abs(pinball_ratio(two) - pinball_ratio(one)) < 0.05, (two["reason"], one["reason"])


@pytest.mark.parametrize(
    ("env", "rank"),
    [({}, 0), ({"LOCAL_RANK": "1"}, 1), ({"RANK": "0", "LOCAL_RANK": "0"}, 0),
     ({"RANK": "3"}, 3), ({"SLURM_PROCID": "2"}, 2), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, 1)],
)  # fmt: skip
def test_worker_rank_reads_every_launchers_variables(
    env: dict[str, str], rank: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert worker_rank() == rank
