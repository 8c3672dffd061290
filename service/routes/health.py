from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import State
from service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"description": "no model loaded yet; detail says why"}},
)
async def readyz(state: State) -> Readiness | JSONResponse:
    """Readiness: a model is loaded and can serve forecasts. The detail is short and public
    (no store URL, file path or driver message); the service log has the full reason."""
    model = state.models.current
    if model is None:
        return JSONResponse(status_code=503, content={"detail": state.models.public_error})
    return Readiness(status="ready", model=model.name, version=model.version, alias=model.alias,
                     detail=state.models.public_error,
                     prediction_log=state.prediction_log.status())  # fmt: skip
