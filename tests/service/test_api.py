"""Every route and every error of the API, on a real registered model (TestClient)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yfinance as yf
from curl_cffi.requests.exceptions import DNSError
from fastapi.testclient import TestClient

from forecaster.data.sources import SampleSource
from service.main import create_app
from service.prediction_log import read_log
from service.settings import ServiceSettings
from tests.service.conftest import API_KEY, Registry, assert_promtool_clean

pytestmark = pytest.mark.slow


def history_rows(n: int, end: str = "2018-12-31") -> list[dict[str, Any]]:
    frame = SampleSource().load("^GSPC").loc[:end].tail(n)
    return [
        {"date": str(day.date()), **{k: float(v) for k, v in row.items()}}
        for day, row in frame.iterrows()
    ]


def test_health_and_readiness(client: TestClient, registry: Registry) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    deadline = time.monotonic() + 15  # the prediction log opens in its writer thread
    while (ready := client.get("/readyz")).json().get("prediction_log") != "logging":
        assert time.monotonic() < deadline, ready.json()
        time.sleep(0.05)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "model": "stock-lstm",
        "version": registry.result.model_version,
        "alias": "champion",
        "detail": None,
        "prediction_log": "logging",
    }


def test_the_served_network_answers_as_its_torch_reference(
    client: TestClient, registry: Registry
) -> None:
    """The API runs the model's exported graph in ONNX Runtime; its answer for a client history
    equals the torch network's own (the reference path) to float32 rounding."""
    from mlflow import MlflowClient

    from forecaster.registry.loader import load_version

    rows = client.get("/v1/model").json()["min_history"] + 30
    body = client.post("/v1/predictions", json={"ticker": "^GSPC", "history": history_rows(rows)})
    assert body.status_code == 200, body.text
    answer = body.json()
    assert answer["method"] == "lstm"
    version = str(registry.result.model_version)
    reference = load_version(MlflowClient(registry.tracking_uri), registry.tracking_uri,
                             "stock-lstm", version, runtime="torch").forecaster  # fmt: skip
    assert reference.forward.runtime == "torch"
    frame = SampleSource().load("^GSPC").loc[:"2018-12-31"].tail(rows)
    want = reference.serve(frame, "^GSPC").quantiles
    got = np.log(np.array(list(answer["quantiles"].values()), dtype=float) / answer["last_close"])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert np.abs(want).max() > 1e-3


def test_model_info(client: TestClient, registry: Registry) -> None:
    info = client.get("/v1/model").json()
    assert info["version"] == registry.result.model_version
    assert info["alias"] == "champion"
    assert info["run_id"] == registry.version_run_id
    assert info["training_data_range"] == "2014-01-02..2018-12-31"
    assert info["lookback"] == 10
    assert info["network_runtime"] == "onnxruntime"  # the graph registered with the model
    # The universe: the tickers the model has seen, with the dates of their training rows.
    assert list(info["universe"]) == ["^GSPC"]
    assert info["universe"] == registry.result.to_dict()["universe"]
    assert info["universe"]["^GSPC"]["first"] == "2014-01-02"
    # min_history is the contract for client history: that many rows work, one fewer does not.
    needed = info["min_history"]
    body = {"ticker": "^GSPC", "history": history_rows(needed)}
    assert client.post("/v1/predictions", json=body).status_code == 200
    body["history"] = history_rows(needed - 1)
    assert client.post("/v1/predictions", json=body).status_code == 422
    metrics = info["test_metrics"]
    evaluation = registry.result.evaluation
    assert evaluation is not None
    assert metrics["test_model_mae"] == pytest.approx(evaluation.model.point.mae, rel=1e-5)
    assert metrics["test_naive_mae"] == pytest.approx(
        evaluation.scores["naive"].point.mae, rel=1e-5
    )
    assert metrics["test_model_pinball"] == pytest.approx(evaluation.model.pinball, rel=1e-5)
    assert metrics["test_pinball_ratio_vs_garch"] == pytest.approx(
        evaluation.summary()["pinball_ratio_vs_garch"], rel=1e-5
    )


def test_prediction_from_server_history_matches_the_registered_model(
    client: TestClient, registry: Registry
) -> None:
    response = client.post("/v1/predictions", json={"ticker": "^GSPC"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["as_of"] == "2018-12-31"
    assert body["target_date"] == "2019-01-02"  # 2019-01-01 is an NYSE holiday
    assert body["history_source"] == "server"
    assert body["model"] == {
        "name": "stock-lstm",
        "version": registry.result.model_version,
        "run_id": registry.version_run_id,
    }
    assert body["interval"]["lower"] < body["predicted_close"] < body["interval"]["upper"]
    assert body["interval"]["level"] == 0.8
    # The distribution: every level in price units, ordered; the three intervals nested.
    levels = ["0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95"]
    assert list(body["quantiles"]) == levels
    prices = [body["quantiles"][k] for k in levels]
    assert prices == sorted(prices)
    assert body["quantiles"]["0.5"] == body["predicted_close"]
    assert body["intervals"]["0.8"] == body["interval"]
    assert body["intervals"]["0.5"]["lower"] == body["quantiles"]["0.25"]
    assert body["intervals"]["0.9"]["upper"] == body["quantiles"]["0.95"]
    assert 0.001 < body["volatility"] < 0.1
    assert response.headers["x-request-id"]
    model = mlflow.pyfunc.load_model(f"models:/stock-lstm/{registry.result.model_version}")
    # Enough rows for the same calibration window the server's history gives (its bands are
    # recalibrated from the model's last 250 outcomes on that history).
    frame = pd.DataFrame(history_rows(400))
    expected = model.predict(frame.assign(date=pd.to_datetime(frame["date"])))
    assert body["predicted_close"] == pytest.approx(expected["predicted_close"].iloc[0], rel=1e-6)
    assert body["interval"]["lower"] == pytest.approx(expected["lower"].iloc[0], rel=1e-6)
    assert body["volatility"] == pytest.approx(expected["volatility"].iloc[0], rel=1e-6)


def test_prediction_from_client_history(client: TestClient) -> None:
    rows = history_rows(60, end="2018-06-29")
    response = client.post("/v1/predictions", json={"ticker": "ACME", "history": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ticker"] == "ACME"
    assert body["as_of"] == "2018-06-29"
    assert body["target_date"] == "2018-07-02"
    assert body["history_source"] == "request"
    assert body["last_close"] == rows[-1]["close"]


def test_weekend_and_holiday_target_dates(client: TestClient) -> None:
    # 2018-11-21 is the Wednesday before Thanksgiving: next session is Friday the 23rd.
    rows = history_rows(60, end="2018-11-21")
    body = client.post("/v1/predictions", json={"ticker": "X", "history": rows}).json()
    assert (body["as_of"], body["target_date"]) == ("2018-11-21", "2018-11-23")
    rows = history_rows(60, end="2018-11-30")  # a Friday
    body = client.post("/v1/predictions", json={"ticker": "X", "history": rows}).json()
    assert body["target_date"] == "2018-12-03"


def _mutate(index: int, **changes: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    def apply(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[index] = {**rows[index], **changes}
        return rows

    return apply


BAD_BODIES = [
    ("missing ticker", lambda rows: {"history": rows}, "ticker"),
    ("bad ticker", lambda rows: {"ticker": "no spaces allowed"}, "ticker"),
    ("extra field", lambda rows: {"ticker": "^GSPC", "model_uri": "runs:/x/model"}, "model_uri"),
    ("negative price", lambda rows: {"ticker": "A", "history": _mutate(5, close=-1.0)(rows)}, "greater than 0"),
    ("non-numeric", lambda rows: {"ticker": "A", "history": _mutate(5, open="abc")(rows)}, "valid number"),
    ("high below low", lambda rows: {"ticker": "A", "history": _mutate(5, high=1.0, low=2.0)(rows)}, "below low"),
    ("negative volume", lambda rows: {"ticker": "A", "history": _mutate(5, volume=-5)(rows)}, "greater than or equal to 0"),
    ("boolean volume", lambda rows: {"ticker": "A", "history": _mutate(5, volume=True)(rows)}, "not true/false"),
    ("boolean price", lambda rows: {"ticker": "A", "history": _mutate(5, close=False)(rows)}, "not true/false"),
    ("unsorted", lambda rows: {"ticker": "A", "history": [rows[1], rows[0], *rows[2:]]}, "strictly increasing"),
    ("duplicate date", lambda rows: {"ticker": "A", "history": [rows[0], *rows]}, "duplicates"),
    ("too few rows", lambda rows: {"ticker": "A", "history": rows[:15]}, "needs at least 32"),
    ("empty history", lambda rows: {"ticker": "A", "history": []}, "at least 1"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "fragment"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_are_422_with_a_useful_detail(
    client: TestClient,
    case: str,
    make: Callable[[list[dict[str, Any]]], dict[str, Any]],
    fragment: str,
) -> None:
    response = client.post("/v1/predictions", json=make(history_rows(60)))
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_too_many_rows_and_too_large_bodies(settings_for: Callable[..., ServiceSettings]) -> None:
    app = create_app(settings_for(max_history_rows=100, max_body_bytes=20_000))
    with TestClient(app) as client:
        response = client.post(
            "/v1/predictions", json={"ticker": "A", "history": history_rows(150)}
        )
        assert response.status_code in (413, 422)
        small = create_app(settings_for(max_history_rows=100))
    with TestClient(small) as client:
        response = client.post(
            "/v1/predictions", json={"ticker": "A", "history": history_rows(150)}
        )
        assert response.status_code == 422
        assert "send at most 100" in response.json()["detail"]
    with TestClient(app) as client:
        big = client.post("/v1/predictions", content=b"{" + b" " * 30_000 + b"}",
                          headers={"content-type": "application/json"})  # fmt: skip
        assert big.status_code == 413
        assert "request body over 20000 bytes" in big.json()["detail"]


def test_unknown_ticker_is_404(client: TestClient) -> None:
    response = client.post("/v1/predictions", json={"ticker": "NOPE"})
    assert response.status_code == 404
    assert "no server-side history for 'NOPE'" in response.json()["detail"]


def test_data_source_down_without_cache_is_503(
    settings_for: Callable[..., ServiceSettings], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    def offline(self: yf.Ticker, **kwargs: Any) -> pd.DataFrame:
        raise DNSError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yf.Ticker, "history", offline)
    monkeypatch.setattr("forecaster.data.sources.yahoo.time.sleep", lambda seconds: None)
    app = create_app(settings_for(data_source="yahoo"))
    with TestClient(app) as client:
        # Point the live source at an empty cache: nothing to fall back on.
        app.state.service.history.source.cache.root = tmp_path / "empty-cache"
        response = client.post("/v1/predictions", json={"ticker": "AAPL"})
        assert response.status_code == 503
        assert "could not download 'AAPL' from Yahoo Finance" in response.json()["detail"]
        metrics = client.get("/metrics").text
        assert 'forecaster_data_source_errors_total{kind="unavailable"} 1.0' in metrics


def test_batch_gives_one_result_or_error_per_ticker(client: TestClient) -> None:
    body = {
        "requests": [
            {"ticker": "^GSPC"},
            {"ticker": "NOPE"},
            {"ticker": "ACME", "history": history_rows(40)},
            # Schema-valid, but a rule across rows fails (a repeated date): that item's 422.
            {"ticker": "DUPLICATE", "history": [*history_rows(40), history_rows(40)[-1]]},
        ]
    }
    response = client.post("/v1/predictions/batch", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["ticker"] for r in results] == ["^GSPC", "NOPE", "ACME", "DUPLICATE"]
    assert results[0]["prediction"]["as_of"] == "2018-12-31"
    assert results[1]["error"]["status"] == 404
    assert results[2]["prediction"]["history_source"] == "request"
    assert results[3]["error"]["status"] == 422
    assert "strictly increasing" in results[3]["error"]["detail"]
    too_many = {"requests": [{"ticker": "^GSPC"}] * 51}
    assert client.post("/v1/predictions/batch", json=too_many).status_code == 422


def test_no_model_means_not_ready_and_503(settings_for: Callable[..., ServiceSettings]) -> None:
    with TestClient(create_app(settings_for(model_name="no-such-model"))) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "no-such-model@champion not available" in ready.json()["detail"]
        response = client.post("/v1/predictions", json={"ticker": "^GSPC"})
        assert response.status_code == 503
        assert "no model loaded" in response.json()["detail"]
        assert client.get("/v1/model").status_code == 503


def test_fallback_alias_serves_a_challenger_until_a_champion_exists(
    settings_for: Callable[..., ServiceSettings], registry: Registry
) -> None:
    settings = settings_for(model_alias="no-such-alias", fallback_alias="challenger")
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["alias"] == "challenger"
        assert client.get("/v1/model").json()["alias"] == "challenger"
        assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200


def test_admin_reload_needs_the_key(
    client: TestClient, settings_for: Callable[..., ServiceSettings]
) -> None:
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 403
    ok = client.post("/v1/admin/reload", headers={"X-API-Key": API_KEY})
    assert ok.status_code == 200
    assert ok.json()["swapped"] is False
    with TestClient(create_app(settings_for(api_key=None))) as keyless:
        refused = keyless.post("/v1/admin/reload", headers={"X-API-Key": API_KEY})
        assert refused.status_code == 403
        assert "FORECASTER_API_KEY" in refused.json()["detail"]


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_api_key_disables_admin(
    settings_for: Callable[..., ServiceSettings], monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """FORECASTER_API_KEY= (set but empty) must not enable admin calls with an empty key."""
    monkeypatch.setenv("FORECASTER_API_KEY", blank)
    settings = settings_for()
    values = settings.model_dump(exclude={"api_key"})
    from_env = ServiceSettings(**values)
    assert from_env.api_key is None
    with TestClient(create_app(from_env)) as client:
        for key in ("", blank):
            refused = client.post("/v1/admin/reload", headers={"X-API-Key": key})
            assert refused.status_code == 403
            assert "admin API disabled" in refused.json()["detail"]


def test_hot_reload_swaps_versions_and_survives_a_broken_one(
    client: TestClient, registry: Registry
) -> None:
    original = registry.result.model_version
    try:
        new = registry.new_version()
        registry.promote(new)
        reload = client.post("/v1/admin/reload", headers={"X-API-Key": API_KEY}).json()
        assert reload == {"swapped": True, "version": new, "detail": f"serving v{new}"}
        assert client.get("/v1/model").json()["version"] == new
        assert (
            client.post("/v1/predictions", json={"ticker": "^GSPC"}).json()["model"]["version"]
            == new
        )

        broken = registry.new_version(source=str(registry.data_dir / "no-such-model"))
        registry.promote(broken)
        failed = client.post("/v1/admin/reload", headers={"X-API-Key": API_KEY}).json()
        assert failed["swapped"] is False
        assert failed["version"] == new
        assert f"loading stock-lstm v{broken} failed" in failed["detail"]
        still = client.post("/v1/predictions", json={"ticker": "^GSPC"})
        assert still.status_code == 200
        assert still.json()["model"]["version"] == new
        assert 'forecaster_model_reloads_total{outcome="failed"} 1.0' in client.get("/metrics").text
    finally:
        registry.promote(original)


def test_unhandled_errors_are_500_with_a_request_id_and_the_app_lives_on(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    forecaster = client.app.state.service.models.current.forecaster  # type: ignore[attr-defined]

    def broken(window: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    monkeypatch.setattr(forecaster, "forecast_window", broken)
    response = client.post("/v1/predictions", json={"ticker": "^GSPC"})
    assert response.status_code == 500
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "boom" not in response.text
    monkeypatch.undo()
    assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200


def test_metrics_and_prediction_log(
    settings_for: Callable[..., ServiceSettings], registry: Registry
) -> None:
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200
        client.post("/v1/predictions", json={"ticker": "NOPE"})
        written = 'forecaster_prediction_log_rows_total{outcome="written"} 3.0'
        deadline = time.monotonic() + 10  # the log's writer is a background thread
        while written not in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    version = registry.result.model_version
    assert (
        'forecaster_http_requests_total{method="POST",route="/v1/predictions",status="200"} 3.0'
        in text
    )
    assert (
        'forecaster_http_requests_total{method="POST",route="/v1/predictions",status="404"} 1.0'
        in text
    )
    assert f'forecaster_predictions_total{{model_version="{version}"}} 3.0' in text
    assert "forecaster_http_request_duration_seconds_bucket" in text
    assert_promtool_clean(text)
    rows = read_log(settings.resolved_prediction_log_url())
    assert len(rows) == 3
    assert {r["ticker"] for r in rows} == {"^GSPC"}
    assert str(rows[0]["as_of"]) == "2018-12-31"
    assert str(rows[0]["target_date"]) == "2019-01-02"
    assert rows[0]["model_version"] == version
    assert set(rows[0]["quantiles"]) == {"0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95"}
    assert rows[0]["quantiles"]["0.5"] == pytest.approx(rows[0]["predicted_close"])
    assert rows[0]["volatility"] > 0
    assert len({r["request_id"] for r in rows}) == 3


def test_a_prediction_log_outage_fails_no_request_and_is_counted(
    settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    db = tmp_path / "outage.db"
    # SQLite gives up on a locked database after 0.3 s here (5 s by default).
    settings = settings_for(prediction_log_url=f"sqlite:///{db}?timeout=0.3")
    with TestClient(create_app(settings)) as client:
        holder = sqlite3.connect(db)
        holder.execute("BEGIN EXCLUSIVE")  # the database is down for the service
        for _ in range(5):
            assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200
        failed = re.compile(r'forecaster_prediction_log_rows_total\{outcome="failed"\} (\d+)')
        deadline = time.monotonic() + 15
        while (
            not (found := failed.search(text := client.get("/metrics").text))
            or int(float(found.group(1))) < 5
        ):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        holder.rollback()
        holder.close()
        assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200
    assert len(read_log(f"sqlite:///{db}")) == 1  # after the outage, rows land again


def test_an_unusable_prediction_log_never_fails_the_service(
    settings_for: Callable[..., ServiceSettings],
) -> None:
    settings = settings_for(prediction_log_url="sqlite:////proc/no-such-dir/predictions.db")
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200


def test_a_model_that_contradicts_the_service_settings_refuses_to_start(
    settings_for: Callable[..., ServiceSettings],
) -> None:
    from forecaster.errors import ModelMismatchError

    # The registered model was trained on adjusted prices; this service would read raw ones.
    app = create_app(settings_for(auto_adjust=False))
    with (
        pytest.raises(
            ModelMismatchError, match=r"trained on adjusted prices.*FORECASTER_AUTO_ADJUST=true"
        ),
        TestClient(app),
    ):
        pass


def test_the_openapi_document_states_the_limits_the_service_enforces(
    client: TestClient, registry: Registry
) -> None:
    """A generated client (or a fuzzer) reads the history lengths and the batch size from the
    schema: at least what the served model needs, at most the settings' limits."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    (array,) = [v for v in schemas["PredictionRequest"]["properties"]["history"]["anyOf"]
                if v.get("type") == "array"]  # fmt: skip
    needed = client.get("/v1/model").json()["min_history"]
    assert array["minItems"] == needed
    assert array["maxItems"] == 5000
    assert schemas["BatchRequest"]["properties"]["requests"]["maxItems"] == 50
    short = client.post("/v1/predictions",
                        json={"ticker": "ACME", "history": history_rows(needed - 1)})  # fmt: skip
    assert short.status_code == 422
    assert client.post("/v1/predictions",
                       json={"ticker": "ACME", "history": history_rows(needed)}).status_code == 200  # fmt: skip


def _redated(rows: list[dict[str, Any]], days: list[str]) -> list[dict[str, Any]]:
    return [{**row, "date": day} for row, day in zip(rows, days, strict=True)]


def test_histories_that_cannot_be_daily_trading_data_are_refused(client: TestClient) -> None:
    rows = history_rows(60)
    weekly = _redated(rows, [str(d.date()) for d in pd.date_range("2017-01-02", periods=60,
                                                                   freq="7D")])  # fmt: skip
    reply = client.post("/v1/predictions", json={"ticker": "ACME", "history": weekly})
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("history for ACME: not daily data: its rows are "
                                             "a median 7 days apart")  # fmt: skip
    weekends = pd.date_range("2017-01-07", periods=220, freq="D")
    weekends = weekends[weekends.day_of_week >= 5][:60]
    reply = client.post("/v1/predictions", json={"ticker": "ACME",
                        "history": _redated(rows, [str(d.date()) for d in weekends])})  # fmt: skip
    assert reply.status_code == 422
    assert "100% of its rows fall on a Saturday or Sunday" in reply.json()["detail"]


def test_a_jump_like_an_unadjusted_split_is_named_in_the_response(client: TestClient) -> None:
    rows = history_rows(60)
    assert client.post("/v1/predictions",
                       json={"ticker": "ACME", "history": rows}).json()["warnings"] == []  # fmt: skip
    split = [
        {**r, **{k: r[k] * 0.1 for k in ("open", "high", "low", "close")}} if i >= 40 else r
        for i, r in enumerate(rows)
    ]
    body = client.post("/v1/predictions", json={"ticker": "ACME", "history": split}).json()
    (warning,) = body["warnings"]
    ratio = split[40]["close"] / split[39]["close"]
    assert warning.startswith(f"close moved x{ratio:.3g} from {rows[39]['date']} to "
                              f"{rows[40]['date']} (row 40)")  # fmt: skip
    assert "unadjusted split" in warning


def test_a_history_that_mostly_did_not_move_is_named_in_the_response(client: TestClient) -> None:
    rows = history_rows(80)
    flat = [
        {**r, "open": 50.0, "high": 50.0, "low": 50.0, "close": 50.0} if i < 76 else
        {**r, **{k: 50.0 * 1.3 for k in ("open", "high", "low", "close")}}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    body = client.post("/v1/predictions", json={"ticker": "ACME", "history": flat}).json()
    (warning,) = body["warnings"]  # +30% is a move, not a split (the jump warning stays quiet)
    assert warning.startswith(f"close did not move on 78 of 79 days; the last move is from "
                              f"{rows[75]['date']} to {rows[76]['date']}")  # fmt: skip
    assert "stale or forward-filled" in warning
