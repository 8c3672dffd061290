from __future__ import annotations

from fastapi import APIRouter

from forecaster.fallback import GARCH_MIN_RETURNS, NAIVE_MIN_RETURNS
from service.deps import Model
from service.schemas import ModelInfo, TickerRange, calibration_of, served_by

router = APIRouter(tags=["model"])

# Version tag -> reported name: the scores the version was registered with, on its test days.
_REPORTED = {"test_mae": "test_model_mae", "naive_mae": "test_naive_mae",
             "mae_ratio_vs_naive": "test_mae_ratio_vs_naive", "test_pinball": "test_model_pinball",
             "pinball_ratio_vs_naive": "test_pinball_ratio_vs_naive",
             "pinball_ratio_vs_garch": "test_pinball_ratio_vs_garch"}  # fmt: skip


def _reported(tags: dict[str, str]) -> dict[str, float]:
    out = {}
    for tag, name in _REPORTED.items():
        try:
            out[name] = float(tags[tag])
        except (KeyError, ValueError):
            continue
    return out


@router.get("/model", response_model=ModelInfo, responses={503: {"description": "no model"}})
async def model_info(model: Model) -> ModelInfo:
    """The served model: registry version, training data, its pooled test metrics, the
    universe it was trained on and which forecaster serves each ticker, with the evidence."""
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
        min_history=bundle.min_history,
        interval_level=bundle.interval_level,
        test_metrics=_reported(model.tags),
        universe={ticker: TickerRange.model_validate(r) for ticker, r in bundle.universe.items()},
        routes={ticker: served_by(r) for ticker, r in bundle.routes.items()},
        unseen=served_by(bundle.unseen) if bundle.unseen is not None else None,
        history_rows={
            "lstm": bundle.min_history,
            "garch_fit": GARCH_MIN_RETURNS + 1,
            "naive": NAIVE_MIN_RETURNS + 1,
            **(
                {"lstm_calibrated": bundle.min_history + bundle.calibration_window}
                if bundle.calibration_window is not None
                else {}
            ),
        },
        calibration={
            t: c
            for t, c in ((t, calibration_of(c)) for t, c in bundle.calibration.items())
            if c is not None
        },
    )
