"""Batched forward passes of the plain network; shared by training-time evaluation and the
served model, so both produce bit-identical numbers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BATCH = 4096


def predict_quantiles(network: nn.Module, x: np.ndarray) -> np.ndarray:
    """(n, lookback, n_features) float32 windows -> (n, n_quantiles) float64 log returns."""
    network.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + BATCH], np.float32))
            outputs.append(network(batch).double().numpy())
    if not outputs:
        return np.empty((0, 0))
    return np.concatenate(outputs)
