"""The served model: network + fitted scaler + feature config, as one MLflow pyfunc.

Imports neither Lightning nor any training code: it must load fast in a service worker. MLflow
pickles `StockForecastModel` by reference, so this module has to stay importable and small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from forecaster.config import FeatureConfig
from forecaster.errors import DataValidationError
from forecaster.features import warmup_rows
from forecaster.model.network import LSTMQuantileNet
from forecaster.predict import predict_quantiles
from forecaster.scaling import FeatureScaler
from forecaster.schemas import CLOSE, DATE, OHLCV_COLUMNS, validate_ohlcv
from forecaster.windows import all_windows, latest_window

BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "network.pt"
TICKER = "ticker"
OUTPUT_COLUMNS = (
    "ticker",
    "as_of",
    "last_close",
    "predicted_return",
    "predicted_close",
    "lower",
    "upper",
    "lower_return",
    "upper_return",
    "interval_level",
)


@dataclass(frozen=True)
class ModelBundle:
    """Everything besides the weights that inference needs, stored as JSON in the model."""

    features: FeatureConfig
    lookback: int
    interval_level: float
    quantiles: tuple[float, ...]
    scaler: FeatureScaler
    n_features: int
    hidden_size: int
    num_layers: int
    dropout: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": self.features.model_dump(mode="json"),
                "lookback": self.lookback,
                "interval_level": self.interval_level,
                "quantiles": list(self.quantiles),
                "scaler": self.scaler.to_dict(),
                "network": {
                    "n_features": self.n_features,
                    "hidden_size": self.hidden_size,
                    "num_layers": self.num_layers,
                    "dropout": self.dropout,
                },
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ModelBundle:
        data = json.loads(text)
        net = data["network"]
        return cls(
            features=FeatureConfig.model_validate(data["features"]),
            lookback=int(data["lookback"]),
            interval_level=float(data["interval_level"]),
            quantiles=tuple(float(q) for q in data["quantiles"]),
            scaler=FeatureScaler.from_dict(data["scaler"]),
            n_features=int(net["n_features"]),
            hidden_size=int(net["hidden_size"]),
            num_layers=int(net["num_layers"]),
            dropout=float(net["dropout"]),
        )

    def build_network(self) -> LSTMQuantileNet:
        return LSTMQuantileNet(
            n_features=self.n_features,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            n_quantiles=len(self.quantiles),
        )

    @property
    def min_history(self) -> int:
        """Rows of daily history one forecast needs."""
        return warmup_rows(self.features) + self.lookback


class Forecaster:
    """Raw daily OHLCV history in, next-trading-day forecast with its interval out."""

    def __init__(self, bundle: ModelBundle, network: LSTMQuantileNet) -> None:
        self.bundle = bundle
        self.network = network.eval()

    @classmethod
    def load(cls, bundle_path: Path, weights_path: Path) -> Forecaster:
        bundle = ModelBundle.from_json(Path(bundle_path).read_text(encoding="utf-8"))
        network = bundle.build_network()
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        return cls(bundle, network)

    def save(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        bundle_path, weights_path = directory / BUNDLE_FILE, directory / WEIGHTS_FILE
        bundle_path.write_text(self.bundle.to_json(), encoding="utf-8")
        torch.save(self.network.state_dict(), weights_path)
        return bundle_path, weights_path

    def _rows(
        self, ticker: str, as_of: pd.DatetimeIndex, last_close: np.ndarray, q: np.ndarray
    ) -> pd.DataFrame:
        lower, median, upper = q[:, 0], q[:, len(self.bundle.quantiles) // 2], q[:, -1]
        return pd.DataFrame(
            {
                "ticker": ticker,
                "as_of": as_of.to_numpy(dtype="datetime64[ns]"),
                "last_close": last_close,
                "predicted_return": median,
                "predicted_close": last_close * np.exp(median),
                "lower": last_close * np.exp(lower),
                "upper": last_close * np.exp(upper),
                "lower_return": lower,
                "upper_return": upper,
                "interval_level": self.bundle.interval_level,
            },
            columns=list(OUTPUT_COLUMNS),
        )

    def predict_next(self, history: pd.DataFrame, ticker: str = "") -> pd.DataFrame:
        """One row: the forecast for the trading day after the history's last date."""
        window = latest_window(history, self.bundle.features, self.bundle.lookback)
        q = predict_quantiles(self.network, self.bundle.scaler.transform(window))
        return self._rows(ticker, history.index[-1:], history[CLOSE].to_numpy()[-1:], q)

    def prepare_window(self, history: pd.DataFrame) -> np.ndarray:
        """The scaled (1, lookback, n_features) input for the day after the history's end.

        Split from `forecast_window` so a server can prepare it once per history and keep
        pandas off its request path.
        """
        window = latest_window(history, self.bundle.features, self.bundle.lookback)
        return self.bundle.scaler.transform(window)

    def forecast_window(self, window: np.ndarray) -> np.ndarray:
        """Quantiles (lower, median, upper) of the next log return for one prepared window."""
        with torch.inference_mode():
            out = self.network(torch.from_numpy(window))
        quantiles: np.ndarray = out[0].double().numpy()
        return quantiles

    def predict_all(self, history: pd.DataFrame, ticker: str = "") -> pd.DataFrame:
        """A row for every day with a full window: the forecast made as of that day."""
        x, as_of = all_windows(history, self.bundle.features, self.bundle.lookback)
        q = predict_quantiles(self.network, self.bundle.scaler.transform(x))
        return self._rows(ticker, as_of, history[CLOSE].reindex(as_of).to_numpy(), q)


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
        self.forecaster = Forecaster.load(
            Path(context.artifacts["bundle"]), Path(context.artifacts["weights"])
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
