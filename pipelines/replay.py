"""`forecaster replay`: the forecasts a served model would have given on past days, logged as
the service logs them, so the monitoring loop can be seen end to end on historical data.

Each as-of day's forecast uses only the history up to that day. In process, the model's
all-days mode builds every window from its own past (the features are causal and the scaler
is fixed). With `--url`, a running service is asked once per day, with the history up to that
day in the request, and logs the forecasts itself.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from forecaster.config import ForecasterConfig
from forecaster.data.calendar import TradingCalendar
from forecaster.data.schemas import OHLCV_COLUMNS
from forecaster.data.sources import load_frames
from forecaster.errors import DataError, PredictionLogError, ServiceRequestError, first_line
from forecaster.local_state import shown_url
from forecaster.methods import NETWORK, Bars
from forecaster.predlog import repository
from forecaster.predlog.migrate import open_log
from forecaster.quantile_forecast import QuantileForecast, quantile_column
from forecaster.registry.loader import CHAMPION, load_registered
from forecaster.registry.tracking import check_reachable, resolve_tracking_uri
from pipelines.monitor import default_log_url

logger = logging.getLogger(__name__)


def _no_days(ticker: str, start: date, end: date) -> DataError:
    return DataError(
        f"{ticker}: no trading day between {start} and {end} with enough history before it "
        "in the source data"
    )


def run_replay(
    config: ForecasterConfig,
    start: date,
    end: date,
    model_uri: str | None = None,
    log_url: str | None = None,
    service_url: str | None = None,
) -> dict[str, Any]:
    if start > end:
        raise DataError(f"--start {start} is after --end {end}")
    if service_url is not None:
        if model_uri is not None or log_url is not None:
            raise DataError(
                "--url asks a running service, which serves its own model and writes its own "
                "log: drop --model-uri and --log-url"
            )
        return _replay_via_service(config, start, end, service_url)
    uri = model_uri or f"models:/{config.tracking.model_name}@{CHAMPION}"
    tracking_uri = resolve_tracking_uri(config)
    check_reachable(tracking_uri)
    registered = load_registered(uri, tracking_uri)
    name, version, forecaster = registered.name, registered.version, registered.forecaster
    calendar = TradingCalendar()
    now = datetime.now(UTC)
    records: list[dict[str, Any]] = []
    per_ticker: dict[str, int] = {}
    for ticker, frame in load_frames(config.data).items():
        history = frame.loc[: pd.Timestamp(end)]
        out = forecaster.predict_all(history, ticker)
        days = pd.to_datetime(out["as_of"])
        chosen = out[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]
        if chosen.empty:
            raise _no_days(ticker, start, end)
        route = forecaster.route_for(ticker)
        method = NETWORK if route is None else route.method
        if method != NETWORK:  # as the API serves it: the baseline from the history up to each day
            bars, dates = Bars.of_frame(history), history.index.to_numpy()
            as_of = pd.DatetimeIndex(pd.to_datetime(chosen["as_of"]))
            upto = history.index.get_indexer(as_of) + 1
            served = [
                forecaster.baseline_forecast(ticker, method, bars.head(n), dates[:n]) for n in upto
            ]
            method = served[0].method
            chosen = forecaster.rows(
                ticker, as_of, chosen["last_close"].to_numpy(),
                np.stack([f.quantiles for f in served]),
            )  # fmt: skip
        bundle = forecaster.bundle
        columns = [quantile_column(lv) for lv in bundle.quantiles]
        for row in chosen.to_dict("records"):
            as_of = pd.Timestamp(row["as_of"]).date()
            forecast = QuantileForecast(
                bundle.quantiles, np.array([float(row[c]) for c in columns]),
                float(row["last_close"]), as_of, calendar.next_session(as_of),
            )  # fmt: skip
            records.append(
                {
                    "created_at": now,
                    "request_id": f"replay-{uuid.uuid4().hex[:16]}",
                    "ticker": ticker,
                    "model_name": name,
                    "model_version": version,
                    "history_source": "replay",
                    "method": method,
                    **forecast.log_row(bundle.interval_level),
                }
            )
        per_ticker[ticker] = len(chosen)
    url = default_log_url(config, log_url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = open_log(url)
    try:
        with engine.begin() as conn:  # all or nothing: no half-replayed range
            repository.append(conn, records)
    except SQLAlchemyError as exc:
        raise PredictionLogError(f"prediction log {shown_url(url)}: {first_line(exc)}") from exc
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


class _Service:
    """A forecaster API at `base`, as a client sees it; every failure is one line."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        self.base = base.rstrip("/")
        if not self.base.startswith(("http://", "https://")):
            raise DataError(f"--url {base}: give the service's address, e.g. http://127.0.0.1:8000")
        self.client = httpx.Client(base_url=self.base, timeout=timeout)

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            reply = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceRequestError(
                f"cannot reach the service at {self.base} ({type(exc).__name__}: {exc}); "
                "start it with 'forecaster serve' or check --url"
            ) from exc
        try:
            body = reply.json()
        except ValueError:
            body = None
        if reply.status_code != 200 or not isinstance(body, dict):
            detail = body.get("detail") if isinstance(body, dict) else reply.text[:200]
            raise ServiceRequestError(
                f"{self.base}: {method} {path} {what} answered {reply.status_code}: {detail}"
            )
        return body

    def close(self) -> None:
        self.client.close()


def _history_body(ticker: str, frame: pd.DataFrame) -> dict[str, Any]:
    rows = [
        {
            "date": day.date().isoformat(),
            **{c: float(v) for c, v in zip(OHLCV_COLUMNS, values, strict=True)},
        }
        for day, values in zip(frame.index, frame[list(OHLCV_COLUMNS)].to_numpy(), strict=True)
    ]
    return {"ticker": ticker, "history": rows}


def _replay_via_service(
    config: ForecasterConfig, start: date, end: date, url: str
) -> dict[str, Any]:
    """One request per as-of day, with the shortest history that gets the served model's full
    forecast up to it (its window, and the outcomes that recalibrate its bands): the service
    logs each forecast as it logs any client's."""
    service = _Service(url)
    try:
        info = service.call("GET", "/v1/model", "(the served model)")
        needed = int(info["min_history"])
        calibrated = (info.get("history_rows") or {}).get("lstm_calibrated")
        frames = load_frames(config.data)
        versions: dict[str, int] = {}
        per_ticker: dict[str, int] = {}
        for ticker, frame in frames.items():
            history = frame.loc[: pd.Timestamp(end)]
            days = [i for i, day in enumerate(history.index)
                    if day >= pd.Timestamp(start) and i + 1 >= needed]  # fmt: skip
            if not days:
                raise _no_days(ticker, start, end)
            for i in days:
                first = max(0, i + 1 - max(needed, int(calibrated or 0)))
                body = _history_body(ticker, history.iloc[first : i + 1])
                as_of = history.index[i].date()
                served = service.call("POST", "/v1/predictions", f"for {ticker} as of {as_of}",
                                      json=body)  # fmt: skip
                version = str(served["model"]["version"])
                versions[version] = versions.get(version, 0) + 1
            per_ticker[ticker] = len(days)
    finally:
        service.close()
    logged = sum(per_ticker.values())
    logger.info("replayed %d forecast(s) through %s", logged, service.base)
    return {
        "log_url": f"the prediction log of {service.base}",
        "service_url": service.base,
        "model_uri": None,
        "model_name": info["name"],
        # A promotion during the replay is served from that day on: say which version did what.
        "model_version": ",".join(versions),
        "versions": versions,
        "start": str(start),
        "end": str(end),
        "logged": logged,
        "tickers": per_ticker,
    }


def replay_text(payload: dict[str, Any]) -> str:
    per = ", ".join(f"{t} {n}" for t, n in payload["tickers"].items())
    monitor = "forecaster monitor"
    if payload.get("service_url"):
        monitor += " --log-url <the service's FORECASTER_PREDICTION_LOG_URL>"
    return (
        f"logged {payload['logged']} forecast(s) of {payload['model_name']} "
        f"v{payload['model_version']} as of {payload['start']}..{payload['end']} ({per}) "
        f"into {payload['log_url']}; score them with: {monitor}"
    )
