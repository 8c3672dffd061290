from __future__ import annotations

from fastapi import APIRouter

from forecaster.registry import version_tags
from service.deps import Model
from service.schemas import ModelInfo, TickerRange, calibration_of, served_by

router = APIRouter(tags=["model"])


@router.get("/model", response_model=ModelInfo, responses={503: {"description": "no model"}})
async def model_info(model: Model) -> ModelInfo:
    """The served model: registry version, training data, its pooled test metrics, the
    universe it was trained on and which forecaster serves each ticker, with the evidence."""
    bundle = model.forecaster.bundle
    served = {name: model.forecaster.method(name) for name in bundle.methods}
    return ModelInfo(
        name=model.name,
        version=model.version,
        alias=model.alias,
        run_id=model.run_id,
        loaded_at=model.loaded_at,
        training_data_range=version_tags.data_range(model.tags),
        test_range=version_tags.test_range(model.tags),
        lookback=bundle.lookback,
        min_history=bundle.min_history,
        interval_level=bundle.interval_level,
        network_runtime=model.forecaster.forward.runtime,
        test_metrics=version_tags.reported_scores(model.tags),
        universe={ticker: TickerRange.model_validate(r) for ticker, r in bundle.universe.items()},
        routes={ticker: served_by(r) for ticker, r in bundle.routes.items()},
        unseen=served_by(bundle.unseen) if bundle.unseen is not None else None,
        history_rows={
            "lstm": bundle.min_history,
            # Each classic method: the rows a forecast needs, and a fit on a request's history.
            **{name: max(m.min_returns, m.earliest) + 1 for name, m in served.items()},
            **{f"{name}_fit": m.fit_min_returns + 1 for name, m in served.items() if m.estimates},
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
