"""The predict job: a registered model, recent history from the configured source, a forecast
per ticker by the method the model's routing table names, as the API would answer."""

from __future__ import annotations

from typing import Any

import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.data.calendar import TradingCalendar
from forecaster.data.sources import load_frames, resolved_tickers
from forecaster.registry.loader import CHAMPION, load_registered
from forecaster.registry.tracking import check_reachable, resolve_tracking_uri


def run_predict(config: ForecasterConfig, model_uri: str | None = None) -> dict[str, Any]:
    uri = model_uri or f"models:/{config.tracking.model_name}@{CHAMPION}"
    tracking_uri = resolve_tracking_uri(config)
    check_reachable(tracking_uri)
    forecaster = load_registered(uri, tracking_uri).forecaster
    calendar = TradingCalendar()
    forecasts = []
    for ticker, frame in load_frames(config.data).items():
        served = forecaster.serve(frame, ticker)
        row = forecaster.rows(ticker, frame.index[-1:], frame["close"].to_numpy()[-1:],
                              served.quantiles[None, :]).iloc[0]  # fmt: skip
        calibration = served.calibration
        forecasts.append(
            {
                "ticker": ticker,
                "as_of": str(pd.Timestamp(row.as_of).date()),
                # The same next NYSE session the API's `target_date` names.
                "target_date": str(calendar.next_session(pd.Timestamp(row.as_of))),
                "last_close": float(row.last_close),
                "predicted_close": float(row.predicted_close),
                "predicted_return": float(row.predicted_return),
                "interval": {
                    "lower": float(row.lower),
                    "upper": float(row.upper),
                    "level": float(row.interval_level),
                },
                "method": served.method,
                "calibration": calibration.to_dict() if calibration is not None else None,
                # Why another method answered than the route names (the API's `warnings`).
                "warnings": [served.fallback] if served.fallback else [],
            }
        )
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
            f", by {f['method']}"
        )
        lines.extend(f"  warning: {w}" for w in f.get("warnings", ()))
    return "\n".join(lines)
