"""The prediction routes: parse the body, ask the service layer (service.predicting), return."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from service.body import body_openapi
from service.deps import Model, State
from service.predicting import predict_one
from service.requests import ClientRequest, batch_body, prediction_body
from service.schemas import (
    BatchError,
    BatchItem,
    BatchRequest,
    BatchResponse,
    PredictionRequest,
    PredictionResponse,
)

router = APIRouter(tags=["predictions"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no source knows the ticker"},
    413: {"description": "request body over the size limit"},
    415: {"description": "body is not application/json"},
    422: {
        "description": "malformed body or unusable history; detail says what to fix. Besides "
        "the schema, a history must hold rules across its rows that JSON Schema cannot state: "
        "dates strictly increasing, spaced like daily trading data (a median gap of at most 4 "
        "days, at most half of them on weekends), none before 1900 or after tomorrow, "
        "open and close within [low, high] on every row"
    },
    503: {"description": "no model loaded, or the data source is down with no cache"},
}


@router.post(
    "/predictions",
    response_model=PredictionResponse,
    responses=ERRORS,
    openapi_extra=body_openapi(PredictionRequest),
)
async def create_prediction(
    body: Annotated[ClientRequest, Depends(prediction_body)],
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
    body: Annotated[list[ClientRequest], Depends(batch_body)],
    state: State,
    model: Model,
    request: Request,
) -> Response:
    """Many tickers in one call: one result or one error per ticker, in request order. The
    forecasts from client histories share one forward pass."""
    if len(body) > state.settings.max_batch_tickers:
        raise HTTPException(
            status_code=422,
            detail=f"{len(body)} requests in one batch; send at most "
            f"{state.settings.max_batch_tickers}",
        )
    # A history longer or shorter than the schema's maxItems and minItems breaks the schema, as
    # any other malformed item does: the whole body is refused, naming the item.
    most, needed = state.settings.max_history_rows, model.forecaster.bundle.min_history
    for i, item in enumerate(body):
        rows = item.refused_rows or (len(item.history) if item.history is not None else None)
        if rows is not None and not needed <= rows <= most:
            raise HTTPException(
                status_code=422,
                detail=f"requests[{i}]: history has {rows} rows; send {needed} to {most} "
                f"(the model needs {needed} consecutive trading days)",
            )
    # Items run concurrently; whatever is not ready by the deadline (an unknown ticker behind
    # a slow source) becomes a 503 item instead of holding the whole batch.
    deadline = state.settings.batch_deadline_seconds
    tasks = [
        asyncio.create_task(predict_one(state, model, item, request.state.request_id))
        for item in body
    ]
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    results = []
    for item, task in zip(body, tasks, strict=True):
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
    # Serialised once, as for single predictions: FastAPI would validate 50 items again.
    return Response(BatchResponse(results=results).model_dump_json(), media_type="application/json")
