"""The LightningModule: owns the pinball loss, optimiser and logged metrics (training only)."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
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
        self._train_sums = torch.zeros(2)
        self._val_sums = torch.zeros(3)
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
        # On the module's device: with a GPU, mixing in CPU tensors would fail.
        self._train_sums = torch.zeros(2, device=self.device)  # loss * batch size, sizes

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        loss, _ = self._loss(batch)
        # Summed here and logged once per epoch: per-step self.log calls cost more than a
        # step of this small network does.
        size = batch[0].shape[0]
        count = torch.tensor(float(size), device=loss.device)
        self._train_sums += torch.stack([loss.detach() * size, count])
        return loss

    def on_train_epoch_end(self) -> None:
        total, count = self._train_sums
        self.log("train_loss", total / count)

    def epoch_summary(self) -> dict[str, float]:
        """Mean train and validation metrics of the epoch that just ran (for callbacks, which
        Lightning calls before this module's own epoch-end hooks)."""
        total, count = self._train_sums
        val_loss, val_mae, val_count = self._val_sums
        nan = float("nan")
        return {
            "train_loss": float(total / count) if count else nan,
            "val_loss": float(val_loss / val_count) if val_count else nan,
            "val_mae_return": float(val_mae / val_count) if val_count else nan,
        }

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, device=self.device)  # loss * size, mae * size, sizes

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, mae = self._loss(batch)
        size = float(batch[0].shape[0])
        count = torch.tensor(size, device=loss.device)
        self._val_sums += torch.stack([loss * size, mae * size, count])

    def on_validation_epoch_end(self) -> None:
        loss, mae, count = self._val_sums
        self.log("val_loss", loss / count, prog_bar=True)
        self.log("val_mae_return", mae / count)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )
