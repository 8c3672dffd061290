"""Per-ticker band recalibration as the API serves it: the trained network registered twice,
once with raw bands and once with hand-set factors, so what the tests see is set by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from forecaster.data.sources import SampleSource
from forecaster.methods.calibration import Calibration
from forecaster.registry.bundle import BUNDLE_FILE, WEIGHTS_FILE
from forecaster.registry.loader import register
from forecaster.registry.predictor import Forecaster
from forecaster.registry.tracking import log_pyfunc
from pipelines.run_artifacts import input_example
from service.main import create_app
from service.settings import ServiceSettings
from tests.service.conftest import Registry
from tests.service.test_routing import log_quantiles, rows

RAW, CALIBRATED = "stock-raw-bands", "stock-calibrated-bands"
FACTORS = {0.5: 2.0, 0.8: 1.5, 0.9: 1.25}


@pytest.fixture(scope="module")
def versions(registry: Registry) -> None:
    mlflow.set_tracking_uri(registry.tracking_uri)
    uri = str(registry.result.model_uri)
    bundle = Path(mlflow.artifacts.download_artifacts(f"{uri}/artifacts/{BUNDLE_FILE}"))
    weights = Path(mlflow.artifacts.download_artifacts(f"{uri}/artifacts/{WEIGHTS_FILE}"))
    trained = Forecaster.load(bundle, weights)
    frames = {"^GSPC": SampleSource().load("^GSPC")}
    stored = Calibration(FACTORS, 250, "2017-12-28", "training")
    for name, serving in (
        (RAW, replace(trained.bundle, routes={}, unseen=None, calibration_window=None)),
        (CALIBRATED, replace(trained.bundle, routes={}, unseen=None, calibration_window=250,
                             calibration_min_days=60, calibration={"AAPL": stored})),
    ):  # fmt: skip
        with mlflow.start_run(run_name=name):
            info = log_pyfunc(Forecaster(serving, trained.network), input_example(frames, serving))
        MlflowClient().set_registered_model_alias(
            name, "champion", register(info.model_uri, name, {})
        )


def answer(settings: ServiceSettings, payload: dict[str, object]) -> dict[str, object]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/predictions", json=payload)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body


def test_stored_factors_widen_a_universe_tickers_bands_about_the_median(
    versions: None, settings_for: Callable[..., ServiceSettings]
) -> None:
    payload = {"ticker": "AAPL", "history": rows(60)}  # too short to calibrate on
    raw = answer(settings_for(model_name=RAW), payload)
    served = answer(settings_for(model_name=CALIBRATED), payload)
    with TestClient(create_app(settings_for(model_name=CALIBRATED))) as client:
        needed = client.get("/v1/model").json()["history_rows"]["lstm_calibrated"]
    assert needed > 60
    assert raw["calibration"] is None
    assert served["calibration"] == {
        "factors": {"0.5": 2.0, "0.8": 1.5, "0.9": 1.25},
        "days": 250,
        "through": "2017-12-28",
        "source": "training",
    }
    q_raw, q_served = log_quantiles(raw), log_quantiles(served)
    assert q_served[3] == pytest.approx(q_raw[3])  # the median does not move
    for (lo, hi), factor in zip(((2, 4), (1, 5), (0, 6)), FACTORS.values(), strict=True):
        assert q_served[hi] - q_served[3] == pytest.approx(factor * (q_raw[hi] - q_raw[3]))
        assert q_served[3] - q_served[lo] == pytest.approx(factor * (q_raw[3] - q_raw[lo]))


def test_an_unseen_tickers_bands_are_calibrated_on_its_own_history(
    versions: None, settings_for: Callable[..., ServiceSettings]
) -> None:
    history = rows(400, seed=11)
    body = answer(settings_for(model_name=CALIBRATED), {"ticker": "ZZZ", "history": history})
    calibration = body["calibration"]
    assert isinstance(calibration, dict)
    assert calibration["source"] == "history"
    assert calibration["days"] == 250
    assert calibration["through"] == history[-1]["date"]
    assert all(0.25 <= f <= 4.0 for f in calibration["factors"].values())
    short = answer(settings_for(model_name=CALIBRATED), {"ticker": "ZZZ", "history": rows(60)})
    assert short["calibration"] is None


def test_the_same_rows_sent_again_reuse_their_band_factors(
    versions: None, settings_for: Callable[..., ServiceSettings]
) -> None:
    history = rows(400, seed=5)
    with TestClient(create_app(settings_for(model_name=CALIBRATED))) as client:
        first = client.post("/v1/predictions", json={"ticker": "ZZZ", "history": history}).json()
        again = client.post("/v1/predictions", json={"ticker": "ZZZ", "history": history}).json()
        other = client.post("/v1/predictions", json={"ticker": "YYY", "history": history}).json()
        # One high price changed inside the rows the factors read: same dates, new factors.
        moved = [dict(r) for r in history]
        moved[-100]["high"] = float(moved[-100]["high"]) * 1.5  # type: ignore[arg-type]
        changed = client.post("/v1/predictions", json={"ticker": "ZZZ", "history": moved}).json()
        held = client.app.state.service.history.calibrations_held  # type: ignore[attr-defined]
    assert first["quantiles"] == again["quantiles"]
    assert first["calibration"] == again["calibration"] == other["calibration"]
    assert changed["calibration"]["source"] == "history"
    assert held == 3  # one per (version, ticker, rows): changed prices are other rows


def test_server_history_recalibrates_from_its_latest_outcomes(
    versions: None, settings_for: Callable[..., ServiceSettings]
) -> None:
    body = answer(settings_for(model_name=CALIBRATED), {"ticker": "^GSPC"})
    calibration = body["calibration"]
    assert isinstance(calibration, dict)
    assert calibration["source"] == "history"
    last = SampleSource().load("^GSPC").index[-1].date().isoformat()
    assert calibration["through"] == last
    assert math.isfinite(float(body["volatility"]))  # type: ignore[arg-type]
    assert np.all(np.diff(log_quantiles(body)) >= 0)
