"""End to end on the bundled data with a tiny config against a temporary SQLite MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import prepare
from forecaster.data.sources import load_frames
from forecaster.methods.network.train import train_network
from forecaster.registry.loader import CHALLENGER, alias_version, model_quantiles
from pipelines.retrain import RetrainResult, run_retrain
from tests.integration.conftest import tiny_config

pytestmark = pytest.mark.slow

LEVELS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ForecasterConfig, RetrainResult]:
    # Two ensemble members, so registering, serving and re-scoring cover the ensemble layout.
    config = tiny_config(tmp_path_factory.mktemp("train") / "data", "model.ensemble_size=2",
                         "training.torch_threads=1")  # fmt: skip
    callers = torch.get_num_threads()
    result = run_retrain(config, force=True, name="train")
    # Training ran on its configured thread count and handed the caller's setting back.
    assert torch.get_num_threads() == callers
    return config, result


def step_run(config: ForecasterConfig, parent: str, step: str) -> mlflow.entities.Run:
    client = MlflowClient(config.tracking.tracking_uri)
    experiment = client.get_run(parent).info.experiment_id
    (run,) = client.search_runs(
        [experiment],
        f"tags.`mlflow.parentRunId` = '{parent}' and tags.`pipeline.step` = '{step}'",
    )
    return run


def test_run_records_params_metrics_datasets_and_artifacts(
    trained: tuple[ForecasterConfig, RetrainResult],
) -> None:
    config, result = trained
    client = MlflowClient(config.tracking.tracking_uri)
    run = client.get_run(str(result.run_id))
    params = run.data.params
    assert run.data.tags["pipeline"] == "train"
    assert params["windows.lookback"] == "10"
    assert params["model.hidden_size"] == "8"
    assert params["data.source"] == "sample"
    assert json.loads(params["model.quantiles"]) == pytest.approx(LEVELS)
    (dataset_input,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["ticker"] == "^GSPC"
    assert tags["first_date"] == "2014-01-02"
    assert tags["last_date"] == "2018-12-31"
    assert tags["adjustment"] == "adjusted"
    assert run.data.tags["data._GSPC.digest"] == dataset_input.dataset.digest

    evaluate = step_run(config, str(result.run_id), "evaluate")
    metrics = evaluate.data.metrics
    for name in ("model", "naive", "garch", "linear"):
        for key in ("mae", "pinball", "crps", "coverage_0.5", "kupiec_pvalue_0.9", "winkler_0.8"):
            assert f"test_{name}_{key}" in metrics, f"test_{name}_{key}"
    for key in ("mae_ratio_vs_naive", "pinball_ratio_vs_naive", "pinball_ratio_vs_garch",
                "dm_pinball_vs_naive_pvalue", "dm_pinball_vs_garch_pvalue"):  # fmt: skip
        assert f"test_{key}" in metrics, key
    assert metrics["test_pinball_ratio_vs_naive"] == pytest.approx(
        metrics["test_model_pinball"] / metrics["test_naive_pinball"]
    )
    train = step_run(config, str(result.run_id), "train")
    assert result.fold is not None
    for i, member in enumerate(result.fold.trained.members):
        history = client.get_metric_history(train.info.run_id, f"member{i}_val_loss")
        assert [m.step for m in history] == list(range(len(member.history)))
    artifacts = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert {"evaluation.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(evaluate.info.run_id, "plots")}
    assert plots == {
        "plots/return_bands_model__GSPC.png", "plots/return_bands_garch__GSPC.png",
        "plots/forecast__GSPC.png", "plots/pit.png", "plots/calibration.png",
        "plots/training_curves.png", "plots/per_ticker_ratios.png",
    }  # fmt: skip


def test_version_is_registered_as_challenger_with_tags_and_a_gate_decision(
    trained: tuple[ForecasterConfig, RetrainResult],
) -> None:
    config, result = trained
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    assert alias_version("stock-lstm", CHALLENGER) == result.model_version
    version = MlflowClient().get_model_version("stock-lstm", str(result.model_version))
    assert version.tags["tickers"] == "^GSPC"
    assert version.tags["data_range"] == "2014-01-02..2018-12-31"
    assert float(version.tags["pinball_ratio_vs_naive"]) > 0
    assert result.decision is not None
    names = [c.name for c in result.decision.criteria]
    assert names == ["pinball_beats_naive", "point_not_worse_than_persistence",
                     "intervals_calibrated", "beats_champion"]  # fmt: skip
    promote = step_run(config, str(result.run_id), "promote")
    assert set(promote.data.tags) >= {f"gate.{n}" for n in names}


def test_train_says_where_its_plots_are(trained: tuple[ForecasterConfig, RetrainResult]) -> None:
    from pipelines.reports import retrain_text

    config, result = trained
    payload = result.to_dict()
    evaluate = step_run(config, str(result.run_id), "evaluate")
    assert payload["step_runs"]["evaluate"] == evaluate.info.run_id
    assert payload["experiment_id"] == evaluate.info.experiment_id
    url = (f"http://127.0.0.1:5000/#/experiments/{evaluate.info.experiment_id}/runs/"
           f"{evaluate.info.run_id}/artifactPath/plots")  # fmt: skip
    assert f"plots: {url}" in retrain_text(result).splitlines()


def test_served_model_gives_the_in_process_numbers(
    trained: tuple[ForecasterConfig, RetrainResult],
) -> None:
    config, result = trained
    assert result.fold is not None
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    model = mlflow.pyfunc.load_model(str(result.model_uri))
    frame = load_frames(config.data)["^GSPC"]
    # With its ticker, so the served model knows which days it trained on: their outcomes do
    # not recalibrate its bands, as in the in-process evaluation.
    history = frame.reset_index().assign(ticker="^GSPC")
    out = model.predict(history, params={"all_days": True}).set_index("as_of")
    test = result.fold.test
    expected = result.fold.evaluation.forecasts["model"]
    rows = out.loc[test.end_dates]
    # The loaded model runs its exported graph in ONNX Runtime; the evaluation ran the torch
    # forward: equal to float32 rounding (seen: 7e-9 in log-return units), not bit for bit.
    close = {"rtol": 0, "atol": 1e-7}
    for i, level in enumerate(LEVELS):
        np.testing.assert_allclose(rows[f"q{level:g}"].to_numpy(), expected[:, i], **close)
    np.testing.assert_allclose(rows["predicted_return"].to_numpy(), expected[:, 3], **close)
    np.testing.assert_allclose(rows["lower_return"].to_numpy(), expected[:, 1], **close)
    np.testing.assert_allclose(rows["upper_return"].to_numpy(), expected[:, 5], **close)
    assert (rows["volatility"] > 0).all()
    # The live forecast (last day, no target yet) agrees with the tail-only fast path.
    live = model.predict(history)
    assert len(live) == 1
    assert live["as_of"].iloc[0] == frame.index[-1]
    np.testing.assert_allclose(
        live["predicted_return"].iloc[0], out["predicted_return"].iloc[-1], rtol=1e-5
    )
    quantiles = out[[f"q{level:g}" for level in LEVELS]].to_numpy()
    assert (np.diff(quantiles, axis=1) > 0).all()

    # Re-scoring a registered model (what the gate does to the champion) gives the same numbers.
    levels, q = model_quantiles(str(result.model_uri), {"^GSPC": frame}, test)
    assert list(levels) == pytest.approx(LEVELS)
    np.testing.assert_array_equal(q, expected)


def test_training_is_deterministic_with_a_fixed_seed(tiny: ForecasterConfig) -> None:
    data = prepare(load_frames(tiny.data), tiny)
    train, val, test = data.part("train"), data.part("val"), data.part("test")
    first = train_network(train, val, tiny, data.scaler)
    second = train_network(train, val, tiny, data.scaler)
    assert first.members == second.members
    np.testing.assert_array_equal(first.predict(test.x), second.predict(test.x))
    other_seed = tiny.model_copy(update={"training": tiny.training.model_copy(update={"seed": 7})})
    third = train_network(train, val, other_seed, data.scaler)
    assert not np.array_equal(first.predict(test.x), third.predict(test.x))


def test_inference_module_imports_no_lightning() -> None:
    code = (
        "import sys, forecaster.registry.bundle, forecaster.registry.pyfunc_entry;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning') or m in ('forecaster.methods.network.train', 'forecaster.evaluation.metrics')];"
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
    for block in ("model", "naive", "linear", "garch"):
        assert set(payload["metrics"][block]) >= {"mae", "rmse", "mape", "directional_accuracy",
                                                  "pinball", "crps"}  # fmt: skip
    assert payload["metrics"]["naive"]["directional_accuracy"] is None

    # predict names the day it forecasts, as the API does: the next NYSE session.
    predict = ["-q", "predict", "--data-dir", str(data_dir), "--set", f"tracking.tracking_uri={uri}",
               "--model-uri", "models:/stock-lstm/1", "--ticker", "^GSPC"]  # fmt: skip
    assert main([*predict, "--json"]) == 0
    (forecast,) = json.loads(capsys.readouterr().out)["forecasts"]
    assert (forecast["as_of"], forecast["target_date"]) == ("2018-12-31", "2019-01-02")
    assert forecast["method"] == "lstm"  # no routing table: the network serves every ticker
    assert main(predict) == 0
    text = capsys.readouterr().out
    assert "^GSPC: 2019-01-02 (after 2018-12-31): close " in text
    assert text.rstrip().endswith("by lstm")

    # Any Yahoo-style CSV: write a slice of the sample in Yahoo's own layout.
    frame = load_frames(tiny_config(data_dir).data)["^GSPC"]
    csv = tmp_path / "SPX.csv"
    frame.rename(columns=str.title).rename_axis("Date").to_csv(csv)
    predictions = tmp_path / "out" / "predictions.csv"
    args = ["-q", "backtest", "--csv", str(csv), "--folds", "2", *sets, "--json",
            "--predictions", str(predictions)]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["folds"]) == 2
    for summary in (*result["folds"], result["aggregate"]):
        for block in ("model", "naive", "linear", "garch"):
            assert {"mae", "rmse", "mape", "directional_accuracy", "pinball", "crps"} <= set(
                summary[block]
            )
            for key in ("coverage", "winkler", "kupiec_pvalue"):
                assert set(summary[block][key]) == {"0.5", "0.8", "0.9"}
        assert {"coverage", "interval_width"} <= set(summary["model"])
        assert summary["naive"]["directional_accuracy"] is None
        assert 0.9 < summary["mae_ratio_vs_naive"] < 1.1
        assert 0.3 < summary["up_day_share"] < 0.7
        for key in ("dm_pinball_vs_naive", "dm_pinball_vs_garch"):
            assert set(summary[key]) == {"statistic", "pvalue"}
        assert summary["pinball_ratio_vs_naive"] > 0
        assert summary["pinball_ratio_vs_garch"] > 0
    assert result["folds"][0]["test_end"] < result["folds"][1]["test_start"]
    assert result["aggregate"]["n_days"] == sum(f["n_days"] for f in result["folds"])

    # The predictions file: every test day of every fold, re-scorable with any tool.
    import pandas as pd

    table = pd.read_csv(predictions)
    assert list(table.columns) == ["ticker", "as_of", "target_date", "last_close",
                                   "actual_close", *(f"q{lv:g}" for lv in LEVELS)]  # fmt: skip
    assert len(table) == result["aggregate"]["n_days"]
    assert table["as_of"].is_monotonic_increasing
    q = table[[f"q{lv:g}" for lv in LEVELS]].to_numpy()
    y = np.log(table["actual_close"] / table["last_close"]).to_numpy()
    from forecaster.evaluation.scores import pinball_per_day

    rescored = pinball_per_day(np.log(q / table["last_close"].to_numpy()[:, None]), y, LEVELS)
    assert rescored.mean() == pytest.approx(result["aggregate"]["model"]["pinball"], rel=1e-9)


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
