"""The one recipe from a config to the network's architecture: what training builds and what
the served bundle rebuilds before loading a weights file into it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from forecaster.config import ForecasterConfig
from forecaster.data.scaling import FeatureScaler
from forecaster.levels import median_index
from forecaster.methods.network.network import LSTMQuantileNet, combine


@dataclass(frozen=True)
class NetworkSpec:
    n_features: int
    hidden_size: int
    num_layers: int
    dropout: float
    n_quantiles: int
    median_index: int
    # Index of the feature whose last value scales the forecast (model.scale_by), or None, and
    # the scaler's (centre, scale) for it, so the network can un-scale it from its input.
    scale_feature: int | None = None
    vol_unscale: tuple[float, float] = (0.0, 1.0)
    ensemble_size: int = 1
    # model.median == "persistence": the median is a zero log return, not learned.
    fixed_median: bool = False

    @classmethod
    def from_config(cls, config: ForecasterConfig, scaler: FeatureScaler) -> NetworkSpec:
        scale_by = config.model.scale_by
        feature = config.features.names.index(scale_by) if scale_by else None
        return cls(
            n_features=len(config.features.names),
            hidden_size=config.model.hidden_size,
            num_layers=config.model.num_layers,
            dropout=config.model.dropout,
            n_quantiles=len(config.model.quantiles),
            median_index=median_index(config.model.quantiles),
            scale_feature=feature,
            vol_unscale=_unscale(scaler, feature),
            ensemble_size=config.model.ensemble_size,
            fixed_median=config.model.median == "persistence",
        )

    def member(self, target_scale: float = 1.0) -> LSTMQuantileNet:
        """One untrained network of the ensemble; its volatility un-scaling is a buffer, so
        loaded weights carry it too."""
        network = LSTMQuantileNet(
            n_features=self.n_features,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            n_quantiles=self.n_quantiles,
            target_scale=target_scale,
            median_index=self.median_index,
            vol_feature=self.scale_feature,
            fixed_median=self.fixed_median,
        )
        if self.scale_feature is not None:
            network.set_vol_unscale(*self.vol_unscale)
        return network

    def build(self) -> nn.Module:
        """The untrained architecture the weights file fits."""
        return combine([self.member() for _ in range(self.ensemble_size)])


def _unscale(scaler: FeatureScaler, feature: int | None) -> tuple[float, float]:
    if feature is None:
        return (0.0, 1.0)
    return (float(scaler.center[feature]), float(scaler.scale[feature]))
