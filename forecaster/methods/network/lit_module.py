"""The LightningModule: owns the pinball loss, optimiser and logged metrics (training only)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric

from forecaster.methods.network.network import LSTMQuantileNet


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Mean quantile (pinball) loss; `pred` is (batch, n_quantiles), `target` (batch,)."""
    diff = target.unsqueeze(1) - pred
    return torch.maximum(quantiles * diff, (quantiles - 1.0) * diff).mean()


def _mean(metric: MeanMetric) -> float:
    return float(metric.compute()) if metric.update_count else float("nan")


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
        # Epoch means weighted by batch size (the last batch is smaller). Updated per step and
        # logged once per epoch: per-step self.log calls cost more than a step of this network.
        # nan_strategy "disable": a NaN loss must reach the mean (divergence is detected there),
        # not be dropped with a warning, and skipping the per-step NaN check keeps steps cheap.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_mae = MeanMetric(nan_strategy="disable")
        # The network is an injected module, saved by its weights, not as a hyperparameter.
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))
        self.median_index = network.median_index

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

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.train_loss.update(loss.detach(), weight=batch[0].shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        # Already a mean over every DDP rank (torchmetrics syncs on compute); sync_dist only
        # keeps Lightning from warning about it, at the cost of one scalar all-reduce.
        self.log("train_loss", self.train_loss.compute(), sync_dist=True)

    def epoch_summary(self) -> dict[str, float]:
        """Mean train and validation metrics of the epoch that just ran (for callbacks, which
        Lightning calls before this module's own epoch-end hooks)."""
        return {
            "train_loss": _mean(self.train_loss),
            "val_loss": _mean(self.val_loss),
            "val_mae_return": _mean(self.val_mae),
        }

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()
        self.val_mae.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, mae = self._loss(batch)
        size = batch[0].shape[0]
        self.val_loss.update(loss, weight=size)
        self.val_mae.update(mae, weight=size)

    def on_validation_epoch_end(self) -> None:
        self.log("val_loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        self.log("val_mae_return", self.val_mae.compute(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )
