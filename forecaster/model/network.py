"""The plain `nn.Module`: a stacked LSTM over the feature window and a quantile head.

It knows nothing of Lightning, losses or optimisers, so the served model can use it alone.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMQuantileNet(nn.Module):
    """Maps (batch, lookback, n_features) windows to ordered quantiles of the next log return.

    The head predicts the median and positive offsets (softplus) below and above it,
    so the quantiles cannot cross. Outputs are in return units: the head works in units of
    `target_scale` (the training targets' standard deviation), kept as a buffer so the weights
    file carries it.
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
    ) -> None:
        super().__init__()
        if n_quantiles % 2 != 1:
            raise ValueError("n_quantiles must be odd: a median plus symmetric tails")
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        raw = self.head(output[:, -1, :])
        return self.to_quantiles(raw) * self.target_scale

    def to_quantiles(self, raw: torch.Tensor) -> torch.Tensor:
        """Column order: lower tails (outermost first), median, upper tails (innermost first)."""
        half = self.n_quantiles // 2
        median = raw[:, half : half + 1]
        below = nn.functional.softplus(raw[:, :half]).flip(1).cumsum(1).flip(1)
        above = nn.functional.softplus(raw[:, half + 1 :]).cumsum(1)
        return torch.cat([median - below, median, median + above], dim=1)
