"""The LightningDataModule over scaled windows from the data pipeline (training only)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from forecaster.data.windows import Windows


def _dataset(windows: Windows) -> TensorDataset:
    return TensorDataset(torch.from_numpy(windows.x), torch.from_numpy(windows.y))


def ticker_weights(tickers: np.ndarray) -> np.ndarray:
    """Per-window sampling weights that give every ticker the same share of an epoch."""
    _, inverse, counts = np.unique(tickers, return_inverse=True, return_counts=True)
    weights: np.ndarray = 1.0 / counts[inverse]
    return weights


class WindowDataModule(pl.LightningDataModule):
    """Train batches are shuffled with a seeded generator, so runs repeat exactly.

    `epoch_windows` caps an epoch: with more training windows than that, each epoch draws that
    many (with replacement) instead of passing over all of them. `balance_tickers` draws each
    ticker equally often, so a long index history does not drown a young stock. One ticker
    with no more windows than the cap gets a plain shuffled pass.
    """

    def __init__(
        self,
        train: Windows,
        val: Windows,
        batch_size: int,
        seed: int,
        epoch_windows: int | None = None,
        balance_tickers: bool = False,
    ) -> None:
        super().__init__()
        self.train_windows = train
        self.val_windows = val
        self.batch_size = batch_size
        self.seed = seed
        self.epoch_windows = epoch_windows
        self.balance_tickers = balance_tickers

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(self.seed)
        dataset = _dataset(self.train_windows)
        n = len(self.train_windows)
        balance = self.balance_tickers and len(np.unique(self.train_windows.tickers)) > 1
        draws = min(n, self.epoch_windows or n)
        if not balance and draws == n:  # one shuffled pass over every window
            return DataLoader(
                dataset, batch_size=self.batch_size, shuffle=True, generator=generator
            )
        weights = ticker_weights(self.train_windows.tickers) if balance else np.ones(n)
        sampler = WeightedRandomSampler(
            weights.tolist(), num_samples=draws, replacement=True, generator=generator
        )
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(_dataset(self.val_windows), batch_size=max(self.batch_size, 256))
