from __future__ import annotations

from fastapi import APIRouter, Depends

from service.deps import State, require_api_key
from service.schemas import ReloadResult

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_api_key)])


@router.post(
    "/reload",
    response_model=ReloadResult,
    responses={401: {"description": "no API key"}, 403: {"description": "wrong key/disabled"}},
)
async def reload_model(state: State) -> ReloadResult:
    """Load the alias's current version now (off the request path of other calls)."""
    swapped = await state.models.refresh()
    current = state.models.current
    detail = state.models.last_error or (
        f"serving v{current.version}" if current else "no model loaded"
    )
    return ReloadResult(swapped=swapped, version=current.version if current else None,
                        detail=detail)  # fmt: skip
