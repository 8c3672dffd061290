"""The prediction log's reads and writes: the one module that speaks SQL to its tables.

The service's writer appends and prunes served forecasts, `forecaster replay` appends a
back-filled range, `forecaster monitor` resolves outcomes and stores live scores, and the
service reads the latest scores back. Each function takes an open engine or connection; opening
and migrating the database is `forecaster.predlog.migrate`'s job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from forecaster.evaluation.monitoring import Resolved, VersionReport, WindowFigures
from forecaster.predlog.schema import live_scores, outcomes, predictions

logger = logging.getLogger(__name__)

ALL = "*"  # live_scores' ticker and method for "every ticker" / "every serving method"


def append(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Log served forecasts (`QuantileForecast.log_row` plus who asked and who answered)."""
    conn.execute(insert(predictions), list(rows))


def prune(conn: Connection, max_age_days: float | None, max_rows: int | None) -> int:
    """Delete forecasts logged more than `max_age_days` ago and all but the newest `max_rows`;
    returns how many went (their outcomes go with them)."""
    gone = 0
    if max_age_days:
        cutoff = datetime.now(UTC) - timedelta(days=max_age_days)
        gone += conn.execute(delete(predictions).where(predictions.c.created_at < cutoff)).rowcount
    if max_rows:
        top = conn.execute(select(func.max(predictions.c.id))).scalar()
        if top is not None:
            extra = delete(predictions).where(predictions.c.id <= top - max_rows)
            gone += conn.execute(extra).rowcount
    return int(gone or 0)


def logged(engine: Engine) -> list[dict[str, Any]]:
    """Every logged forecast, oldest first, quantiles as served (level -> price; None on rows
    logged before revision 0002)."""
    with engine.connect() as conn:
        result = conn.execute(predictions.select().order_by(predictions.c.id))
        rows = [dict(r._mapping) for r in result]
    for row in rows:
        row["quantiles"] = json.loads(row["quantiles"]) if row["quantiles"] else None
    return rows


def logged_tickers(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(predictions.c.ticker).distinct()).scalars())


def count_logged(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())


def resolve(engine: Engine, closes: Mapping[str, pd.Series]) -> int:
    """Store the realised close of every logged forecast whose target day has one; returns how
    many were resolved now (a resolved forecast is never looked at again)."""
    pending = (
        select(predictions.c.id, predictions.c.ticker, predictions.c.target_date)
        .outerjoin(outcomes, outcomes.c.prediction_id == predictions.c.id)
        .where(outcomes.c.prediction_id.is_(None))
    )
    with engine.connect() as conn:
        rows = conn.execute(pending).all()
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


def load_resolved(engine: Engine) -> list[Resolved]:
    """Every forecast with its realised close, by target day (oldest first)."""
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


@dataclass(frozen=True)
class ScoreRow:
    """One stored window of one version's live scores."""

    model_name: str
    model_version: str
    ticker: str  # ALL: every ticker
    window: int
    figures: WindowFigures
    drift_reason: str | None = None  # set on the (ALL, ALL) rows only
    method: str = ALL  # the serving method scored
    headline: bool = False  # the window the monitor's headline figures report


def store_scores(
    engine: Engine, reports: Sequence[VersionReport], now: datetime, headline: int
) -> None:
    """One row per version, scope (all, each ticker, each serving method) and window."""
    records = []
    for report in reports:
        scopes = {(ALL, ALL): report.windows}
        scopes.update({(t, ALL): w for t, w in report.tickers.items()})
        scopes.update({(ALL, m): w for m, w in report.methods.items()})
        for (ticker, method), windows in scopes.items():
            for window, figures in windows.items():
                records.append(
                    {
                        "computed_at": now,
                        "model_name": report.model_name,
                        "model_version": report.model_version,
                        "ticker": ticker,
                        "method": method,
                        "window": window,
                        "headline": window == headline,
                        "resolved": figures.resolved,
                        "mae": figures.mae,
                        "naive_mae": figures.naive_mae,
                        "pinball": figures.pinball,
                        "naive_pinball": figures.naive_pinball,
                        "drift_reason": (
                            report.drift_reason if (ticker, method) == (ALL, ALL) else None
                        ),
                        "coverage": json.dumps(dict(figures.coverage)),
                        "kupiec_pvalue": json.dumps(dict(figures.kupiec_pvalue)),
                    }
                )
    if records:
        with engine.begin() as conn:
            conn.execute(insert(live_scores), records)


def latest_scores(engine: Engine) -> tuple[datetime | None, list[ScoreRow]]:
    """What the latest monitor run stored, and when (None and no rows: none has run)."""
    latest = select(func.max(live_scores.c.computed_at)).scalar_subquery()
    with engine.connect() as conn:
        rows = conn.execute(select(live_scores).where(live_scores.c.computed_at == latest)).all()
    scores = [
        ScoreRow(
            model_name=r.model_name,
            model_version=r.model_version,
            ticker=r.ticker,
            window=r.window,
            figures=WindowFigures(
                resolved=r.resolved,
                mae=r.mae,
                naive_mae=r.naive_mae,
                pinball=r.pinball,
                naive_pinball=r.naive_pinball,
                coverage=json.loads(r.coverage or "{}"),
                kupiec_pvalue=json.loads(r.kupiec_pvalue or "{}"),
            ),
            drift_reason=r.drift_reason,
            method=r.method,
            headline=bool(r.headline),
        )
        for r in rows
    ]
    return (rows[0].computed_at if rows else None), scores
