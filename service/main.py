"""The app factory and its lifespan: settings in, a ready-to-serve FastAPI app out.

The model loads in the lifespan, never at import. If it cannot load (no champion yet, tracking
server down) the app still starts, /readyz answers 503 with the reason, and a background task
keeps retrying with backoff, then polls the alias for new versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from forecaster import __version__
from forecaster.data.calendar import TradingCalendar
from forecaster.errors import ModelMismatchError
from forecaster.local_state import shown_url
from service.batcher import ForwardBatcher
from service.body import document_bodies, document_history_limits, validation_error_handler
from service.history import HistoryStore, make_source
from service.live_scores import LiveGauges, LiveScores
from service.metrics import ServiceMetrics
from service.middleware import RequestContextMiddleware
from service.model_store import ModelStore
from service.prediction_log import PredictionLog, Retention
from service.routes import api_router, health
from service.schemas import BatchRequest, PredictionRequest
from service.settings import ServiceSettings
from service.state import ServiceState

logger = logging.getLogger(__name__)


def build_state(settings: ServiceSettings, metrics: ServiceMetrics) -> ServiceState:
    live = LiveScores(settings.resolved_prediction_log_url())
    metrics.add_collector(LiveGauges(live))
    return ServiceState(
        settings=settings,
        models=ModelStore(
            settings.resolved_tracking_uri(),
            settings.model_name,
            settings.model_alias,
            settings.retry_max_seconds,
            on_event=lambda outcome: metrics.reloads.labels(outcome).inc(),
            fallback_alias=settings.fallback_alias,
            data_settings=(settings.data_source, settings.auto_adjust),
            store_timeout=settings.store_timeout_seconds,
            runtime=settings.network_runtime,
            threads=settings.torch_threads,
        ),
        history=HistoryStore(make_source(settings), settings),
        calendar=TradingCalendar(),
        metrics=metrics,
        prediction_log=PredictionLog(
            settings.resolved_prediction_log_url(),
            on_rows=lambda outcome, n: metrics.log_rows.labels(outcome).inc(n),
            retention=Retention(
                settings.prediction_log_max_age_days, settings.prediction_log_max_rows
            ),
            durable=settings.prediction_log_durable,
        ),
        live_scores=live,
        batcher=ForwardBatcher(
            max_batch=settings.forward_batch_max,
            max_wait=settings.forward_batch_wait_ms / 1000,
            on_forward=metrics.forward_batch.observe,
        ),
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.torch_threads)
        state = await asyncio.to_thread(build_state, settings, metrics)
        state.prediction_log.start()
        app.state.service = state
        # The first load gets a bounded wait: a store that is down or slow must not keep the
        # process from listening (or from honouring SIGTERM); the load goes on in the
        # background and /readyz says 503 until it lands.
        first = asyncio.create_task(state.models.refresh())
        await asyncio.wait({first}, timeout=settings.startup_wait_seconds)
        if first.done() and state.models.current is None and state.models.conflict:
            # The model this service is configured to serve contradicts its settings: refuse to
            # start rather than serve nothing, or serve it wrongly.
            state.prediction_log.close()
            state.history.close()
            raise ModelMismatchError(f"refusing to start: {state.models.conflict}")
        # Move everything loaded so far (torch, pandas, MLflow, the model) out of the garbage
        # collector's view: a full collection then walks only what requests allocate, instead
        # of stalling the event loop for ~0.2 s when a large body creates many objects.
        gc.freeze()
        watcher = asyncio.create_task(state.models.watch(settings.reload_interval_seconds))
        current = state.models.current
        serving = f"v{current.version} (alias {current.alias})" if current else "nothing yet"
        if not first.done():
            serving += f" (no answer from the store in {settings.startup_wait_seconds:g} s)"
        logger.info("watching %s@%s in %s; serving %s", settings.model_name,
                    settings.model_alias, shown_url(settings.resolved_tracking_uri()),
                    serving)  # fmt: skip
        try:
            yield
        finally:
            for task in (first, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.prediction_log.close()
            state.history.close()
            state.live_scores.close()

    app = FastAPI(
        title="forecaster",
        version=__version__,
        summary="Next-trading-day stock forecasts with prediction intervals",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(api_router)
    document_bodies(app, PredictionRequest, BatchRequest)

    def min_history() -> int | None:
        state = getattr(app.state, "service", None)
        current = state.models.current if state is not None else None
        return current.forecaster.bundle.min_history if current is not None else None

    document_history_limits(app, settings.max_history_rows, settings.max_batch_tickers, min_history)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # In a thread: the live gauges may query the prediction log's database, which must
        # not stall the event loop if it is slow or unreachable.
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "unknown")
        logger.exception("unhandled error in %s %s (request %s)", request.method,
                         request.url.path, request_id)  # fmt: skip
        return JSONResponse(
            status_code=500,
            content={"detail": "internal error; quote this request id", "request_id": request_id},
            headers={"x-request-id": request_id},
        )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    return app
