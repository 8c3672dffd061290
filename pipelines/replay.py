"""`forecaster replay`: the forecasts a served model would have given on past days, logged as
the service logs them, so the monitoring loop can be seen end to end on historical data.

Each as-of day's forecast uses only the history up to that day: the model's all-days mode
builds every window from its own past (the features are causal and the scaler is fixed).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from forecaster.calendar import TradingCalendar
from forecaster.config import ForecasterConfig, level_key
from forecaster.errors import DataError, PredictionLogError, TrackingError
from forecaster.predlog.migrate import open_log, where
from forecaster.predlog.schema import predictions
from forecaster.registry import CHAMPION, model_history_input
from forecaster.sources import load_frames
from forecaster.tracking import check_reachable, resolve_tracking_uri
from pipelines.monitor import default_log_url

logger = logging.getLogger(__name__)


def _version_of(uri: str) -> tuple[str, str]:
    """(model name, version) of a models:/ URI, by alias or number."""
    name, _, ref = uri.removeprefix("models:/").partition("@")
    client = MlflowClient()
    if ref:
        return name, str(client.get_model_version_by_alias(name, ref).version)
    name, _, number = name.partition("/")
    return name, number


def run_replay(
    config: ForecasterConfig,
    start: date,
    end: date,
    model_uri: str | None = None,
    log_url: str | None = None,
) -> dict[str, Any]:
    if start > end:
        raise DataError(f"--start {start} is after --end {end}")
    uri = model_uri or f"models:/{config.tracking.model_name}@{CHAMPION}"
    if not uri.startswith("models:/"):
        raise DataError(f"--model-uri {uri}: replay logs a registered model, use models:/NAME/N")
    tracking_uri = resolve_tracking_uri(config)
    check_reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        name, version = _version_of(uri)
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        first = str(exc.message).strip().splitlines()
        raise TrackingError(
            f"cannot load model {uri} from {tracking_uri}: {first[0] if first else exc} "
            "(train one with 'forecaster train', or pass --model-uri)"
        ) from exc
    calendar = TradingCalendar()
    now = datetime.now(UTC)
    records: list[dict[str, Any]] = []
    per_ticker: dict[str, int] = {}
    for ticker, frame in load_frames(config.data).items():
        history = frame.loc[: pd.Timestamp(end)]
        out = model.predict(model_history_input(history, ticker), params={"all_days": True})
        days = pd.to_datetime(out["as_of"])
        chosen = out[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]
        if chosen.empty:
            raise DataError(
                f"{ticker}: no trading day between {start} and {end} with enough history "
                "before it in the source data"
            )
        levels = sorted(float(str(c)[1:]) for c in out.columns if str(c).startswith("q"))
        for row in chosen.to_dict("records"):
            as_of = pd.Timestamp(row["as_of"]).date()
            last = float(row["last_close"])
            quantiles = {
                level_key(lv): last * math.exp(float(row[f"q{level_key(lv)}"])) for lv in levels
            }
            records.append(
                {
                    "created_at": now,
                    "request_id": f"replay-{uuid.uuid4().hex[:16]}",
                    "ticker": ticker,
                    "as_of": as_of,
                    "target_date": calendar.next_session(as_of),
                    "model_name": name,
                    "model_version": version,
                    "predicted_close": float(row["predicted_close"]),
                    "predicted_return": float(row["predicted_return"]),
                    "lower": float(row["lower"]),
                    "upper": float(row["upper"]),
                    "interval_level": float(row["interval_level"]),
                    "last_close": last,
                    "history_source": "replay",
                    "quantiles": json.dumps(quantiles),
                    "volatility": float(row["volatility"]),
                }
            )
        per_ticker[ticker] = len(chosen)
    url = log_url or default_log_url(config)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = open_log(url)
    try:
        with engine.begin() as conn:  # all or nothing: no half-replayed range
            conn.execute(insert(predictions), records)
    except SQLAlchemyError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise PredictionLogError(f"prediction log {where(url)}: {reason}") from exc
    finally:
        engine.dispose()
    logger.info("replayed %d forecast(s) of %s v%s into %s", len(records), name, version, url)
    return {
        "log_url": url,
        "model_uri": uri,
        "model_name": name,
        "model_version": version,
        "start": str(start),
        "end": str(end),
        "logged": len(records),
        "tickers": per_ticker,
    }


def replay_text(payload: dict[str, Any]) -> str:
    per = ", ".join(f"{t} {n}" for t, n in payload["tickers"].items())
    return (
        f"logged {payload['logged']} forecast(s) of {payload['model_name']} "
        f"v{payload['model_version']} as of {payload['start']}..{payload['end']} ({per}) "
        f"into {payload['log_url']}; score them with: forecaster monitor"
    )
