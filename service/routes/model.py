from __future__ import annotations

from fastapi import APIRouter

from service.deps import Model
from service.schemas import ModelInfo

router = APIRouter(prefix="/v1", tags=["model"])

_REPORTED = ("test_model_mae", "test_naive_mae", "test_linear_mae", "test_mae_ratio_vs_naive",
             "test_model_coverage", "test_model_rmse", "test_naive_rmse",
             "test_model_directional_accuracy", "test_up_day_share")  # fmt: skip


@router.get("/model", response_model=ModelInfo, responses={503: {"description": "no model"}})
async def model_info(model: Model) -> ModelInfo:
    """The served model: registry version, training data and its test metrics vs naive."""
    bundle = model.forecaster.bundle
    return ModelInfo(
        name=model.name,
        version=model.version,
        alias=model.alias,
        run_id=model.run_id,
        loaded_at=model.loaded_at,
        training_data_range=model.tags.get("data_range"),
        test_range=model.tags.get("test_range"),
        lookback=bundle.lookback,
        interval_level=bundle.interval_level,
        test_metrics={k: v for k, v in model.metrics.items() if k in _REPORTED},
    )
