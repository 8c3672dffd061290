"""The loop closed on real served forecasts: the service logs them, the monitor resolves them
against the bundled closes, scores them, and is idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import create_engine, func, select

from forecaster.data.sources import SampleSource
from forecaster.predlog.schema import live_scores, outcomes
from pipelines.cli import main
from service.main import create_app
from service.prediction_log import read_log
from service.settings import ServiceSettings
from tests.service.conftest import Registry, assert_promtool_clean
from tests.service.test_api import history_rows

# As-of days in December 2018 whose next session is in the bundled sample, and 2018-12-31,
# whose target day (2019-01-02) is not: that one must stay unresolved.
AS_OF = ["2018-12-03", "2018-12-07", "2018-12-12", "2018-12-14", "2018-12-19", "2018-12-21",
         "2018-12-27", "2018-12-31"]  # fmt: skip


@pytest.fixture(scope="module")
def served(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('monitor') / 'predictions.db'}"
    settings = ServiceSettings(tracking_uri=registry.tracking_uri, data_dir=registry.data_dir,
                               reload_interval_seconds=3600, prediction_log_url=url)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        for day in AS_OF:
            body = {"ticker": "^GSPC", "history": history_rows(80, end=day)}
            assert client.post("/v1/predictions", json=body).status_code == 200
    return url


def monitor(registry: Registry, url: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    args = ["-q", "monitor", "--data-dir", str(registry.data_dir), "--log-url", url,
            "--set", f"tracking.tracking_uri={registry.tracking_uri}", "--json"]  # fmt: skip
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_monitor_resolves_scores_and_is_idempotent(
    registry: Registry, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = monitor(registry, served, capsys)
    assert first["logged_total"] == len(AS_OF)
    assert first["resolved_total"] == first["newly_resolved"] == len(AS_OF) - 1
    assert first["unresolved"] == 1
    (version,) = first["versions"]
    assert version["model_version"] == registry.result.model_version
    assert version["resolved"] == len(AS_OF) - 1
    assert set(version["coverage"]) == set(version["kupiec_pvalue"]) == {"0.5", "0.8", "0.9"}

    # The same figures computed here, straight from the log and the bundled closes.
    close = SampleSource().load("^GSPC")["close"]
    rows = [r for r in read_log(served) if r["target_date"].isoformat() < "2019-01-01"]
    actual = np.array([close.loc[str(r["target_date"])] for r in rows])
    last = np.array([r["last_close"] for r in rows])
    predicted = np.array([r["predicted_close"] for r in rows])
    assert version["mae"] == pytest.approx(np.mean(np.abs(predicted - actual)))
    assert version["naive_mae"] == pytest.approx(np.mean(np.abs(last - actual)))
    lower = np.array([r["quantiles"]["0.1"] for r in rows])
    upper = np.array([r["quantiles"]["0.9"] for r in rows])
    inside = (actual >= lower) & (actual <= upper)
    assert version["coverage"]["0.8"] == pytest.approx(inside.mean())
    assert version["tickers"]["^GSPC"]["250"]["resolved"] == len(rows)

    # Twice changes nothing: no outcome is added, the figures are the same.
    second = monitor(registry, served, capsys)
    assert second["newly_resolved"] == 0
    assert second["resolved_total"] == first["resolved_total"]
    assert second["versions"][0]["windows"] == first["versions"][0]["windows"]
    engine = create_engine(served)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outcomes)).scalar() == len(rows)
        stored = conn.execute(select(live_scores).where(live_scores.c.ticker == "*",
                                                        live_scores.c.method == "*",
                                                        live_scores.c.window == 250)).all()  # fmt: skip
        methods = conn.execute(select(live_scores.c.method).where(
            live_scores.c.ticker == "*", live_scores.c.window == 250)).scalars().all()  # fmt: skip
    engine.dispose()
    assert len(stored) == 2  # one row per run
    assert sorted(methods) == ["*", "*", "lstm", "lstm"]  # and one per serving method
    assert json.loads(stored[-1].coverage)["0.8"] == pytest.approx(inside.mean())

    # MLflow: a monitoring run per invocation, the latest figures on the model version.
    client = MlflowClient(registry.tracking_uri)
    experiment = client.get_experiment_by_name("forecaster-monitoring")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert second["mlflow_run_id"] in {r.info.run_id for r in runs}
    tags = client.get_model_version("stock-lstm", str(registry.result.model_version)).tags
    assert float(tags["live_resolved"]) == len(rows)
    assert float(tags["live_coverage_0.8"]) == pytest.approx(inside.mean(), abs=1e-5)


def test_monitor_without_a_log_is_one_line(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["-q", "monitor", "--data-dir", str(registry.data_dir), "--log-url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"forecaster: error: no prediction log at {url}: serve forecasts first, or pass --log-url"
    )
    assert not (tmp_path / "none.db").exists()


def test_replay_the_last_quarter_then_monitor_it(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The offline loop of the README: replay Q4 2018 from the champion, score it."""
    url = f"sqlite:///{tmp_path / 'replayed.db'}"
    common = ["--data-dir", str(registry.data_dir), "--log-url", url,
              "--set", f"tracking.tracking_uri={registry.tracking_uri}"]  # fmt: skip
    assert main(["-q", "replay", "--start", "2018-10-01", "--end", "2018-12-31", "--ticker",
                 "^GSPC", *common, "--json"]) == 0  # fmt: skip
    replayed = json.loads(capsys.readouterr().out)
    sessions = SampleSource().load("^GSPC").loc["2018-10-01":"2018-12-31"]
    assert replayed["logged"] == len(sessions) == 63
    assert replayed["model_version"] == registry.result.model_version
    rows = read_log(url)
    assert [r["as_of"] for r in rows] == [d.date() for d in sessions.index]
    assert all(r["history_source"] == "replay" and len(r["quantiles"]) == 7 for r in rows)

    # The replayed forecast as of a day equals what the API serves from history up to it.
    settings = ServiceSettings(tracking_uri=registry.tracking_uri, data_dir=registry.data_dir,
                               reload_interval_seconds=3600,
                               prediction_log_url=f"sqlite:///{tmp_path / 'api.db'}")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        # History long enough for the same band recalibration the replay's full history gets.
        needed = client.get("/v1/model").json()["history_rows"]["lstm_calibrated"]
        body = {"ticker": "^GSPC", "history": history_rows(needed, end="2018-11-15")}
        served = client.post("/v1/predictions", json=body).json()
    (same_day,) = [r for r in rows if str(r["as_of"]) == "2018-11-15"]
    assert same_day["target_date"].isoformat() == served["target_date"]
    for level, price in served["quantiles"].items():
        assert same_day["quantiles"][level] == pytest.approx(price, rel=1e-6)

    assert main(["-q", "monitor", *common, "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["resolved_total"] == 62  # 2018-12-31's day is not in the sample
    assert scored["versions"][0]["windows"]["20"]["resolved"] == 20
    assert scored["versions"][0]["windows"]["60"]["resolved"] == 60


def test_replay_refuses_an_empty_or_backwards_range(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data-dir", str(registry.data_dir), "--log-url", f"sqlite:///{tmp_path / 'r.db'}",
              "--set", f"tracking.tracking_uri={registry.tracking_uri}"]  # fmt: skip
    assert main(["-q", "replay", "--start", "2018-12-31", "--end", "2018-12-01", *common]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "forecaster: error: --start 2018-12-31 is after --end 2018-12-01"
    )
    assert main(["-q", "replay", "--start", "2019-06-01", "--end", "2019-06-30", *common]) == 1
    assert "no trading day between 2019-06-01 and 2019-06-30" in capsys.readouterr().err
    assert main(["-q", "replay", *common]) == 1
    assert "replay needs --start and --end" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()  # nothing half-written


def test_the_service_reports_the_live_scores(
    registry: Registry, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No monitor run on this log yet: nothing to report, said plainly.
    empty = ServiceSettings(tracking_uri=registry.tracking_uri, data_dir=registry.data_dir,
                            prediction_log_url=f"sqlite:///{tmp_path / 'empty.db'}")  # fmt: skip
    with TestClient(create_app(empty)) as client:
        reply = client.get("/v1/performance")
        assert reply.status_code == 404
        assert reply.json() == {"detail": "no live scores yet: run `forecaster monitor`"}

    scored = monitor(registry, served, capsys)["versions"][0]
    version = scored["model_version"]
    settings = ServiceSettings(tracking_uri=registry.tracking_uri, data_dir=registry.data_dir,
                               prediction_log_url=served)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/performance").json()
        # Every ticker and method, each ticker, each serving method.
        assert {(e["model_version"], e["ticker"], e["method"]) for e in body["entries"]} == {
            (version, "*", "*"), (version, "^GSPC", "*"), (version, "*", "lstm")}  # fmt: skip
        everything = client.get("/v1/performance",
                                params={"version": version, "ticker": "*", "method": "*"})  # fmt: skip
        (entry,) = everything.json()["entries"]
        assert entry["windows"] == scored["windows"]
        by_method = client.get("/v1/performance", params={"method": "lstm"}).json()["entries"]
        assert [e["windows"] for e in by_method] == [scored["methods"]["lstm"]]
        assert client.get("/v1/performance", params={"method": "garch"}).json() == {
            "detail": "no live scores for method garch"}  # fmt: skip
        assert client.get("/v1/performance", params={"method": "arima"}).status_code == 422
        assert client.get("/v1/performance", params={"ticker": "^GSPC"}).status_code == 200
        missing = client.get("/v1/performance", params={"version": "999"})
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no live scores for version 999"}
        assert client.get("/v1/performance", params={"ticker": "no spaces"}).status_code == 422
        metrics = client.get("/metrics").text
    coverage = scored["coverage"]["0.8"]
    for method in ("*", "lstm"):
        assert (
            f'forecaster_live_coverage{{level="0.8",method="{method}",version="{version}"}} '
            f"{coverage}" in metrics
        )
        assert (
            f'forecaster_live_resolved{{method="{method}",version="{version}"}} '
            f"{float(scored['resolved'])}" in metrics
        )
        assert f'forecaster_live_pinball{{method="{method}",version="{version}"}}' in metrics
    assert_promtool_clean(metrics)  # before: forecaster_live_resolved_total, a gauge
