"""The plain `nn.Module`: a stacked LSTM over the feature window and a quantile head.

It knows nothing of Lightning, losses or optimisers, so the served model can use it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LSTMQuantileNet(nn.Module):
    """Maps (batch, lookback, n_features) windows to ordered quantiles of the next log return.

    The head predicts the median and positive offsets (softplus) below and above it,
    so the quantiles cannot cross by construction (no sorting after the fact). Outputs are in
    return units: the head works in units of `target_scale` (the training targets' standard
    deviation), kept as a buffer so the weights file carries it.
    """

    target_scale: torch.Tensor

    def __init__(
        self,
        n_features: int,
        hidden_size: int = 32,
        num_layers: int = 2,
        dropout: float = 0.1,
        n_quantiles: int = 3,
        target_scale: float = 1.0,
        median_index: int | None = None,
        vol_feature: int | None = None,
        fixed_median: bool = False,
    ) -> None:
        super().__init__()
        # model.median = persistence: the median is a zero log return whatever the weights, and
        # the head's median output is ignored; the offsets around it are still learned.
        self.fixed_median = fixed_median
        # Index of the trailing-volatility feature: when set, the head forecasts the return in
        # units of the window's own realised volatility (the scaler's inverse recovers it from
        # the scaled input), so the bands widen and narrow with the regime by construction.
        self.vol_feature = vol_feature
        self.median_index = n_quantiles // 2 if median_index is None else median_index
        if not 0 <= self.median_index < n_quantiles:
            raise ValueError(f"median_index {median_index} is outside 0..{n_quantiles - 1}")
        self.n_quantiles = n_quantiles
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(hidden_size, n_quantiles)
        self.register_buffer("target_scale", torch.tensor(float(target_scale)))
        # Inverse of the feature scaler for the volatility feature (centre, scale).
        self.register_buffer("vol_unscale", torch.tensor([0.0, 1.0]))

    def set_vol_unscale(self, center: float, scale: float) -> None:
        self.vol_unscale = torch.tensor([float(center), float(scale)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        quantiles = self.to_quantiles(self.head(output[:, -1, :]))
        if self.vol_feature is None:
            return quantiles * self.target_scale
        vol = x[:, -1, self.vol_feature] * self.vol_unscale[1] + self.vol_unscale[0]
        # Floor: a flat stretch of prices must not collapse the bands to nothing.
        vol = torch.clamp(vol, min=0.1 * float(self.target_scale))
        return quantiles * vol.unsqueeze(1)

    def to_quantiles(self, raw: torch.Tensor) -> torch.Tensor:
        """Quantiles in increasing level order: the median plus cumulated positive offsets
        outward on each side, so no two can cross whatever the weights."""
        m = self.median_index
        median = raw[:, m : m + 1]
        if self.fixed_median:
            median = torch.zeros_like(median)
        below = nn.functional.softplus(raw[:, :m]).flip(1).cumsum(1).flip(1)
        above = nn.functional.softplus(raw[:, m + 1 :]).cumsum(1)
        return torch.cat([median - below, median, median + above], dim=1)


class QuantileEnsemble(nn.Module):
    """Networks trained from different seeds; the forecast is the mean of their quantiles.

    Averaging quantiles level by level (Vincentisation) keeps them ordered, since a mean of
    non-decreasing vectors is non-decreasing, and evens out how one seed happens to set the
    width of the bands, which matters more to interval coverage than to the median.
    """

    def __init__(self, members: Sequence[LSTMQuantileNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        if any((m.median_index, m.vol_feature, m.n_quantiles, m.fixed_median)
               != (first.median_index, first.vol_feature, first.n_quantiles, first.fixed_median)
               for m in members):  # fmt: skip
            raise ValueError(
                "ensemble members must share quantile levels, volatility feature and median"
            )
        self.members = nn.ModuleList(members)
        self.median_index = first.median_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' forwards, with the heads of all members computed as one
        batched product: on the served path each small op costs more in dispatch than in
        arithmetic, and this halves the ops after the LSTMs. Equal to averaging
        `member(x)` up to float32 rounding."""
        members: list[LSTMQuantileNet] = list(self.members)  # type: ignore[arg-type]
        first = members[0]
        last = torch.stack([m.lstm(x)[0][:, -1, :] for m in members])  # (M, batch, hidden)
        weight = torch.stack([m.head.weight for m in members]).transpose(1, 2)
        bias = torch.stack([m.head.bias for m in members]).unsqueeze(1)
        raw = torch.baddbmm(bias, last, weight)  # (M, batch, quantiles)
        quantiles = first.to_quantiles(raw.reshape(-1, raw.shape[-1])).reshape(raw.shape)
        scale = torch.stack([m.target_scale for m in members]).view(-1, 1)  # (M, 1)
        if first.vol_feature is None:
            return (quantiles * scale.unsqueeze(2)).mean(dim=0)
        unscale = torch.stack([m.vol_unscale for m in members])  # (M, 2): centre, scale
        vol = x[:, -1, first.vol_feature].unsqueeze(0) * unscale[:, 1:2] + unscale[:, 0:1]
        vol = torch.maximum(vol, 0.1 * scale)  # the members' floor, see LSTMQuantileNet
        return (quantiles * vol.unsqueeze(2)).mean(dim=0)


def combine(members: Sequence[LSTMQuantileNet]) -> nn.Module:
    """The served network: one member as itself (its weights file keeps the single-network
    layout), several as their ensemble."""
    return members[0] if len(members) == 1 else QuantileEnsemble(members)
