"""Ridge regression on the flattened windows, with quantiles from its validation residuals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import Ridge

from forecaster.data.dataset import PreparedData
from forecaster.data.scaling import FeatureScaler
from forecaster.data.windows import Windows
from forecaster.errors import NotFittedError
from forecaster.methods.windowed import QuantileForecaster


def fit_ridge(train: Windows, val: Windows, alphas: Sequence[float]) -> Ridge:
    """The L2 strength is picked on the validation windows, as the LSTM's epochs are, so the
    baseline gets the same care as the model it is compared with."""
    x_train, x_val = train.x.reshape(len(train), -1), val.x.reshape(len(val), -1)
    best: tuple[float, Ridge] | None = None
    for alpha in alphas:
        model = Ridge(alpha=alpha).fit(x_train, train.y)
        error = float(np.mean((model.predict(x_val) - val.y) ** 2))
        if best is None or error < best[0]:
            best = (error, model)
    if best is None:
        raise ValueError("no ridge alphas to try")
    return best[1]


class LinearQuantileForecaster(QuantileForecaster):
    """Point forecast plus the empirical quantiles of its validation residuals, so the
    quantiles are ordered and the spread is what the point forecast misses out of sample."""

    name = "linear"

    def __init__(self, levels: Sequence[float], alphas: Sequence[float]) -> None:
        super().__init__(levels)
        self.alphas = tuple(alphas)
        self.ridge: Ridge | None = None
        self.offsets = np.zeros(len(self.levels))
        self._scaler: FeatureScaler | None = None

    def fit(self, data: PreparedData) -> LinearQuantileForecaster:
        train, val = data.part("train"), data.part("val")
        self.ridge = fit_ridge(train, val, self.alphas)
        residuals = val.y - self.ridge.predict(val.x.reshape(len(val), -1))
        self.offsets = np.quantile(residuals.astype(np.float64), self.levels)
        self._scaler = data.scaler
        return self

    def predict_point(self, windows: Windows) -> np.ndarray:
        if self.ridge is None or self._scaler is None:
            raise NotFittedError("linear: call fit() before predict()")
        x = self._scaler.transform(windows.x)
        return np.asarray(self.ridge.predict(x.reshape(len(windows), -1)), dtype=np.float64)

    def predict(self, windows: Windows) -> np.ndarray:
        out: np.ndarray = self.predict_point(windows)[:, None] + self.offsets[None, :]
        return out
