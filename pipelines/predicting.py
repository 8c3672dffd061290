"""The predict job: a registered model, recent history from the configured source, a forecast."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from forecaster.calendar import TradingCalendar
from forecaster.config import ForecasterConfig
from forecaster.errors import DataValidationError, TrackingError
from forecaster.registry import CHAMPION, model_history_input
from forecaster.sources import load_frames, resolved_tickers
from forecaster.tracking import check_reachable, resolve_tracking_uri


def run_predict(config: ForecasterConfig, model_uri: str | None = None) -> dict[str, Any]:
    uri = model_uri or f"models:/{config.tracking.model_name}@{CHAMPION}"
    tracking_uri = resolve_tracking_uri(config)
    check_reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # MLflow raises anything from a bad URI: all are the user's to fix
        reason = exc.message if isinstance(exc, MlflowException) else str(exc)
        first = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
        raise TrackingError(
            f"cannot load model {uri} from {tracking_uri}: {first} "
            "(train one with 'forecaster train', or pass --model-uri)"
        ) from exc
    frames = load_frames(config.data)
    history = pd.concat(
        [model_history_input(frame, ticker) for ticker, frame in frames.items()],
        ignore_index=True,
    )
    try:
        out = model.predict(history)
    except MlflowException as exc:
        raise DataValidationError(f"model {uri} refused the input: {exc.message}") from exc
    calendar = TradingCalendar()
    forecasts = [
        {
            "ticker": row.ticker,
            "as_of": str(pd.Timestamp(row.as_of).date()),
            # The same next NYSE session the API's `target_date` names.
            "target_date": str(calendar.next_session(row.as_of)),
            "last_close": float(row.last_close),
            "predicted_close": float(row.predicted_close),
            "predicted_return": float(row.predicted_return),
            "interval": {
                "lower": float(row.lower),
                "upper": float(row.upper),
                "level": float(row.interval_level),
            },
        }
        for row in out.itertuples()
    ]
    return {
        "model_uri": uri,
        "tickers": list(resolved_tickers(config.data)),
        "forecasts": forecasts,
    }


def predict_text(payload: dict[str, Any]) -> str:
    lines = [f"model {payload['model_uri']}"]
    for f in payload["forecasts"]:
        interval = f["interval"]
        lines.append(
            f"{f['ticker']}: {f['target_date']} (after {f['as_of']}): "
            f"close {f['predicted_close']:.2f} "
            f"({100 * f['predicted_return']:+.3f}% from {f['last_close']:.2f}), "
            f"{interval['level']:.0%} interval {interval['lower']:.2f} .. {interval['upper']:.2f}"
        )
    return "\n".join(lines)
