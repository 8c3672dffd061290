"""End to end on the bundled data with a tiny config against a temporary SQLite MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from forecaster.config import ForecasterConfig
from forecaster.dataset import prepare
from forecaster.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    champion_mae_on,
    promote_if_better,
)
from forecaster.sources import load_frames
from forecaster.train import train_network
from pipelines.training import TrainResult, run_train
from tests.integration.conftest import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ForecasterConfig, TrainResult]:
    config = tiny_config(tmp_path_factory.mktemp("train") / "data")
    return config, run_train(config)


def test_run_records_params_metrics_datasets_and_artifacts(
    trained: tuple[ForecasterConfig, TrainResult],
) -> None:
    config, result = trained
    client = MlflowClient(config.tracking.tracking_uri)
    run = client.get_run(result.run_id)
    params = run.data.params
    assert params["windows.lookback"] == "10"
    assert params["model.hidden_size"] == "8"
    assert params["data.source"] == "sample"
    assert json.loads(params["model.quantiles"]) == pytest.approx([0.1, 0.5, 0.9])
    metrics = run.data.metrics
    for key in ("test_model_mae", "test_naive_mae", "test_linear_mae", "test_model_coverage",
                "test_mae_ratio_vs_naive", "test_up_day_share", "test_dm_pvalue"):  # fmt: skip
        assert key in metrics
    assert metrics["test_mae_ratio_vs_naive"] == pytest.approx(
        metrics["test_model_mae"] / metrics["test_naive_mae"]
    )
    history = client.get_metric_history(result.run_id, "val_loss")
    assert [m.step for m in history] == list(range(result.epochs))
    (dataset_input,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["ticker"] == "^GSPC"
    assert tags["first_date"] == "2014-01-02"
    assert tags["last_date"] == "2018-12-31"
    assert tags["adjustment"] == "adjusted"
    assert dataset_input.dataset.digest
    assert run.data.tags["data._GSPC.digest"] == dataset_input.dataset.digest
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "scaler.json", "evaluation.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {"plots/forecast__GSPC.png", "plots/residuals.png", "plots/training_curves.png"}


def test_version_is_registered_as_challenger_with_tags(
    trained: tuple[ForecasterConfig, TrainResult],
) -> None:
    config, result = trained
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    assert alias_version("stock-lstm", CHALLENGER) == result.model_version
    version = MlflowClient().get_model_version("stock-lstm", result.model_version)
    assert version.tags["tickers"] == "^GSPC"
    assert version.tags["data_range"] == "2014-01-02..2018-12-31"
    assert version.run_id == result.run_id
    expected = result.evaluation.model.mae < result.evaluation.naive.mae
    assert result.decision is not None
    assert result.decision.promoted is expected
    assert (alias_version("stock-lstm", CHAMPION) == result.model_version) is expected


def test_served_model_gives_the_in_process_numbers(
    trained: tuple[ForecasterConfig, TrainResult],
) -> None:
    config, result = trained
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/stock-lstm/{result.model_version}")
    frame = load_frames(config.data)["^GSPC"]
    history = frame.reset_index()
    out = model.predict(history, params={"all_days": True}).set_index("as_of")
    test = result.fold.test
    rows = out.loc[test.end_dates]
    np.testing.assert_array_equal(rows["predicted_return"].to_numpy(), result.fold.quantiles[:, 1])
    np.testing.assert_array_equal(rows["lower_return"].to_numpy(), result.fold.quantiles[:, 0])
    np.testing.assert_array_equal(rows["upper_return"].to_numpy(), result.fold.quantiles[:, 2])
    # The live forecast (last day, no target yet) agrees with the tail-only fast path.
    live = model.predict(history)
    assert len(live) == 1
    assert live["as_of"].iloc[0] == frame.index[-1]
    np.testing.assert_allclose(
        live["predicted_return"].iloc[0], out["predicted_return"].iloc[-1], rtol=1e-5
    )
    # Quantiles never cross.
    assert (out["lower_return"] <= out["predicted_return"]).all()
    assert (out["predicted_return"] <= out["upper_return"]).all()


def test_promotion_gate(trained: tuple[ForecasterConfig, TrainResult]) -> None:
    config, result = trained
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    client = MlflowClient()
    name = "gate-test"
    client.create_registered_model(name)
    v1 = str(client.create_model_version(name, result.model_uri, result.run_id).version)
    v2 = str(client.create_model_version(name, result.model_uri, result.run_id).version)
    frames = load_frames(config.data)
    test = result.fold.test

    worse_than_naive = promote_if_better(name, v1, 10.0, 9.0, frames, test)
    assert not worse_than_naive.promoted
    assert "does not beat naive persistence" in worse_than_naive.reason
    assert alias_version(name, CHAMPION) is None

    first = promote_if_better(name, v1, 8.0, 9.0, frames, test)
    assert first.promoted
    assert alias_version(name, CHAMPION) == v1

    champion_mae = champion_mae_on(f"models:/{name}@{CHAMPION}", frames, test)
    assert champion_mae == pytest.approx(result.evaluation.model.mae, rel=1e-9)
    not_better = promote_if_better(name, v2, champion_mae, champion_mae * 1.1, frames, test)
    assert not not_better.promoted
    assert not_better.champion_mae == pytest.approx(champion_mae)
    assert alias_version(name, CHAMPION) == v1

    better = promote_if_better(name, v2, champion_mae * 0.999, champion_mae * 1.1, frames, test)
    assert better.promoted
    assert alias_version(name, CHAMPION) == v2


def test_training_is_deterministic_with_a_fixed_seed(tiny: ForecasterConfig) -> None:
    data = prepare(load_frames(tiny.data), tiny)
    train, val, test = data.part("train"), data.part("val"), data.part("test")
    first = train_network(train, val, tiny)
    second = train_network(train, val, tiny)
    assert [replace(r) for r in first.history] == second.history
    np.testing.assert_array_equal(first.predict(test.x), second.predict(test.x))
    other_seed = tiny.model_copy(update={"training": tiny.training.model_copy(update={"seed": 7})})
    third = train_network(train, val, other_seed)
    assert not np.array_equal(first.predict(test.x), third.predict(test.x))


def test_inference_module_imports_no_lightning() -> None:
    code = (
        "import sys, forecaster.inference, forecaster.pyfunc_entry;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning') or m in ('forecaster.train', 'forecaster.evaluation')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_train_json_and_backtest_on_a_user_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main
    from tests.integration.conftest import TINY

    data_dir = tmp_path / "data"
    sets = [arg for item in TINY for arg in ("--set", item)]
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    assert (
        main(
            [
                "-q",
                "train",
                "--data-dir",
                str(data_dir),
                "--set",
                f"tracking.tracking_uri={uri}",
                *sets,
                "--json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["model_name"] == "stock-lstm"
    assert payload["model_version"] == "1"
    assert isinstance(payload["promoted"], bool)
    for block in ("model", "naive", "linear"):
        assert set(payload["metrics"][block]) >= {"mae", "rmse", "mape", "directional_accuracy"}

    # Any Yahoo-style CSV: write a slice of the sample in Yahoo's own layout.
    frame = load_frames(tiny_config(data_dir).data)["^GSPC"]
    csv = tmp_path / "SPX.csv"
    frame.rename(columns=str.title).rename_axis("Date").to_csv(csv)
    args = ["-q", "backtest", "--csv", str(csv), "--folds", "2", *sets, "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["folds"]) == 2
    for summary in (*result["folds"], result["aggregate"]):
        for block in ("model", "naive", "linear"):
            assert {"mae", "rmse", "mape", "directional_accuracy"} <= set(summary[block])
        assert {"coverage", "interval_width"} <= set(summary["model"])
        assert 0.9 < summary["mae_ratio_vs_naive"] < 1.1
        assert 0.3 < summary["up_day_share"] < 0.7
    assert result["folds"][0]["test_end"] < result["folds"][1]["test_start"]
    assert result["aggregate"]["n_days"] == sum(f["n_days"] for f in result["folds"])


def test_unreachable_tracking_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    args = [
        "-q",
        "train",
        "--data-dir",
        str(tmp_path),
        "--set",
        "tracking.tracking_uri=http://127.0.0.1:9",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "forecaster: error: cannot reach the MLflow tracking server at http://127.0.0.1:9"
    )
    assert "\n" not in err
