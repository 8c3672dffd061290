from __future__ import annotations

import asyncio
import json
import logging
import math
from datetime import date, timedelta
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from forecaster.config import level_key
from forecaster.errors import DataValidationError, SourceUnavailableError, TickerNotFoundError
from forecaster.inference import implied_volatility
from forecaster.schemas import OHLCV_COLUMNS, FrameMeta, validate_ohlcv, with_meta
from service.body import body_openapi, json_body
from service.deps import Model, State
from service.history import PreparedHistory, prepare
from service.model_store import LoadedModel
from service.schemas import (
    BatchError,
    BatchItem,
    BatchRequest,
    BatchResponse,
    HistoryRow,
    Interval,
    ModelRef,
    PredictionRequest,
    PredictionResponse,
)
from service.state import ServiceState

logger = logging.getLogger(__name__)

router = APIRouter(tags=["predictions"])

# Client dates outside this range are refused: nothing traded before it, and a history cannot
# end after tomorrow (one day of slack for clients ahead of the server's time zone).
EARLIEST_DAY = np.datetime64("1900-01-01", "D")
FUTURE_SLACK_DAYS = 1

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no source knows the ticker"},
    413: {"description": "request body over the size limit"},
    415: {"description": "body is not application/json"},
    422: {"description": "malformed body or unusable history; detail says what to fix"},
    503: {"description": "no model loaded, or the data source is down with no cache"},
}


async def _server_history(state: ServiceState, model: LoadedModel, ticker: str) -> PreparedHistory:
    try:
        return await state.history.prepared(ticker, model.version, model.forecaster)
    except TickerNotFoundError as exc:
        state.metrics.source_errors.labels("not_found").inc()
        raise HTTPException(
            status_code=404,
            detail=f"no server-side history for '{ticker}' ({exc}); send the ticker's daily "
            "history in the request's 'history' field",
        ) from exc
    except SourceUnavailableError as exc:
        state.metrics.source_errors.labels("unavailable").inc()
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    except DataValidationError as exc:
        state.metrics.source_errors.labels("invalid").inc()
        raise HTTPException(status_code=503, detail=f"server data unusable: {exc}") from exc


def _history_frame(rows: list[HistoryRow], ticker: str) -> pd.DataFrame:
    """Client rows as a validated frame; every check names the row (422 on failure)."""
    origin = f"history for {ticker}"
    days = np.array([row.date for row in rows], dtype="datetime64[D]")
    latest = np.datetime64(date.today() + timedelta(days=FUTURE_SLACK_DAYS), "D")
    for mask, problem in ((days < EARLIEST_DAY, f"is before {EARLIEST_DAY}"),
                          (days > latest, "is in the future")):  # fmt: skip
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataValidationError(f"{origin}: row {i}: date {days[i]} {problem}")
    steps = np.diff(days).astype("int64")
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        problem = "duplicates" if steps[i - 1] == 0 else "is before"
        raise DataValidationError(
            f"{origin}: history dates must be strictly increasing: row {i} ({days[i]}) "
            f"{problem} row {i - 1} ({days[i - 1]})"
        )
    columns = {name: np.array([getattr(row, name) for row in rows], dtype="float64")
               for name in OHLCV_COLUMNS}  # fmt: skip
    frame = pd.DataFrame({"date": days.astype("datetime64[ns]"), **columns})
    frame = validate_ohlcv(frame, origin=origin, line_numbers=range(len(rows)), unit="row")
    return with_meta(frame, FrameMeta(ticker=ticker, source="request", adjustment="as_given",
                                      origin=origin))  # fmt: skip


def _client_history(
    state: ServiceState, model: LoadedModel, body: PredictionRequest
) -> PreparedHistory:
    rows = body.history or []
    needed = model.forecaster.bundle.min_history
    if len(rows) > state.settings.max_history_rows:
        raise HTTPException(
            status_code=422,
            detail=f"history has {len(rows)} rows; send at most "
            f"{state.settings.max_history_rows} (the model needs {needed})",
        )
    if len(rows) < needed:
        raise HTTPException(
            status_code=422,
            detail=f"history has {len(rows)} rows; model v{model.version} needs at least "
            f"{needed} consecutive trading days",
        )
    try:
        return prepare(model.forecaster, _history_frame(rows, body.ticker))
    except DataValidationError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


async def predict_one(
    state: ServiceState, model: LoadedModel, body: PredictionRequest, request_id: str
) -> PredictionResponse:
    if body.history is None:
        prepared, source = await _server_history(state, model, body.ticker), "server"
    else:
        # Validation, features and a forward pass in pandas: off the event loop, so requests
        # for cached tickers are not queued behind it.
        prepared = await asyncio.to_thread(_client_history, state, model, body)
        source = "request"
    bundle = model.forecaster.bundle
    q = prepared.quantiles
    try:
        prices = [prepared.last_close * math.exp(float(r)) for r in q]
    except OverflowError:
        prices = [math.inf]
    if not all(math.isfinite(v) for v in (*prices, *q.tolist())):
        raise HTTPException(
            status_code=422,
            detail="this history gives a non-finite forecast; check its prices and volumes",
        )
    intervals = {}
    for coverage in bundle.served_intervals:
        lo, hi = bundle.interval_columns(coverage)
        intervals[level_key(coverage)] = Interval(lower=prices[lo], upper=prices[hi],
                                                  level=coverage)  # fmt: skip
    response = PredictionResponse(
        ticker=body.ticker,
        as_of=prepared.as_of.date(),
        target_date=state.calendar.next_session(prepared.as_of),
        last_close=prepared.last_close,
        predicted_close=prices[bundle.median_index],
        predicted_return=float(q[bundle.median_index]),
        interval=intervals[level_key(bundle.interval_level)],
        quantiles={level_key(lv): prices[i] for i, lv in enumerate(bundle.quantiles)},
        intervals=intervals,
        volatility=float(implied_volatility(q[None, :], bundle.quantiles)[0]),
        model=ModelRef(name=model.name, version=model.version, run_id=model.run_id),
        history_source=source,
    )
    state.metrics.predictions.labels(model.version).inc()
    state.prediction_log.record(
        {
            "request_id": request_id,
            "ticker": response.ticker,
            "as_of": response.as_of,
            "target_date": response.target_date,
            "model_name": model.name,
            "model_version": model.version,
            "predicted_close": response.predicted_close,
            "predicted_return": response.predicted_return,
            "lower": response.interval.lower,
            "upper": response.interval.upper,
            "interval_level": response.interval.level,
            "last_close": response.last_close,
            "history_source": source,
            "quantiles": json.dumps(response.quantiles),
            "volatility": response.volatility,
        }
    )
    return response


@router.post(
    "/predictions",
    response_model=PredictionResponse,
    responses=ERRORS,
    openapi_extra=body_openapi(PredictionRequest),
)
async def create_prediction(
    body: Annotated[PredictionRequest, Depends(json_body(PredictionRequest))],
    state: State,
    model: Model,
    request: Request,
) -> Response:
    """Next-trading-day forecast for one ticker, from the server's history or yours."""
    prediction = await predict_one(state, model, body, request.state.request_id)
    # Already a validated PredictionResponse: serialise it once instead of letting FastAPI
    # validate it again against response_model (which still documents the schema).
    return Response(prediction.model_dump_json(), media_type="application/json")


@router.post(
    "/predictions/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    openapi_extra=body_openapi(BatchRequest),
)
async def create_predictions(
    body: Annotated[BatchRequest, Depends(json_body(BatchRequest))],
    state: State,
    model: Model,
    request: Request,
) -> BatchResponse:
    """Many tickers in one call: one result or one error per ticker, in request order."""
    if len(body.requests) > state.settings.max_batch_tickers:
        raise HTTPException(
            status_code=422,
            detail=f"{len(body.requests)} requests in one batch; send at most "
            f"{state.settings.max_batch_tickers}",
        )
    # Items run concurrently; whatever is not ready by the deadline (an unknown ticker behind
    # a slow source) becomes a 503 item instead of holding the whole batch.
    deadline = state.settings.batch_deadline_seconds
    tasks = [
        asyncio.create_task(predict_one(state, model, item, request.state.request_id))
        for item in body.requests
    ]
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results = []
    for item, task in zip(body.requests, tasks, strict=True):
        if task in pending:
            error = BatchError(status=503, detail=f"not ready within the batch deadline of "
                               f"{deadline:g} s; ask for '{item.ticker}' on its own")  # fmt: skip
            results.append(BatchItem(ticker=item.ticker, error=error))
            continue
        exc = task.exception()
        if isinstance(exc, HTTPException):
            error = BatchError(status=exc.status_code, detail=str(exc.detail))
            results.append(BatchItem(ticker=item.ticker, error=error))
        elif exc is not None:
            raise exc
        else:
            results.append(BatchItem(ticker=item.ticker, prediction=task.result()))
    return BatchResponse(results=results)
