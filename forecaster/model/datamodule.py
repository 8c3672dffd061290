"""The LightningDataModule over scaled windows from the data pipeline (training only)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from forecaster.windows import Windows


def _dataset(windows: Windows) -> TensorDataset:
    return TensorDataset(torch.from_numpy(windows.x), torch.from_numpy(windows.y))


class WindowDataModule(pl.LightningDataModule):
    """Train batches are shuffled with a seeded generator, so runs repeat exactly."""

    def __init__(self, train: Windows, val: Windows, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train_windows = train
        self.val_windows = val
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            _dataset(self.train_windows),
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
        )

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(_dataset(self.val_windows), batch_size=max(self.batch_size, 256))
