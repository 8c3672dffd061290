"""The LightningModule: owns the pinball loss, optimiser and logged metrics (training only)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch

from forecaster.model.network import LSTMQuantileNet


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Mean quantile (pinball) loss; `pred` is (batch, n_quantiles), `target` (batch,)."""
    diff = target.unsqueeze(1) - pred
    return torch.maximum(quantiles * diff, (quantiles - 1.0) * diff).mean()


class LitForecaster(pl.LightningModule):
    quantiles: torch.Tensor

    def __init__(
        self,
        network: LSTMQuantileNet,
        quantiles: Sequence[float],
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        # The network is an injected module, saved by its weights, not as a hyperparameter.
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))
        self.median_index = len(quantiles) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)  # type: ignore[no-any-return]

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        pred = self(x)
        # Loss in units of the target's scale, so its size does not depend on the asset.
        scale = self.network.target_scale
        loss = pinball_loss(pred / scale, y / scale, self.quantiles)
        mae = (pred[:, self.median_index] - y).abs().mean()
        return loss, mae

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, mae = self._loss(batch)
        size = batch[0].shape[0]
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=size, prog_bar=True)
        self.log("val_mae_return", mae, on_step=False, on_epoch=True, batch_size=size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )
