"""`forecaster monitor`: score the forecasts the service actually served against what happened.

Each logged prediction whose target day has a close in the configured source gets one outcome
(idempotent: a resolved prediction is never looked at again). Then, per model version, ticker
and serving method, over the configured windows (`monitoring.windows`): the scores of
`forecaster.evaluation.monitoring`. Figures go to the log's database, to an MLflow run and to
tags on the model version. This module orchestrates; the scoring is the library's, the SQL the log's
repository's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from forecaster.config import ForecasterConfig
from forecaster.data.schemas import CLOSE
from forecaster.data.sources import clip_dates, make_source
from forecaster.errors import DataError, PredictionLogError, TrackingError, first_line
from forecaster.evaluation.monitoring import (
    VersionReport,
    WindowFigures,
    version_reports,
    with_naive,
)
from forecaster.local_state import prediction_log, shown_url
from forecaster.predlog import repository
from forecaster.predlog.migrate import open_log
from forecaster.registry.tracking import setup_tracking
from forecaster.registry.version_tags import live_tags

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorResult:
    """What one monitor run found and stored."""

    log_url: str
    computed_at: datetime
    logged_total: int
    resolved_total: int
    newly_resolved: int
    windows: tuple[int, ...]
    headline_window: int
    versions: tuple[VersionReport, ...]
    mlflow_run_id: str | None = None

    @property
    def unresolved(self) -> int:
        return self.logged_total - self.resolved_total

    def drift_reason(self, version: str) -> str | None:
        """Why this version's live record calls for a retrain (None: it does not, or it has
        no resolved forecasts)."""
        return next((r.drift_reason for r in self.versions if r.model_version == version), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`forecaster monitor --json`, the run's monitor.json)."""
        return {
            "log_url": self.log_url,
            "computed_at": self.computed_at.isoformat(timespec="seconds"),
            "logged_total": self.logged_total,
            "resolved_total": self.resolved_total,
            "newly_resolved": self.newly_resolved,
            "unresolved": self.unresolved,
            "windows": list(self.windows),
            "versions": [r.as_dict() for r in self.versions],
            "mlflow_run_id": self.mlflow_run_id,
        }


def default_log_url(config: ForecasterConfig, given: str | None = None) -> str:
    """`given`, else $FORECASTER_PREDICTION_LOG_URL, else the data directory's SQLite log."""
    return prediction_log(config.data.data_dir, given)


def _closes(config: ForecasterConfig, tickers: Sequence[str]) -> dict[str, pd.Series]:
    """Realised closes per ticker from the configured source; a ticker it cannot load is left
    unresolved (and said so), never a failure of the whole run."""
    source = make_source(config.data)
    closes = {}
    for ticker in tickers:
        try:
            closes[ticker] = clip_dates(source.load(ticker), config.data)[CLOSE]
        except DataError as exc:
            logger.warning("cannot resolve %s forecasts yet: %s", ticker, exc)
    return closes


def _flat(report: VersionReport) -> dict[str, float]:
    """MLflow metrics / version tags of one version: its resolved total and the headline
    window's figures."""
    headline = report.headline
    out = {"resolved": float(report.resolved)}
    for key, value in (("mae", headline.mae), ("naive_mae", headline.naive_mae),
                       ("pinball", headline.pinball),
                       ("naive_pinball", headline.naive_pinball)):  # fmt: skip
        if value is not None:
            out[key] = float(value)
    for key, figures in (("coverage", headline.coverage),
                         ("kupiec_pvalue", headline.kupiec_pvalue)):  # fmt: skip
        for level, p in figures.items():
            if p is not None:
                out[f"{key}_{level}"] = float(p)
    return out


def _track(config: ForecasterConfig, result: MonitorResult) -> str | None:
    """One run per invocation in the monitoring experiment; the latest figures as tags on each
    model version. Best effort: the scores are already in the database."""
    try:
        experiment_id = setup_tracking(config, f"{config.tracking.experiment}-monitoring")
        with mlflow.start_run(experiment_id=experiment_id, run_name="monitor") as run:
            mlflow.log_metrics({"resolved_total": result.resolved_total,
                                "newly_resolved": result.newly_resolved})  # fmt: skip
            for report in result.versions:
                prefix = f"v{report.model_version}_"
                mlflow.log_metrics({prefix + k: v for k, v in _flat(report).items()})
            payload = result.to_dict()
            payload.pop("mlflow_run_id")  # not known until this run ends
            mlflow.log_dict(payload, "monitor.json")
            run_id = str(run.info.run_id)
        client = MlflowClient()
        for report in result.versions:
            tags = live_tags(_flat(report), payload["computed_at"])
            try:
                for key, value in tags.items():
                    client.set_model_version_tag(report.model_name, report.model_version,
                                                 key, value)  # fmt: skip
            except MlflowException as exc:
                logger.warning("no tags on %s v%s: %s", report.model_name,
                               report.model_version, exc.message)  # fmt: skip
        return run_id
    except (MlflowException, TrackingError) as exc:
        logger.warning("monitoring figures not tracked in MLflow: %s", exc)
        return None


def run_monitor(config: ForecasterConfig, log_url: str | None = None) -> MonitorResult:
    url = default_log_url(config, log_url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise DataError(f"no prediction log at {url}: serve forecasts first, or pass --log-url")
    rule = config.monitoring
    engine = open_log(url)
    try:
        closes = _closes(config, repository.logged_tickers(engine))
        newly = repository.resolve(engine, closes)
        rows = with_naive(repository.load_resolved(engine), closes, config.evaluation.naive_window)
        logged = repository.count_logged(engine)
        now = datetime.now(UTC)
        reports = version_reports(rows, rule)
        repository.store_scores(engine, reports, now, rule.headline_window)
    except SQLAlchemyError as exc:  # the database went away or refused a statement mid-run
        raise PredictionLogError(f"prediction log {shown_url(url)}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    result = MonitorResult(
        log_url=url,
        computed_at=now,
        logged_total=logged,
        resolved_total=len(rows),
        newly_resolved=newly,
        windows=rule.windows,
        headline_window=rule.headline_window,
        versions=tuple(reports),
    )
    return replace(result, mlflow_run_id=_track(config, result))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value * scale, fmt)


def _pinballs(figures: WindowFigures) -> str:
    return (f"pinball {_num(figures.pinball, 1e4)} bp vs naive "
            f"{_num(figures.naive_pinball, 1e4)} bp")  # fmt: skip


def monitor_text(result: MonitorResult) -> str:
    headline = result.headline_window
    lines = [
        f"prediction log {result.log_url}: {result.logged_total} forecasts, "
        f"{result.resolved_total} resolved ({result.newly_resolved} new), "
        f"{result.unresolved} waiting for their day"
    ]
    for r in result.versions:
        h = r.headline
        coverage = ", ".join(
            f"{float(k):.0%} {_pct(v)} (Kupiec p {_num(h.kupiec_pvalue.get(k), fmt='.3g')})"
            for k, v in h.coverage.items()
        )
        lines.append(
            f"{r.model_name} v{r.model_version}: last {min(r.resolved, headline)} of "
            f"{r.resolved} resolved: MAE {_num(h.mae)} vs naive {_num(h.naive_mae)}, "
            + _pinballs(h)
            + (f"; coverage {coverage}" if coverage else "")
        )
        for method, windows in r.methods.items():
            m = windows[headline]
            lines.append(
                f"  served by {method}: {m.resolved} resolved, {_pinballs(m)}, 80% coverage "
                f"{_pct(m.coverage.get('0.8'))}"
            )
    return "\n".join(lines)
