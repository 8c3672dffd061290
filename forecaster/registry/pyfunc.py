"""The MLflow pyfunc face of the served model (tracking logs it from code; the service never
runs it: it reads the bundle and the weights as data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from forecaster.data.schemas import (
    DATE,
    OHLCV_COLUMNS,
    validate_ohlcv,
)
from forecaster.errors import DataValidationError
from forecaster.registry.bundle import TICKER
from forecaster.registry.predictor import Forecaster


def history_frames(model_input: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a request frame into validated per-ticker histories (one unnamed if no ticker)."""
    frame = model_input.rename(columns=lambda c: str(c).strip().lower())
    if DATE not in frame.columns:
        raise DataValidationError("model input: missing required column 'date'")
    frame = frame.assign(**{DATE: pd.to_datetime(frame[DATE], errors="coerce")})
    groups = frame.groupby(TICKER, sort=False) if TICKER in frame.columns else [("", frame)]
    histories = {}
    for ticker, rows in groups:
        origin = f"model input{f' for {ticker}' if ticker else ''}"
        histories[str(ticker)] = validate_ohlcv(rows[[DATE, *OHLCV_COLUMNS]], origin=origin)
    return histories


class StockForecastModel(PythonModel):
    """MLflow pyfunc. Input: daily OHLCV rows (date, open, high, low, close, volume and an
    optional ticker column). Output: one forecast row per ticker, or one per day with
    params={"all_days": True} (for backtests and champion comparisons)."""

    def load_context(self, context: PythonModelContext) -> None:
        graph = context.artifacts.get("graph")
        self.forecaster = Forecaster.load(
            Path(context.artifacts["bundle"]),
            Path(context.artifacts["weights"]),
            Path(graph) if graph else None,
        )

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        all_days = bool((params or {}).get("all_days", False))
        method = self.forecaster.predict_all if all_days else self.forecaster.predict_next
        parts = [method(history, ticker) for ticker, history in history_frames(model_input).items()]
        return pd.concat(parts, ignore_index=True)
