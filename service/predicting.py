"""The prediction service layer: one ticker, its history (the server's or the request's), the
served model's levels in, a validated response out; the routes only parse and return.

The method the ticker's route names answers: the network (micro-batched, its bands
recalibrated) or a classic method through `Forecaster.baseline_forecast`, the same code the
backtest scored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import numpy as np
import pandas as pd
from fastapi import HTTPException

from forecaster.config import level_key
from forecaster.data.schemas import DATE, OHLCV_COLUMNS
from forecaster.errors import (
    DataValidationError,
    PredictionLogError,
    SourceUnavailableError,
    TickerNotFoundError,
)
from forecaster.methods import NETWORK, Bars
from forecaster.methods.calibration import Calibration
from forecaster.quantile_forecast import QuantileForecast
from service.client_history import check_history, history_warnings
from service.history import PreparedHistory
from service.model_store import LoadedModel
from service.requests import ClientRequest, RequestHistory
from service.schemas import (
    Evidence,
    Interval,
    ModelRef,
    PredictionResponse,
    calibration_of,
    evidence_of,
)
from service.state import ServiceState

logger = logging.getLogger(__name__)


# Histories up to this many rows are checked and windowed on the event loop (~0.1 ms);
# longer ones in a thread.
INLINE_ROWS = 1000


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


def _too_many_rows(state: ServiceState, model: LoadedModel, rows: int) -> HTTPException:
    return HTTPException(
        status_code=422,
        detail=f"history has {rows} rows; send at most {state.settings.max_history_rows} "
        f"(the model needs {model.forecaster.bundle.min_history})",
    )


def _check_client_history(
    state: ServiceState, model: LoadedModel, request: ClientRequest, history: RequestHistory
) -> str:
    """422 on a history no method may use (too short or long, rows that break the rules; the
    message names the row); returns the origin to name in later messages."""
    needed = model.forecaster.bundle.min_history
    if len(history) > state.settings.max_history_rows:  # a body the models parsed
        raise _too_many_rows(state, model, len(history))
    if len(history) < needed:
        raise HTTPException(
            status_code=422,
            detail=f"history has {len(history)} rows; model v{model.version} needs at least "
            f"{needed} consecutive trading days",
        )
    origin = f"history for {request.ticker}"
    try:
        check_history(history, origin)
    except DataValidationError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return origin


def _client_window(
    state: ServiceState, model: LoadedModel, request: ClientRequest, history: RequestHistory
) -> np.ndarray:
    """The scaled model input from a client's history: arrays only, no DataFrame."""
    origin = _check_client_history(state, model, request, history)
    try:
        return model.forecaster.prepare_arrays(history.prices, origin)
    except DataValidationError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


async def _client_forecast(
    state: ServiceState, model: LoadedModel, request: ClientRequest, history: RequestHistory
) -> PreparedHistory:
    route = model.forecaster.route_for(request.ticker)
    if route is not None and route.method != NETWORK:
        return await _client_baseline(state, model, request, history, route.method)
    batcher = state.batcher
    with batcher.coming():
        if len(history) <= INLINE_ROWS:
            window = _client_window(state, model, request, history)
        else:  # validation is linear in the rows: long histories off the event loop
            window = await asyncio.to_thread(_client_window, state, model, request, history)
    quantiles = await batcher.forecast(model.forecaster, window)
    bundle = model.forecaster.bundle
    calibration = None
    if bundle.calibration_window is not None:
        # The model's own forecasts over the request's history calibrate its bands (off the
        # event loop: a forward pass over up to calibration_window + 1 windows), as the
        # server's history and replay do; a history too short gets the stored factors.
        if len(history) >= bundle.min_history + bundle.calibration_min_days:
            key = _calibration_key(model, request.ticker, history)
            calibration = await state.history.calibration(
                key, lambda: _history_calibration(model, request, history)
            )
        calibration = calibration or bundle.calibration.get(request.ticker)
    quantiles = model.forecaster.calibrate(quantiles, calibration)
    as_of = pd.Timestamp(history.days[-1])
    return PreparedHistory(as_of, float(history.prices.close[-1]), quantiles, NETWORK, calibration)


def _calibration_key(model: LoadedModel, ticker: str, history: RequestHistory) -> str:
    """Version, ticker and a digest of the rows the band factors read (the history's tail)."""
    bundle = model.forecaster.bundle
    tail = bundle.min_history + (bundle.calibration_window or 0)
    digest = hashlib.blake2b(history.days[-tail:].tobytes(), digest_size=16)
    for column in history.prices.columns().values():
        digest.update(column[-tail:].tobytes())
    return f"{model.version}|{ticker}|{digest.hexdigest()}"


def _history_calibration(
    model: LoadedModel, request: ClientRequest, history: RequestHistory
) -> Calibration | None:
    frame = pd.DataFrame(
        {name: getattr(history.prices, name) for name in OHLCV_COLUMNS},
        index=pd.DatetimeIndex(history.days.astype("datetime64[ns]"), name=DATE),
    )
    try:
        return model.forecaster.history_calibration(frame, request.ticker)
    except DataValidationError as exc:  # an earlier row the latest window did not reach
        logger.info("%s: bands not recalibrated (%s)", request.ticker, exc)
        return None


async def _client_baseline(
    state: ServiceState,
    model: LoadedModel,
    request: ClientRequest,
    history: RequestHistory,
    method: str,
) -> PreparedHistory:
    """A baseline's forecast from the client's history, after the same checks the model's input
    gets. Filtering GARCH or taking the random walk's quantiles costs a fraction of a
    millisecond and runs inline; a GARCH fit (an unseen ticker) runs in a thread."""
    forecaster = model.forecaster
    if len(history) <= INLINE_ROWS:
        _check_client_history(state, model, request, history)
    else:
        await asyncio.to_thread(_check_client_history, state, model, request, history)
    bars = Bars.of(history.prices)
    fits = forecaster.fits_on_request(request.ticker, method, bars)
    try:
        if fits:
            served = await asyncio.to_thread(
                forecaster.baseline_forecast, request.ticker, method, bars, history.days
            )
        else:
            served = forecaster.baseline_forecast(request.ticker, method, bars, history.days)
    except DataValidationError as exc:
        raise HTTPException(status_code=422, detail=f"history for {request.ticker}: {exc}") from exc
    as_of = pd.Timestamp(history.days[-1])
    return PreparedHistory(as_of, float(bars.close[-1]), served.quantiles, served.method,
                           served.calibration, served.fallback)  # fmt: skip


def _evidence(model: LoadedModel, ticker: str) -> Evidence | None:
    route = model.forecaster.route_for(ticker)
    return evidence_of(route) if route is not None else None


async def predict_one(
    state: ServiceState, model: LoadedModel, body: ClientRequest, request_id: str
) -> PredictionResponse:
    if body.refused_rows:
        raise _too_many_rows(state, model, body.refused_rows)
    if body.history is None:
        prepared, source = await _server_history(state, model, body.ticker), "server"
    else:
        prepared = await _client_forecast(state, model, body, body.history)
        source = "request"
    bundle = model.forecaster.bundle
    forecast = QuantileForecast(bundle.quantiles, prepared.quantiles, prepared.last_close,
                                prepared.as_of.date(),
                                state.calendar.next_session(prepared.as_of))  # fmt: skip
    if not forecast.is_finite():
        raise HTTPException(
            status_code=422,
            detail="this history gives a non-finite forecast; check its prices and volumes",
        )
    intervals = {}
    for coverage in bundle.served_intervals:
        lower, upper = forecast.interval(coverage)
        intervals[level_key(coverage)] = Interval(lower=lower, upper=upper, level=coverage)
    response = PredictionResponse(
        ticker=body.ticker,
        as_of=forecast.as_of,
        target_date=forecast.target_date,
        last_close=forecast.last_close,
        predicted_close=forecast.median,
        predicted_return=forecast.median_return,
        interval=intervals[level_key(bundle.interval_level)],
        quantiles=forecast.price_quantiles(),
        intervals=intervals,
        volatility=forecast.volatility,
        model=ModelRef(name=model.name, version=model.version, run_id=model.run_id),
        history_source=source,
        method=prepared.method,
        evidence=_evidence(model, body.ticker),
        calibration=calibration_of(prepared.calibration),
        warnings=[
            *(history_warnings(body.history) if body.history is not None else []),
            *([prepared.fallback] if prepared.fallback else []),
        ],
    )
    row = {
        "request_id": request_id,
        "ticker": response.ticker,
        "model_name": model.name,
        "model_version": model.version,
        "history_source": source,
        "method": response.method,
        **forecast.log_row(bundle.interval_level),
    }
    if state.settings.prediction_log_durable:
        try:
            await state.prediction_log.committed(
                row, state.settings.prediction_log_durable_timeout_seconds
            )
        except PredictionLogError as exc:
            raise HTTPException(
                status_code=503,
                detail=f"{exc}; in durable mode (FORECASTER_PREDICTION_LOG_DURABLE) a forecast "
                "is answered only once it is logged: retry, or check the log's database",
            ) from None
    else:
        state.prediction_log.record(row)
    state.metrics.predictions.labels(model.version).inc()
    return response
