"""Live accuracy of the served forecasts, as the last `forecaster monitor` run scored them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from forecaster.data.schemas import TICKER_PATTERN
from service.deps import State
from service.schemas import MethodOrAll, Performance, PerformanceEntry, WindowScores

router = APIRouter(tags=["performance"])
ANY_OR_TICKER = r"^(\*|" + TICKER_PATTERN.removeprefix("^").removesuffix("$") + ")$"


@router.get(
    "/performance",
    response_model=Performance,
    responses={404: {"description": "no live scores (yet) for this version or ticker"}},
)
async def performance(
    state: State,
    version: Annotated[str | None, Query(max_length=32, description="model version")] = None,
    ticker: Annotated[
        str | None, Query(pattern=ANY_OR_TICKER, description='a ticker, or "*" for all')
    ] = None,
    method: Annotated[
        MethodOrAll | None,
        Query(description='a serving method, or "*" for all of them'),
    ] = None,
) -> Performance:
    """Per model version, and per ticker or per serving method, over the monitor's windows of
    resolved forecasts (by default the last 20, 60 and 250): MAE beside naive persistence,
    pinball loss beside the random walk's, and each interval's coverage with Kupiec's p."""
    snapshot = await asyncio.to_thread(state.live_scores.snapshot)
    if snapshot.computed_at is None:
        raise HTTPException(404, detail="no live scores yet: run `forecaster monitor`")
    grouped: dict[tuple[str, str, str, str], dict[str, WindowScores]] = defaultdict(dict)
    drift: dict[tuple[str, str, str, str], str | None] = {}
    for row in snapshot.rows:
        if version is not None and row.model_version != version:
            continue
        if ticker is not None and row.ticker != ticker:
            continue
        if method is not None and row.method != method:
            continue
        key = (row.model_name, row.model_version, row.ticker, row.method)
        grouped[key][str(row.window)] = WindowScores.model_validate(row.figures)
        drift[key] = drift.get(key) or row.drift_reason
    if not grouped:
        asked = (("version", version), ("ticker", ticker), ("method", method))
        wanted = ", ".join(f"{k} {v}" for k, v in asked if v)
        raise HTTPException(404, detail=f"no live scores for {wanted}")
    return Performance(
        computed_at=snapshot.computed_at,
        entries=[
            PerformanceEntry(
                model_name=n,
                model_version=v,
                ticker=t,
                method=m,
                windows=w,
                drift_reason=drift.get((n, v, t, m)),
            )
            for (n, v, t, m), w in sorted(grouped.items())
        ],
    )
