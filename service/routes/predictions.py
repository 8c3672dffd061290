from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pandas as pd
from fastapi import APIRouter, HTTPException, Request, Response

from forecaster.config import level_key
from forecaster.errors import DataValidationError, SourceUnavailableError, TickerNotFoundError
from forecaster.inference import implied_volatility
from forecaster.schemas import FrameMeta, validate_ohlcv, with_meta
from service.deps import Model, State
from service.history import PreparedHistory, prepare
from service.model_store import LoadedModel
from service.schemas import (
    BatchError,
    BatchItem,
    BatchRequest,
    BatchResponse,
    Interval,
    ModelRef,
    PredictionRequest,
    PredictionResponse,
)
from service.state import ServiceState

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["predictions"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no source knows the ticker"},
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
    frame = pd.DataFrame([r.model_dump() for r in rows])
    frame["date"] = pd.to_datetime(frame["date"])
    try:
        frame = validate_ohlcv(frame, origin=f"history for {body.ticker}")
        with_meta(frame, FrameMeta(ticker=body.ticker, source="request", adjustment="as_given",
                                   origin=f"history for {body.ticker}"))  # fmt: skip
        return prepare(model.forecaster, frame)
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
        }
    )
    return response


@router.post("/predictions", response_model=PredictionResponse, responses=ERRORS)
async def create_prediction(
    body: PredictionRequest, state: State, model: Model, request: Request
) -> Response:
    """Next-trading-day forecast for one ticker, from the server's history or yours."""
    prediction = await predict_one(state, model, body, request.state.request_id)
    # Already a validated PredictionResponse: serialise it once instead of letting FastAPI
    # validate it again against response_model (which still documents the schema).
    return Response(prediction.model_dump_json(), media_type="application/json")


@router.post("/predictions/batch", response_model=BatchResponse, responses=ERRORS)
async def create_predictions(
    body: BatchRequest, state: State, model: Model, request: Request
) -> BatchResponse:
    """Many tickers in one call: one result or one error per ticker, in request order."""
    if len(body.requests) > state.settings.max_batch_tickers:
        raise HTTPException(
            status_code=422,
            detail=f"{len(body.requests)} requests in one batch; send at most "
            f"{state.settings.max_batch_tickers}",
        )
    results = []
    for item in body.requests:
        try:
            prediction = await predict_one(state, model, item, request.state.request_id)
            results.append(BatchItem(ticker=item.ticker, prediction=prediction))
        except HTTPException as exc:
            results.append(
                BatchItem(ticker=item.ticker, error=BatchError(status=exc.status_code,
                                                               detail=str(exc.detail)))
            )  # fmt: skip
    return BatchResponse(results=results)
