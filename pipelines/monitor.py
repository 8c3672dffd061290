"""`forecaster monitor`: score the forecasts the service actually served against what happened.

Each logged prediction whose target day has a close in the configured source gets one outcome
(idempotent: a resolved prediction is never looked at again). Then, per model version and per
ticker, over the last 20, 60 and 250 resolved forecasts: MAE next to naive persistence on the
same days, mean pinball loss, and coverage of every served interval with Kupiec's p-value.
Figures go to the log's database, to an MLflow run and to tags on the model version.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from forecaster import scores
from forecaster.config import ForecasterConfig, level_key
from forecaster.errors import DataError, PredictionLogError, TrackingError, first_line
from forecaster.forecasters.naive import MIN_RETURNS, empirical_quantiles
from forecaster.levels import interval_columns
from forecaster.local_state import prediction_log, shown_url
from forecaster.predlog.migrate import open_log
from forecaster.predlog.schema import (
    HEADLINE_WINDOW,
    LIVE_WINDOWS,
    live_scores,
    outcomes,
    predictions,
)
from forecaster.schemas import CLOSE
from forecaster.sources import clip_dates, make_source
from forecaster.tracking import setup_tracking

logger = logging.getLogger(__name__)

WINDOWS = LIVE_WINDOWS
HEADLINE = HEADLINE_WINDOW
INTERVALS = (0.5, 0.8, 0.9)


@dataclass(frozen=True)
class Resolved:
    """One served forecast and the close that followed."""

    model_name: str
    model_version: str
    ticker: str
    target_date: date
    last_close: float
    predicted_close: float
    actual_close: float
    quantiles: dict[float, float] | None  # level -> price; None if logged before 0002
    # The empirical random walk's quantiles for the same day at the same levels (price): the
    # baseline the live pinball is compared with. None where its history is not available.
    naive_quantiles: dict[float, float] | None = None
    as_of: date | None = None  # the last day of the history the forecast was made from
    # The forecaster that answered (lstm, garch, naive); rows logged before revision 0005 were
    # all the network's.
    method: str = "lstm"


def default_log_url(config: ForecasterConfig, given: str | None = None) -> str:
    """`given`, else $FORECASTER_PREDICTION_LOG_URL, else the data directory's SQLite log."""
    return prediction_log(config.data.data_dir, given)


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def window_scores(rows: Sequence[Resolved]) -> dict[str, Any]:
    """Scores of these resolved forecasts (pure: hand-made rows in, numbers out)."""
    n = len(rows)
    out: dict[str, Any] = {"resolved": n, "mae": None, "naive_mae": None, "pinball": None,
                           "naive_pinball": None, "coverage": {}, "kupiec_pvalue": {}}  # fmt: skip
    if n == 0:
        return out
    actual = np.array([r.actual_close for r in rows])
    out["mae"] = float(np.mean(np.abs(np.array([r.predicted_close for r in rows]) - actual)))
    out["naive_mae"] = float(np.mean(np.abs(np.array([r.last_close for r in rows]) - actual)))
    # Distribution scores on the forecasts that logged quantiles, at the levels they all share.
    with_q = [r for r in rows if r.quantiles]
    if not with_q:
        return out
    levels = sorted(set.intersection(*(set(r.quantiles or {}) for r in with_q)))
    if not levels:
        return out
    last = np.array([r.last_close for r in with_q])
    y = np.log(np.array([r.actual_close for r in with_q]) / last)
    q = np.log(
        np.array([[(r.quantiles or {})[lv] for lv in levels] for r in with_q]) / last[:, None]
    )
    out["pinball"] = float(scores.pinball(q, y, levels).mean())
    if all(r.naive_quantiles and all(lv in r.naive_quantiles for lv in levels) for r in with_q):
        naive = np.array([[(r.naive_quantiles or {})[lv] for lv in levels] for r in with_q])
        out["naive_pinball"] = float(
            scores.pinball(np.log(naive / last[:, None]), y, levels).mean()
        )
    for coverage in INTERVALS:
        try:
            lo, hi = interval_columns(levels, coverage)
        except ValueError:
            continue  # the model did not serve this interval
        hits = scores.violations(q[:, lo], q[:, hi], y)
        out["coverage"][level_key(coverage)] = float(1.0 - hits.mean())
        out["kupiec_pvalue"][level_key(coverage)] = _nan_to_none(
            scores.kupiec_pvalue(hits, coverage)
        )
    return out


DRIFT_WINDOW = 60
DRIFT_KUPIEC_ALPHA = 0.01


def drift_reason(report: dict[str, Any]) -> str | None:
    """Why a version's live record calls for a retrain, or None (pure). Judged on its last 60
    resolved forecasts, and only once there are 60: the 80% interval failing Kupiec at 1%, or
    a pinball loss above the naive random walk's on the same days."""
    figures = report["windows"].get(str(DRIFT_WINDOW))
    if figures is None or figures["resolved"] < DRIFT_WINDOW:
        return None
    version = f"v{report['model_version']}"
    p = figures["kupiec_pvalue"].get("0.8")
    if p is not None and p < DRIFT_KUPIEC_ALPHA:
        return (
            f"{version}'s 80% interval covered {100 * figures['coverage']['0.8']:.1f}% of the "
            f"last {DRIFT_WINDOW} resolved forecasts (Kupiec p {p:.3g} < {DRIFT_KUPIEC_ALPHA})"
        )
    ours, naive = figures["pinball"], figures.get("naive_pinball")
    if ours is not None and naive is not None and ours > naive:
        return (
            f"{version}'s live pinball {1e4 * ours:.2f} bp is worse than the naive random walk's "
            f"{1e4 * naive:.2f} bp over the same last {DRIFT_WINDOW} resolved forecasts"
        )
    return None


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


def resolve(engine: Engine, closes: dict[str, pd.Series]) -> int:
    """Store the realised close of every logged forecast whose target day has one."""
    pending = (
        select(predictions.c.id, predictions.c.ticker, predictions.c.target_date)
        .outerjoin(outcomes, outcomes.c.prediction_id == predictions.c.id)
        .where(outcomes.c.prediction_id.is_(None))
    )
    with engine.connect() as conn:
        rows = conn.execute(pending).all()
    if not rows:
        return 0
    now = datetime.now(UTC)
    found = []
    for row in rows:
        series = closes.get(row.ticker)
        day = pd.Timestamp(row.target_date)
        if series is not None and day in series.index:
            found.append({"prediction_id": row.id, "actual_close": float(series.loc[day]),
                          "resolved_at": now})  # fmt: skip
    if found:
        try:
            with engine.begin() as conn:
                conn.execute(insert(outcomes), found)
        except IntegrityError:
            # Another monitor resolved some of them meanwhile: the next run picks up the rest.
            logger.warning("another monitor run resolved forecasts at the same time; skipped")
            return 0
    return len(found)


def naive_quantiles(
    closes: pd.Series, as_of: date, levels: Sequence[float], window: int
) -> dict[float, float] | None:
    """The random walk's quantiles (price) as of a day, from the trailing `window` daily log
    returns up to it, as the backtest's naive baseline computes them."""
    past = closes.loc[: pd.Timestamp(as_of)].to_numpy()
    trailing = np.diff(np.log(past))[-window:]
    if len(trailing) < MIN_RETURNS:
        return None
    last = float(past[-1])
    q = empirical_quantiles(trailing, levels)
    return {float(lv): last * float(np.exp(v)) for lv, v in zip(levels, q, strict=True)}


def load_resolved(engine: Engine) -> list[Resolved]:
    query = (
        select(predictions, outcomes.c.actual_close)
        .join(outcomes, outcomes.c.prediction_id == predictions.c.id)
        .order_by(predictions.c.target_date, predictions.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        Resolved(
            model_name=r.model_name,
            model_version=r.model_version,
            ticker=r.ticker,
            target_date=r.target_date,
            as_of=r.as_of,
            last_close=r.last_close,
            predicted_close=r.predicted_close,
            actual_close=r.actual_close,
            quantiles=(
                {float(k): float(v) for k, v in json.loads(r.quantiles).items()}
                if r.quantiles
                else None
            ),
            method=r.method or "lstm",
        )
        for r in rows
    ]


def with_naive(
    rows: Sequence[Resolved], closes: dict[str, pd.Series], window: int
) -> list[Resolved]:
    """Each resolved forecast with the naive random walk's quantiles for its day."""
    out = []
    for row in rows:
        series = closes.get(row.ticker)
        if row.quantiles and series is not None:
            as_of = row.as_of or calendar_as_of(series, row.target_date)
            naive = naive_quantiles(series, as_of, sorted(row.quantiles), window) if as_of else None
            row = replace(row, naive_quantiles=naive)
        out.append(row)
    return out


def calendar_as_of(closes: pd.Series, target: date) -> date | None:
    """The last trading day before the target day in the source's own calendar."""
    before = closes.index[closes.index < pd.Timestamp(target)]
    return before[-1].date() if len(before) else None


def _windows(rows: Sequence[Resolved]) -> dict[str, dict[str, Any]]:
    return {str(w): window_scores(rows[-w:]) for w in WINDOWS}


def version_reports(rows: Sequence[Resolved]) -> list[dict[str, Any]]:
    """Per model version: the headline window's figures at the top level, every window, and
    the headline window per ticker."""
    by_version: dict[tuple[str, str], list[Resolved]] = defaultdict(list)
    for row in rows:
        by_version[(row.model_name, row.model_version)].append(row)
    reports = []
    for (name, version), own in sorted(by_version.items(), key=lambda kv: _version_key(kv[0][1])):
        by_ticker: dict[str, list[Resolved]] = defaultdict(list)
        by_method: dict[str, list[Resolved]] = defaultdict(list)
        for row in own:
            by_ticker[row.ticker].append(row)
            by_method[row.method].append(row)
        windows = _windows(own)
        reports.append(
            {
                "model_name": name,
                "model_version": version,
                **windows[str(HEADLINE)],
                "resolved": len(own),
                "windows": windows,
                "tickers": {t: _windows(r) for t, r in sorted(by_ticker.items())},
                # Live skill of each serving method, and the method each ticker got last.
                "methods": {m: _windows(r) for m, r in sorted(by_method.items())},
                "ticker_methods": {t: r[-1].method for t, r in sorted(by_ticker.items())},
            }
        )
        reports[-1]["drift_reason"] = drift_reason(reports[-1])
    return reports


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 30, version)


def _store(engine: Engine, reports: Sequence[dict[str, Any]], now: datetime) -> None:
    records = []
    for report in reports:
        # Every ticker and method, each ticker, each serving method ("*" = all of them).
        scopes = {("*", "*"): report["windows"]}
        scopes.update({(t, "*"): w for t, w in report["tickers"].items()})
        scopes.update({("*", m): w for m, w in report.get("methods", {}).items()})
        for (ticker, method), windows in scopes.items():
            for window, figures in windows.items():
                records.append(
                    {
                        "computed_at": now,
                        "model_name": report["model_name"],
                        "model_version": report["model_version"],
                        "ticker": ticker,
                        "method": method,
                        "window": int(window),
                        "resolved": figures["resolved"],
                        "mae": figures["mae"],
                        "naive_mae": figures["naive_mae"],
                        "pinball": figures["pinball"],
                        "naive_pinball": figures["naive_pinball"],
                        "drift_reason": report["drift_reason"]
                        if scope_all(ticker, method)
                        else None,
                        "coverage": json.dumps(figures["coverage"]),
                        "kupiec_pvalue": json.dumps(figures["kupiec_pvalue"]),
                    }
                )
    if records:
        with engine.begin() as conn:
            conn.execute(insert(live_scores), records)


def scope_all(ticker: str, method: str) -> bool:
    return ticker == "*" and method == "*"


def _flat(report: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics / version tags of one version's headline window."""
    out = {"resolved": float(report["resolved"])}
    for key in ("mae", "naive_mae", "pinball", "naive_pinball"):
        if report[key] is not None:
            out[key] = float(report[key])
    for key in ("coverage", "kupiec_pvalue"):
        for level, value in report[key].items():
            if value is not None:
                out[f"{key}_{level}"] = float(value)
    return out


def _track(config: ForecasterConfig, payload: dict[str, Any]) -> str | None:
    """One run per invocation in the monitoring experiment; the latest figures as tags on each
    model version. Best effort: the scores are already in the database."""
    try:
        experiment_id = setup_tracking(config, f"{config.tracking.experiment}-monitoring")
        with mlflow.start_run(experiment_id=experiment_id, run_name="monitor") as run:
            mlflow.log_metrics({"resolved_total": payload["resolved_total"],
                                "newly_resolved": payload["newly_resolved"]})  # fmt: skip
            for report in payload["versions"]:
                prefix = f"v{report['model_version']}_"
                mlflow.log_metrics({prefix + k: v for k, v in _flat(report).items()})
            mlflow.log_dict(payload, "monitor.json")
            run_id = str(run.info.run_id)
        client = MlflowClient()
        for report in payload["versions"]:
            tags = {f"live_{k}": f"{v:.6g}" for k, v in _flat(report).items()}
            tags["live_updated"] = payload["computed_at"]
            try:
                for key, value in tags.items():
                    client.set_model_version_tag(report["model_name"], report["model_version"],
                                                 key, value)  # fmt: skip
            except MlflowException as exc:
                logger.warning("no tags on %s v%s: %s", report["model_name"],
                               report["model_version"], exc.message)  # fmt: skip
        return run_id
    except (MlflowException, TrackingError) as exc:
        logger.warning("monitoring figures not tracked in MLflow: %s", exc)
        return None


def run_monitor(config: ForecasterConfig, log_url: str | None = None) -> dict[str, Any]:
    url = default_log_url(config, log_url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise DataError(f"no prediction log at {url}: serve forecasts first, or pass --log-url")
    engine = open_log(url)
    try:
        with engine.connect() as conn:
            tickers = sorted(conn.execute(select(predictions.c.ticker).distinct()).scalars())
        closes = _closes(config, tickers)
        newly = resolve(engine, closes)
        rows = with_naive(load_resolved(engine), closes, config.evaluation.naive_window)
        with engine.connect() as conn:
            logged = int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())
        now = datetime.now(UTC)
        reports = version_reports(rows)
        _store(engine, reports, now)
    except SQLAlchemyError as exc:  # the database went away or refused a statement mid-run
        raise PredictionLogError(f"prediction log {shown_url(url)}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    payload: dict[str, Any] = {
        "log_url": url,
        "computed_at": now.isoformat(timespec="seconds"),
        "logged_total": logged,
        "resolved_total": len(rows),
        "newly_resolved": newly,
        "unresolved": logged - len(rows),
        "windows": list(WINDOWS),
        "versions": reports,
    }
    payload["mlflow_run_id"] = _track(config, payload)
    return payload


def monitor_text(payload: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def num(value: float | None, scale: float = 1.0, fmt: str = ".3f") -> str:
        return "-" if value is None else format(value * scale, fmt)

    lines = [
        f"prediction log {payload['log_url']}: {payload['logged_total']} forecasts, "
        f"{payload['resolved_total']} resolved ({payload['newly_resolved']} new), "
        f"{payload['unresolved']} waiting for their day"
    ]
    for r in payload["versions"]:
        coverage = ", ".join(
            f"{float(k):.0%} {pct(v)} (Kupiec p {num(r['kupiec_pvalue'].get(k), fmt='.3g')})"
            for k, v in r["coverage"].items()
        )
        lines.append(
            f"{r['model_name']} v{r['model_version']}: last {min(r['resolved'], HEADLINE)} of "
            f"{r['resolved']} resolved: MAE {num(r['mae'])} vs naive {num(r['naive_mae'])}, "
            f"pinball {num(r['pinball'], 1e4, '.3f')} bp vs naive "
            f"{num(r.get('naive_pinball'), 1e4, '.3f')} bp"
            + (f"; coverage {coverage}" if coverage else "")
        )
        for method, windows in r.get("methods", {}).items():
            m = windows[str(HEADLINE)]
            lines.append(
                f"  served by {method}: {m['resolved']} resolved, pinball "
                f"{num(m['pinball'], 1e4, '.3f')} bp vs naive "
                f"{num(m.get('naive_pinball'), 1e4, '.3f')} bp, 80% coverage "
                f"{pct(m['coverage'].get('0.8'))}"
            )
    return "\n".join(lines)
