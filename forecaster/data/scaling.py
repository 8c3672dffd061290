"""Feature scaling fitted on training dates only, stored as plain numbers.

The fitted state is a frozen dataclass that round-trips through JSON, so the served model
applies exactly the transform the network was trained with, and inference needs no
scikit-learn pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

ScalerMethod = Literal["standard", "robust"]


@dataclass(frozen=True)
class FeatureScaler:
    method: ScalerMethod
    feature_names: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(
        cls, rows: np.ndarray, feature_names: tuple[str, ...], method: ScalerMethod = "standard"
    ) -> FeatureScaler:
        """Fit on (n_rows, n_features) training rows; constant features get scale 1."""
        if rows.ndim != 2 or rows.shape[1] != len(feature_names):
            raise ValueError(f"expected rows of shape (n, {len(feature_names)}), got {rows.shape}")
        if rows.shape[0] < 2:
            raise ValueError("need at least two training rows to fit a scaler")
        # Imported here: serving only transforms and should not pay for importing scikit-learn.
        from sklearn.preprocessing import RobustScaler, StandardScaler

        if method == "standard":
            fitted = StandardScaler().fit(rows)
            center = fitted.mean_
        else:
            fitted = RobustScaler().fit(rows)
            center = fitted.center_
        return cls(
            method=method,
            feature_names=tuple(feature_names),
            center=tuple(float(v) for v in center),
            scale=tuple(float(v) for v in fitted.scale_),
        )

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale any array whose last axis is the features; returns float32."""
        if x.shape[-1] != len(self.feature_names):
            raise ValueError(
                f"scaler was fitted on {len(self.feature_names)} features, got {x.shape[-1]}"
            )
        center = np.asarray(self.center, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        return ((x - center) / scale).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "feature_names": list(self.feature_names),
            "center": list(self.center),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureScaler:
        try:
            scaler = cls(
                method=data["method"],
                feature_names=tuple(data["feature_names"]),
                center=tuple(float(v) for v in data["center"]),
                scale=tuple(float(v) for v in data["scale"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid scaler state: {exc}") from exc
        if not len(scaler.feature_names) == len(scaler.center) == len(scaler.scale):
            raise ValueError(
                "invalid scaler state: feature_names, center and scale differ in length"
            )
        return scaler
