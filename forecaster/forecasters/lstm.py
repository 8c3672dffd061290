"""The Lightning LSTM behind the forecaster interface (training side: imports Lightning)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from lightning.pytorch.callbacks import Callback

from forecaster.config import ForecasterConfig
from forecaster.dataset import PreparedData
from forecaster.errors import NotFittedError
from forecaster.forecasters.base import QuantileForecaster
from forecaster.scaling import FeatureScaler
from forecaster.train import TrainedModel, train_network
from forecaster.windows import Windows


class LSTMForecaster(QuantileForecaster):
    """Early-stopped on the validation windows; scales windows with the fold's scaler."""

    name = "model"

    def __init__(self, config: ForecasterConfig, callbacks: Sequence[Callback] = ()) -> None:
        super().__init__(config.model.quantiles)
        self.config = config
        self.callbacks = callbacks
        self.trained: TrainedModel | None = None
        self.scaler: FeatureScaler | None = None

    def fit(self, data: PreparedData) -> LSTMForecaster:
        self.trained = train_network(
            data.part("train"), data.part("val"), self.config, data.scaler, self.callbacks
        )
        self.scaler = data.scaler
        return self

    def predict(self, windows: Windows) -> np.ndarray:
        if self.trained is None or self.scaler is None:
            raise NotFittedError("model: call fit() before predict()")
        return self.trained.predict(self.scaler.transform(windows.x))
