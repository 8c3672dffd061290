"""The prediction log's repository on a real SQLite database: what the monitor stores is what
the service reads back, typed, with the headline window the monitor's configuration chose."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine, text

from forecaster.config import MonitoringConfig
from forecaster.evaluation.monitoring import Resolved, version_reports
from forecaster.predlog import repository
from forecaster.predlog.migrate import _config, open_log, upgrade
from service.live_scores import LiveGauges, LiveScores

BAND = {0.1: 95.0, 0.5: 100.0, 0.9: 105.0}


def _logged(ticker: str, day: str, method: str = "lstm") -> dict[str, object]:
    target = date.fromisoformat(day)
    return {
        "created_at": datetime.now(UTC), "request_id": f"r-{ticker}-{day}", "ticker": ticker,
        "as_of": target, "target_date": target, "model_name": "stock-lstm", "model_version": "2",
        "predicted_close": 100.0, "predicted_return": 0.0, "lower": 95.0, "upper": 105.0,
        "interval_level": 0.8, "last_close": 100.0, "history_source": "server",
        "quantiles": '{"0.1": 95.0, "0.5": 100.0, "0.9": 105.0}', "volatility": 0.02,
        "method": method,
    }  # fmt: skip


def test_logged_forecasts_resolve_once_and_load_typed(tmp_path: Path) -> None:
    engine = open_log(f"sqlite:///{tmp_path / 'log.db'}")
    with engine.begin() as conn:
        repository.append(conn, [_logged("A", "2024-01-02"), _logged("A", "2024-01-03"),
                                 _logged("B", "2024-01-02", "garch")])  # fmt: skip
    closes = {"A": pd.Series([101.0], index=pd.to_datetime(["2024-01-02"]))}
    assert repository.logged_tickers(engine) == ["A", "B"]
    assert repository.count_logged(engine) == 3
    assert repository.resolve(engine, closes) == 1
    assert repository.resolve(engine, closes) == 0  # never resolved twice
    (row,) = repository.load_resolved(engine)
    assert row.ticker == "A"
    assert row.actual_close == 101.0
    assert row.quantiles == BAND
    with engine.begin() as conn:
        assert repository.prune(conn, None, 1) == 2  # keep the newest row only
    assert [r["ticker"] for r in repository.logged(engine)] == ["B"]
    engine.dispose()


def test_stored_scores_read_back_as_the_same_figures_with_the_configured_headline(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = open_log(url)
    rule = MonitoringConfig(windows=(2, 4), headline_window=2, drift_window=4)
    rows = [
        Resolved("stock-lstm", "2", t, date(2024, 1, d), 100.0, 100.0, a, BAND, method=m)
        for t, d, a, m in [("A", 2, 101.0, "lstm"), ("A", 3, 106.0, "lstm"),
                           ("B", 2, 97.0, "garch"), ("B", 3, 104.0, "garch")]
    ]  # fmt: skip
    (report,) = version_reports(rows, rule)
    now = datetime(2024, 1, 4, tzinfo=UTC)
    repository.store_scores(engine, [report], now, rule.headline_window)
    computed_at, stored = repository.latest_scores(engine)
    assert computed_at is not None
    assert computed_at.replace(tzinfo=UTC) == now
    every = {(r.ticker, r.method, r.window): r for r in stored}
    assert every[("*", "*", 2)].figures == report.windows[2]
    assert every[("*", "*", 4)].figures == report.windows[4]
    assert every[("A", "*", 2)].figures == report.tickers["A"][2]
    assert every[("*", "garch", 4)].figures == report.methods["garch"][4]
    assert {k for k, r in every.items() if r.headline} == {
        ("*", "*", 2),
        ("A", "*", 2),
        ("B", "*", 2),
        ("*", "lstm", 2),
        ("*", "garch", 2),
    }
    # The gauges report the configured headline window (2 here), not a constant of their own.
    scores = LiveScores(url)
    registry = CollectorRegistry()
    registry.register(LiveGauges(scores))
    metrics = generate_latest(registry).decode()
    resolved = report.windows[2].resolved
    assert f'forecaster_live_resolved{{method="*",version="2"}} {resolved:.1f}' in metrics
    assert resolved == 2 != report.windows[4].resolved
    scores.close()
    engine.dispose()


def test_scores_stored_before_the_headline_column_keep_250_as_their_headline(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0006")
    old = {"computed_at": datetime.now(UTC), "model_name": "m", "model_version": "1",
           "ticker": "*", "method": "*", "resolved": 3}  # fmt: skip
    with engine.begin() as conn:
        for window in (20, 60, 250):
            conn.execute(
                text("INSERT INTO live_scores (computed_at, model_name, model_version, ticker, "
                     'method, "window", resolved) VALUES (:computed_at, :model_name, '
                     ":model_version, :ticker, :method, :window, :resolved)"),
                {**old, "window": window},
            )  # fmt: skip
    upgrade(engine)
    _, stored = repository.latest_scores(engine)
    assert {r.window: r.headline for r in stored} == {20: False, 60: False, 250: True}
    engine.dispose()


def test_a_headline_outside_the_windows_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="headline_window 30 must be one of windows"):
        MonitoringConfig(windows=(20, 60), headline_window=30, drift_window=60)
