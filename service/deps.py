"""FastAPI dependencies: the app state, the loaded model, the admin key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from service.model_store import LoadedModel
from service.state import ServiceState

# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread
# pool, and two thread hops per request cost more than the whole forecast.


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


async def get_model(state: State) -> LoadedModel:
    """The model serving this request; held for the whole request even if a swap happens."""
    model = state.models.current
    if model is None:
        raise HTTPException(
            status_code=503,
            detail=f"no model loaded: {state.models.public_error}",
        )
    return model


Model = Annotated[LoadedModel, Depends(get_model)]


# Declared as a security scheme so the OpenAPI document says which operations need the key
# (clients and fuzzers read it there); checked below, not by FastAPI, for the messages.
ADMIN_KEY = APIKeyHeader(
    name="X-API-Key", scheme_name="AdminKey", description="admin API key", auto_error=False
)


async def require_api_key(
    state: State, x_api_key: Annotated[str | None, Security(ADMIN_KEY)] = None
) -> None:
    configured = state.settings.api_key
    if configured is None:
        raise HTTPException(
            status_code=403, detail="admin API disabled: set FORECASTER_API_KEY to enable it"
        )
    if x_api_key is None:
        raise HTTPException(status_code=401, detail="missing X-API-Key header")
    if not secrets.compare_digest(x_api_key, configured.get_secret_value()):
        raise HTTPException(status_code=403, detail="invalid API key")
