"""One router per resource; the versioned API is one router, so /v1 is said once."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes import admin, model, performance, predictions

api_router = APIRouter(prefix="/v1")
api_router.include_router(model.router)
api_router.include_router(predictions.router)
api_router.include_router(performance.router)
api_router.include_router(admin.router)
