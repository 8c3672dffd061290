"""The docker-compose topology as processes: PostgreSQL, `mlflow server` on it over HTTP,
`forecaster retrain` and `forecaster serve` against it, a forecast from the running API, and a
check through MLflow's REST API that everything landed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forecaster.config import load_config
from forecaster.errors import RetrainError
from pipelines.retrain import run_retrain
from tests.conftest import free_port
from tests.serve_process import ServeProcess, clean_env
from tests.system.conftest import BIN, MlflowServer, Postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A small, fast configuration. Whether it earns champion is the gate's business (tested as a
# pure function); the API test puts the version in place explicitly, so nothing here depends
# on a seed beating a baseline.
TRAIN_ARGS = ["--start", "2010-01-01", "--set", "model.hidden_size=8", "--set",
              "model.ensemble_size=1", "--set", "training.max_epochs=3"]  # fmt: skip


def api(server: MlflowServer, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    reply = httpx.get(f"{server.url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    reply.raise_for_status()
    return reply.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def retrained(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    data_dir = tmp_path_factory.mktemp("system") / "data"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    result = subprocess.run(
        [str(BIN / "forecaster"), "-q", "retrain", "--data-dir", str(data_dir), *TRAIN_ARGS,
         "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # -q: warnings and errors only, MLflow's own lines included; the registration is in the
    # JSON, not printed twice on stderr.
    assert " INFO " not in result.stderr, result.stderr[-3000:]
    assert "registered model" not in result.stderr, result.stderr[-3000:]
    assert "Created version" not in result.stderr, result.stderr[-3000:]
    payload = json.loads(result.stdout)
    payload["data_dir"] = str(data_dir)
    if not payload["promoted"]:
        # Test set-up, not the product's gate: serve this version whatever its score.
        httpx.post(
            f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias",
            json={"name": "stock-lstm", "alias": "champion",
                  "version": payload["model_version"]},
            timeout=30,
        ).raise_for_status()  # fmt: skip
    return payload


@pytest.fixture(scope="module")
def api_server(mlflow_server: MlflowServer, retrained: dict) -> Iterator[str]:  # type: ignore[type-arg]
    port = free_port()
    env = {
        **os.environ,
        "FORECASTER_TRACKING_URI": mlflow_server.url,
        "FORECASTER_DATA_DIR": retrained["data_dir"],
    }
    log = Path(retrained["data_dir"]) / "api.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "forecaster"), "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_retrain_against_the_server_registers_and_decides(retrained: dict) -> None:  # type: ignore[type-arg]
    assert retrained["model_version"] == "1"
    criteria = retrained["decision"]["criteria"]
    assert [c["name"] for c in criteria] == ["pinball_beats_naive",
        "point_not_worse_than_persistence", "intervals_calibrated", "beats_champion"]  # fmt: skip
    # Whichever way this seed's scores fall, the pipeline applied the gate's rule: promoted
    # exactly when every recorded criterion passed (the rule itself is tested in test_gate).
    everything_passed = all(c["passed"] for c in criteria)
    assert retrained["decision"]["promoted"] is everything_passed
    assert retrained["status"] == ("promoted" if everything_passed else "kept")
    assert set(retrained["step_seconds"]) == {
        "ingest", "validate", "features", "train", "evaluate", "register", "promote"
    }  # fmt: skip


def test_the_api_serves_the_champion(api_server: str, retrained: dict) -> None:  # type: ignore[type-arg]
    reply = httpx.post(f"{api_server}/v1/predictions", json={"ticker": "^GSPC"}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"]["version"] == retrained["model_version"]
    assert body["target_date"] == "2019-01-02"
    assert body["interval"]["lower"] < body["predicted_close"] < body["interval"]["upper"]


def test_mlflow_rest_api_has_the_run_metrics_artifacts_version_and_alias(
    mlflow_server: MlflowServer,
    retrained: dict,  # type: ignore[type-arg]
) -> None:
    champion = api(mlflow_server, "registered-models/alias", name="stock-lstm", alias="champion")
    version = champion["model_version"]
    assert version["version"] == "1"
    parent = api(mlflow_server, "runs/get", run_id=retrained["run_id"])["run"]
    assert parent["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
    assert tags["pipeline.status"] == retrained["status"]
    assert tags["data.last_date"] == "2018-12-31"
    metrics = {m["key"] for m in parent["data"]["metrics"]}
    assert {"step_train_s", "step_evaluate_s"} <= metrics
    experiment = parent["info"]["experiment_id"]
    reply = httpx.post(
        f"{mlflow_server.url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment],
              "filter": f"tags.`mlflow.parentRunId` = '{retrained['run_id']}'"},
        timeout=30,
    )  # fmt: skip
    reply.raise_for_status()
    steps = {
        {t["key"]: t["value"] for t in r["data"]["tags"]}["pipeline.step"]: r
        for r in reply.json()["runs"]
    }
    evaluate = steps["evaluate"]
    step_metrics = {m["key"]: m["value"] for m in evaluate["data"]["metrics"]}
    for name in ("model", "naive", "garch", "linear"):
        assert step_metrics[f"test_{name}_pinball"] > 0
    assert step_metrics["test_pinball_ratio_vs_naive"] == pytest.approx(
        step_metrics["test_model_pinball"] / step_metrics["test_naive_pinball"]
    )
    artifacts = api(mlflow_server, "artifacts/list", run_id=evaluate["info"]["run_id"])
    paths = {f["path"] for f in artifacts.get("files", [])}
    assert {"evaluation.json", "plots"} <= paths
    # The registered version points at the model logged by the register step, served by the
    # tracking server's artifact proxy.
    assert version["run_id"] == steps["register"]["info"]["run_id"]
    model_files = api(mlflow_server, "artifacts/list", run_id=version["run_id"])
    assert any(f["path"].startswith("scaler.json") for f in model_files.get("files", []))


def test_tracking_server_stopped_mid_run_leaves_the_champion(
    postgres: Postgres,
    mlflow_server: MlflowServer,
    retrained: dict,  # type: ignore[type-arg]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second server on the same database, which this test stops during training.
    doomed = MlflowServer(postgres.url, mlflow_server.artifacts, tmp_path / "doomed.log")
    doomed.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import pipelines.retrain as retrain_module

    real_train = retrain_module.train

    def train_then_lose_the_server(*args: object, **kwargs: object) -> object:
        doomed.stop()
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retrain_module, "train", train_then_lose_the_server)
    config = load_config(
        None,
        ["model.hidden_size=8", "training.max_epochs=2", "model.ensemble_size=1"],
        values={"data.data_dir": str(tmp_path / "data"), "data.start": "2010-01-01",
                "tracking.tracking_uri": doomed.url},
    )  # fmt: skip
    try:
        with pytest.raises(RetrainError, match="champion was not changed"):
            run_retrain(config, force=True)
    finally:
        doomed.stop()
    champion = api(mlflow_server, "registered-models/alias", name="stock-lstm", alias="champion")
    assert champion["model_version"]["version"] == retrained["model_version"]


def test_prediction_log_migrates_beside_mlflow_in_its_postgresql_database(
    mlflow_server: MlflowServer, postgres: Postgres
) -> None:
    """The log may share MLflow's database: its own version table leaves MLflow's alone."""
    from sqlalchemy import create_engine, inspect, text

    from forecaster.predlog.migrate import VERSION_TABLE, head, upgrade

    engine = create_engine(postgres.url)
    with engine.connect() as conn:
        mlflow_version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert upgrade(engine) == head()
    assert upgrade(engine) == head()
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == mlflow_version
        )
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == head()
    columns = {c["name"] for c in inspect(engine).get_columns("predictions")}
    assert {"quantiles", "volatility", "target_date"} <= columns
    engine.dispose()
    # MLflow still works on its database.
    assert api(mlflow_server, "experiments/search", max_results="10")["experiments"]


def test_the_api_starts_before_its_tracking_server_and_rides_out_its_outages(
    postgres: Postgres,
    mlflow_server: MlflowServer,
    retrained: dict,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    """The API starts while its tracking server is down (a rollout where the API's container
    comes up first): it listens at once, is not ready, says why without the URL's password,
    becomes ready when the server comes up, and keeps serving through a later outage."""
    store = MlflowServer(postgres.url, mlflow_server.artifacts, tmp_path / "store.log")
    secret = "s3cret-pw"
    env = clean_env(
        FORECASTER_TRACKING_URI=f"http://forecaster:{secret}@127.0.0.1:{store.port}",
        FORECASTER_DATA_DIR=retrained["data_dir"],
        FORECASTER_PREDICTION_LOG_URL=f"sqlite:///{tmp_path / 'predictions.db'}",
        FORECASTER_RETRY_MAX_SECONDS="0.5",
        FORECASTER_RELOAD_INTERVAL_SECONDS="0.5",
    )
    try:
        with ServeProcess(env, tmp_path / "serve.log") as api_process:
            api_process.wait_for("/healthz", 200, within=60)
            not_ready = httpx.get(f"{api_process.url}/readyz", timeout=5).json()["detail"]
            assert not_ready == (
                "stock-lstm@champion not available: tracking store unreachable; retrying"
            )
            store.start()
            api_process.wait_for("/readyz", 200, within=120)
            predict = {"json": {"ticker": "^GSPC"}, "timeout": 30}
            served = httpx.post(f"{api_process.url}/v1/predictions", **predict)  # type: ignore[arg-type]
            assert served.json()["model"]["version"] == retrained["model_version"]
            store.stop()
            deadline = time.monotonic() + 60  # a poll cut by the stop fails, the next sees it
            while not str(
                (ready := httpx.get(f"{api_process.url}/readyz", timeout=5).json())["detail"]
            ).endswith("tracking store unreachable; retrying"):
                assert time.monotonic() < deadline, ready
                during = httpx.post(f"{api_process.url}/v1/predictions", **predict)  # type: ignore[arg-type]
                assert during.status_code == 200  # the loaded model serves on
                time.sleep(0.2)
            assert ready["version"] == retrained["model_version"]
            api_process.terminate()
    finally:
        store.stop()
    output = api_process.output()
    assert secret not in output
    assert "Traceback" not in output
    # One line per change of state: down, up (serving), down again.
    assert output.count("not available: tracking store") == 2, output[-3000:]
    assert "now serving stock-lstm v1" in output
