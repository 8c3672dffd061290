"""Each ticker served by the method its routing table names, with the evidence: a version of
the trained network whose table is set by hand (no seed decides what these tests see)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from forecaster.config import level_key
from forecaster.data.sources import SampleSource
from forecaster.evaluation.backtest import unseen_route
from forecaster.evaluation.gate import Evidence, Route
from forecaster.methods import Bars, Garch
from forecaster.registry.bundle import BUNDLE_FILE, WEIGHTS_FILE, MethodSpec
from forecaster.registry.loader import register
from forecaster.registry.predictor import Forecaster
from forecaster.registry.tracking import log_pyfunc
from pipelines.run_artifacts import input_example
from service.main import create_app
from service.prediction_log import read_log
from service.settings import ServiceSettings
from tests.integration.conftest import tiny_config
from tests.service.conftest import Registry

NAME = "stock-routed"
PARAMS = {"mu": 0.04, "omega": 0.02, "alpha[1]": 0.1, "beta[1]": 0.88, "nu": 6.0}
EVIDENCE = Evidence("ticker", 747, {"naive": 1.01, "garch": 1.03}, {"garch": 0.004}, 0.71,
                    {"0.5": 0.3, "0.8": 0.5, "0.9": 0.6}, "garch")  # fmt: skip
GARCH_MIN_RETURNS = Garch.fit_min_returns


def garch_quantiles(
    closes: np.ndarray, levels: tuple[float, ...], params: dict[str, float]
) -> np.ndarray:
    return Garch().next_day(Bars.of_closes(closes), params, levels)


def fit_garch(closes: np.ndarray) -> dict[str, float]:
    return Garch().fit(Bars.of_closes(closes), LEVELS).params


def naive_quantiles(closes: np.ndarray, levels: tuple[float, ...], window: int) -> np.ndarray:
    trailing = np.diff(np.log(closes))[-window:]
    return np.quantile(trailing, levels) - np.median(trailing)


@pytest.fixture(scope="module")
def routed(registry: Registry) -> str:
    """The trained network re-registered with a hand-set table: ^GSPC served by GARCH (with
    hand-set parameters), every other ticker by the unseen rule."""
    mlflow.set_tracking_uri(registry.tracking_uri)
    uri = str(registry.result.model_uri)
    bundle = Path(mlflow.artifacts.download_artifacts(f"{uri}/artifacts/{BUNDLE_FILE}"))
    weights = Path(mlflow.artifacts.download_artifacts(f"{uri}/artifacts/{WEIGHTS_FILE}"))
    trained = Forecaster.load(bundle, weights)
    config = tiny_config(registry.data_dir, "evaluation.route_per_ticker=true")
    table = replace(
        trained.bundle,
        routes={"^GSPC": Route("garch", "hand-set for the test", EVIDENCE)},
        unseen=unseen_route(config),
        methods={**trained.bundle.methods, "garch": MethodSpec({}, {"^GSPC": PARAMS})},
        calibration_window=None,  # raw bands: tests/service/test_calibration.py covers those
    )
    frames = {"^GSPC": SampleSource().load("^GSPC")}
    with mlflow.start_run(run_name="routed"):
        info = log_pyfunc(Forecaster(table, trained.network), input_example(frames, table))
    version = register(info.model_uri, NAME, {})
    MlflowClient().set_registered_model_alias(NAME, "champion", version)
    return version


@pytest.fixture
def client(
    routed: str, settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> Iterator[TestClient]:
    settings = settings_for(model_name=NAME)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def rows(n: int, seed: int = 3) -> list[dict[str, object]]:
    frame = SampleSource().load("^GSPC").iloc[-n:]
    rng = np.random.default_rng(seed)
    scale = np.exp(np.cumsum(rng.normal(0, 0.01, n)))  # another series, same shape
    return [
        {
            "date": d.date().isoformat(),
            "open": r.open * s,
            "high": r.high * s,
            "low": r.low * s,
            "close": r.close * s,
            "volume": r.volume,
        }
        for (d, r), s in zip(frame.iterrows(), scale, strict=True)
    ]


def log_quantiles(body: dict[str, object]) -> np.ndarray:
    quantiles = body["quantiles"]
    assert isinstance(quantiles, dict)
    last = float(body["last_close"])  # type: ignore[arg-type]
    return np.array([math.log(float(v) / last) for v in quantiles.values()])


LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def test_a_ticker_routed_to_garch_is_served_by_garch_from_the_servers_history(
    client: TestClient,
) -> None:
    body = client.post("/v1/predictions", json={"ticker": "^GSPC"}).json()
    assert body["method"] == "garch"
    assert body["evidence"]["scope"] == "ticker"
    assert body["evidence"]["days"] == 747
    assert body["evidence"]["pinball_ratio_vs_garch"] == pytest.approx(1.03)
    assert body["evidence"]["reason"] == "hand-set for the test"
    closes = SampleSource().load("^GSPC")["close"].to_numpy()
    np.testing.assert_allclose(log_quantiles(body), garch_quantiles(closes, LEVELS, PARAMS),
                               rtol=1e-9)  # fmt: skip
    assert list(body["quantiles"]) == [level_key(lv) for lv in LEVELS]


def test_garch_is_filtered_over_a_clients_history_with_the_tickers_parameters(
    client: TestClient,
) -> None:
    history = rows(60)
    body = client.post("/v1/predictions", json={"ticker": "^GSPC", "history": history}).json()
    assert body["method"] == "garch"
    closes = np.array([r["close"] for r in history], dtype=float)
    np.testing.assert_allclose(log_quantiles(body), garch_quantiles(closes, LEVELS, PARAMS),
                               rtol=1e-9)  # fmt: skip


def test_an_unseen_ticker_gets_the_random_walk_below_the_garch_minimum(
    client: TestClient,
) -> None:
    history = rows(60)
    body = client.post("/v1/predictions", json={"ticker": "NEWCO", "history": history}).json()
    assert body["method"] == "naive"
    assert body["evidence"]["scope"] == "unseen"
    assert body["evidence"]["days"] == 0
    # The response says why the route's method did not answer.
    assert body["warnings"] == [
        f"GARCH has no parameters for this ticker and needs {GARCH_MIN_RETURNS} returns to fit "
        "them; this history has 59: the random walk answers"
    ]
    closes = np.array([r["close"] for r in history], dtype=float)
    np.testing.assert_allclose(log_quantiles(body), naive_quantiles(closes, LEVELS, 250),
                               rtol=1e-9)  # fmt: skip


def test_an_unseen_ticker_with_a_long_history_gets_garch_fitted_on_it(
    client: TestClient,
) -> None:
    history = rows(GARCH_MIN_RETURNS + 1)
    body = client.post("/v1/predictions", json={"ticker": "NEWCO", "history": history}).json()
    assert body["method"] == "garch"
    assert body["warnings"] == []
    closes = np.array([r["close"] for r in history], dtype=float)
    expected = garch_quantiles(closes, LEVELS, fit_garch(closes))
    np.testing.assert_allclose(log_quantiles(body), expected, rtol=1e-6)


def test_model_info_lists_the_table_and_the_history_each_method_needs(
    client: TestClient,
) -> None:
    info = client.get("/v1/model").json()
    assert info["routes"]["^GSPC"]["method"] == "garch"
    assert info["routes"]["^GSPC"]["evidence"]["p_model_worse_than_garch"] == pytest.approx(0.004)
    assert info["unseen"]["method"] == "garch"
    assert info["unseen"]["evidence"]["scope"] == "unseen"
    # This version's bands are not recalibrated, so no history length buys calibration.
    rows_needed = info["history_rows"]
    assert "lstm_calibrated" not in rows_needed
    assert {k: rows_needed[k] for k in ("lstm", "garch_fit", "naive", "garch", "har", "har_fit")} == {
        "lstm": info["min_history"], "garch_fit": GARCH_MIN_RETURNS + 1, "naive": 21,
        "garch": 3, "har": 23, "har_fit": 251,
    }  # fmt: skip
    assert "naive_fit" not in rows_needed  # the random walk estimates nothing
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["PredictionResponse"]["properties"]) >= {"method", "evidence", "calibration"}


def test_the_prediction_log_records_the_method(
    client: TestClient, settings_for: Callable[..., ServiceSettings]
) -> None:
    client.post("/v1/predictions", json={"ticker": "^GSPC"})
    client.post("/v1/predictions", json={"ticker": "NEWCO", "history": rows(60)})
    url = str(settings_for().prediction_log_url)
    client.__exit__(None, None, None)  # the writer flushes on shutdown
    methods = [(r["ticker"], r["method"]) for r in read_log(url)]
    assert ("^GSPC", "garch") in methods
    assert ("NEWCO", "naive") in methods


def test_a_bundle_without_a_routing_table_serves_the_network(
    registry: Registry, settings_for: Callable[..., ServiceSettings]
) -> None:
    with TestClient(create_app(settings_for())) as plain:
        body = plain.post("/v1/predictions", json={"ticker": "^GSPC"}).json()
    assert body["method"] == "lstm"
    assert body["evidence"] is None


def test_replay_serves_past_days_by_the_same_route_as_the_api(
    routed: str, registry: Registry, tmp_path: Path
) -> None:
    """A replayed day of a GARCH-routed ticker is GARCH on the history up to that day, logged
    with its method: what the API would have answered then."""
    from datetime import date

    from pipelines.replay import run_replay

    config = tiny_config(registry.data_dir)
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    out = run_replay(config, date(2018, 12, 3), date(2018, 12, 31), f"models:/{NAME}/{routed}", url)
    logged = read_log(url)
    assert out["logged"] == len(logged) > 0
    assert {r["method"] for r in logged} == {"garch"}
    frame = SampleSource().load("^GSPC").loc["2014-01-01":]
    for row in logged[:3]:
        closes = frame["close"].loc[: pd.Timestamp(row["as_of"])].to_numpy()
        expected = closes[-1] * np.exp(garch_quantiles(closes, LEVELS, PARAMS))
        np.testing.assert_allclose(list(row["quantiles"].values()), expected, rtol=1e-9)


def test_predict_answers_each_ticker_by_its_route_as_the_api_does(
    routed: str, registry: Registry, client: TestClient
) -> None:
    from pipelines.predicting import run_predict

    config = tiny_config(registry.data_dir)
    out = run_predict(config, f"models:/{NAME}/{routed}")
    (forecast,) = out["forecasts"]
    assert forecast["method"] == "garch"
    served = client.post("/v1/predictions", json={"ticker": "^GSPC"}).json()
    assert forecast["predicted_close"] == pytest.approx(served["predicted_close"], rel=1e-12)
    assert forecast["interval"]["lower"] == pytest.approx(served["interval"]["lower"], rel=1e-12)
    assert forecast["warnings"] == served["warnings"] == []


def test_predict_says_why_the_random_walk_answered(routed: str, registry: Registry) -> None:
    """A ticker outside the universe with too short a history for the unseen rule's fit: the
    random walk answers, and `predict` says why, as the API's `warnings` do."""
    from pipelines.predicting import predict_text, run_predict

    config = tiny_config(registry.data_dir, "data.tickers=[AAPL]", "data.start=2012-12-01")
    out = run_predict(config, f"models:/{NAME}/{routed}")
    (forecast,) = out["forecasts"]
    assert forecast["method"] == "naive"
    (warning,) = forecast["warnings"]
    assert warning.startswith("GARCH has no parameters for this ticker and needs ")
    assert warning.endswith(": the random walk answers")
    assert f"  warning: {warning}" in predict_text(out).splitlines()


def test_a_baseline_gets_the_same_checks_as_the_models_input(client: TestClient) -> None:
    history = rows(60)
    history[30]["high"] = history[30]["low"] * 0.5  # high below low
    reply = client.post("/v1/predictions", json={"ticker": "^GSPC", "history": history})
    assert reply.status_code == 422
    assert "high" in reply.json()["detail"]
    short = client.post("/v1/predictions", json={"ticker": "NEWCO", "history": rows(10)})
    assert short.status_code == 422
    assert "needs at least" in short.json()["detail"]
