"""The Lightning LSTM behind the forecaster interface (training side: imports Lightning)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from lightning.pytorch.callbacks import Callback

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import PreparedData
from forecaster.data.scaling import FeatureScaler
from forecaster.data.windows import Windows
from forecaster.errors import NotFittedError
from forecaster.methods.calibration import Calibration, Outcomes, latest_calibration, recalibrate
from forecaster.methods.network.train import TrainedModel, train_network
from forecaster.methods.windowed import QuantileForecaster


class LSTMForecaster(QuantileForecaster):
    """Early-stopped on the validation windows; scales windows with the fold's scaler.

    With `model.calibration_window` set, each ticker's bands are recalibrated by rolling
    conformal factors (forecaster.methods.calibration) from the model's realised forecasts: the
    validation windows', then those of the windows it is asked about, each day using only
    outcomes known by its as-of date, as the served model does.
    """

    name = "model"

    def __init__(self, config: ForecasterConfig, callbacks: Sequence[Callback] = ()) -> None:
        super().__init__(config.model.quantiles)
        self.config = config
        self.callbacks = callbacks
        self.trained: TrainedModel | None = None
        self.scaler: FeatureScaler | None = None
        self.outcomes: Outcomes | None = None

    def fit(self, data: PreparedData) -> LSTMForecaster:
        self.trained = train_network(
            data.part("train"), data.part("val"), self.config, data.scaler, self.callbacks
        )
        self.scaler = data.scaler
        if self.config.model.calibration_window is not None:
            val = data.windows.take(data.split.val)
            self.outcomes = self._outcomes(val, self.predict_raw(val))
        return self

    def predict_raw(self, windows: Windows) -> np.ndarray:
        """The network's quantiles, before any recalibration."""
        if self.trained is None or self.scaler is None:
            raise NotFittedError("model: call fit() before predict()")
        return self.trained.predict(self.scaler.transform(windows.x))

    def predict(self, windows: Windows) -> np.ndarray:
        q = self.predict_raw(windows)
        model = self.config.model
        if model.calibration_window is None or self.outcomes is None:
            return q
        pool = self.outcomes.merged(self._outcomes(windows, q))
        factors = pool.factors(windows.tickers, windows.end_dates, model.calibration_window,
                               model.calibration_min_days, model.intervals)  # fmt: skip
        return recalibrate(q, factors, model.quantiles, model.intervals)

    def calibrations(self, recent: Windows) -> dict[str, Calibration]:
        """Each ticker's factors for a forecast made after the last of `recent` (the served
        bundle's, for histories too short to calibrate on)."""
        model = self.config.model
        if model.calibration_window is None or self.outcomes is None:
            return {}
        pool = self.outcomes.merged(self._outcomes(recent, self.predict_raw(recent)))
        out = {}
        for ticker in dict.fromkeys(pool.tickers.tolist()):
            own = pool.tickers == ticker
            found = latest_calibration(pool.scores[own], pool.known_at[own],
                                       model.calibration_window, model.calibration_min_days,
                                       model.intervals, "training")  # fmt: skip
            if found is not None:
                out[str(ticker)] = found
        return out

    def _outcomes(self, windows: Windows, q: np.ndarray) -> Outcomes:
        y = np.log(windows.target_close / windows.last_close)
        model = self.config.model
        return Outcomes.of(q, y, windows.tickers, windows.target_dates, model.quantiles,
                           model.intervals)  # fmt: skip
