"""Training entry point: seeded, deterministic Lightning training with early stopping.

The best checkpoint (lowest val_loss) is restored before the network is returned.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn
from tqdm import tqdm

from forecaster.config import ForecasterConfig, TrainingConfig
from forecaster.data.scaling import FeatureScaler
from forecaster.data.windows import Windows
from forecaster.errors import TrainingError
from forecaster.methods.network.datamodule import WindowDataModule
from forecaster.methods.network.forward import predict_quantiles
from forecaster.methods.network.lit_module import LitForecaster
from forecaster.methods.network.network import LSTMQuantileNet, combine
from forecaster.methods.network.spec import NetworkSpec
from forecaster.progress import bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_mae_return: float


@dataclass(frozen=True)
class MemberFit:
    """How one ensemble member trained: its seed, per-epoch records and restored epoch."""

    seed: int
    history: tuple[EpochRecord, ...]
    best_epoch: int


@dataclass(frozen=True)
class TrainedModel:
    network: nn.Module  # one LSTMQuantileNet, or their QuantileEnsemble
    members: tuple[MemberFit, ...]

    @property
    def epochs(self) -> int:
        return sum(len(m.history) for m in self.members)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, lookback, n_features) scaled windows -> (n, n_quantiles) log-return quantiles."""
        return predict_quantiles(self.network, x)


class _History(Callback):
    """Collects epoch metrics; shows a bar with an ETA over the epochs on a terminal, and
    writes a plain log line per epoch otherwise."""

    def __init__(self, desc: str) -> None:
        self.records: list[EpochRecord] = []
        self.desc = desc
        self.bar: tqdm | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bar = bar(int(trainer.max_epochs or 0), self.desc, "epoch")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, LitForecaster):
            return
        summary = pl_module.epoch_summary()
        record = EpochRecord(
            epoch=trainer.current_epoch,
            train_loss=summary["train_loss"],
            val_loss=summary["val_loss"],
            val_mae_return=summary["val_mae_return"],
        )
        if not all(math.isfinite(v) for v in (record.train_loss, record.val_loss)):
            raise TrainingError(
                f"training diverged at epoch {record.epoch} (train_loss {record.train_loss}, "
                f"val_loss {record.val_loss}); lower training.learning_rate or check the data"
            )
        self.records.append(record)
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(train_loss=f"{record.train_loss:.4f}",
                                 val_loss=f"{record.val_loss:.4f}", refresh=False)  # fmt: skip
            self.bar.update(1)
            return
        logger.info(
            "epoch %d/%d train_loss %.5f val_loss %.5f val_mae_return %.6f",
            record.epoch + 1,
            trainer.max_epochs,
            record.train_loss,
            record.val_loss,
            record.val_mae_return,
        )


def train_network(
    train: Windows,
    val: Windows,
    config: ForecasterConfig,
    scaler: FeatureScaler,
    callbacks: Sequence[Callback] = (),
) -> TrainedModel:
    """Fit `model.ensemble_size` networks (seeds training.seed, +1, ...) on scaled train
    windows, each early-stopped on val, and return them combined, on the CPU.

    `callbacks` (e.g. a tuner's pruning callback) join the first member's Trainer only.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(training_threads(config.training))
    try:
        return _train_networks(train, val, config, scaler, callbacks)
    finally:
        torch.set_num_threads(previous)  # the caller's setting (a service's, a test's) stands


def training_threads(training: TrainingConfig) -> int:
    """torch's intra-op threads for one training process: the configured number, else this
    process's cores shared among the CPU processes that train one network together. torch's
    own default takes every core in every process, which thrashes when processes share a
    machine (one LSTM fit went from 3.5 s to 43 s beside another)."""
    if training.torch_threads is not None:
        return training.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    processes = training.devices if isinstance(training.devices, int) else 1
    return max(1, (cores or 1) // processes)


def _train_networks(
    train: Windows,
    val: Windows,
    config: ForecasterConfig,
    scaler: FeatureScaler,
    callbacks: Sequence[Callback],
) -> TrainedModel:
    size = config.model.ensemble_size
    networks, members = [], []
    for i in range(size):
        seed = config.training.seed + i
        if size > 1:
            logger.info("ensemble member %d/%d (seed %d)", i + 1, size, seed)
        desc = f"member {i + 1}/{size}" if size > 1 else "training"
        extra = callbacks if i == 0 else ()
        network, member = _train_member(train, val, config, scaler, seed, desc, extra)
        networks.append(network)
        members.append(member)
    combined = combine(networks)
    combined.eval()
    return TrainedModel(network=combined, members=tuple(members))


def _train_member(
    train: Windows,
    val: Windows,
    config: ForecasterConfig,
    scaler: FeatureScaler,
    seed: int,
    desc: str,
    callbacks: Sequence[Callback] = (),
) -> tuple[LSTMQuantileNet, MemberFit]:
    training = config.training
    pl.seed_everything(seed, workers=True, verbose=False)
    target_scale = float(np.std(train.y)) or 1.0
    network = NetworkSpec.from_config(config, scaler).member(target_scale)
    module = LitForecaster(
        network,
        quantiles=config.model.quantiles,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
    )
    data = WindowDataModule(
        train,
        val,
        training.batch_size,
        seed,
        epoch_windows=training.epoch_windows,
        balance_tickers=training.balance_tickers,
    )
    history = _History(desc)
    with tempfile.TemporaryDirectory(prefix="forecaster-ckpt-") as tmp:
        checkpoint = ModelCheckpoint(
            dirpath=tmp, monitor="val_loss", mode="min", save_top_k=1, save_weights_only=True
        )
        trainer = pl.Trainer(
            max_epochs=training.max_epochs,
            accelerator=training.accelerator,
            devices=training.devices,
            strategy=training.strategy,
            num_nodes=training.num_nodes,
            deterministic=True,
            gradient_clip_val=training.gradient_clip,
            callbacks=[
                EarlyStopping(monitor="val_loss", mode="min", patience=training.patience),
                checkpoint,
                history,
                *callbacks,
            ],
            logger=False,
            default_root_dir=tmp,
            enable_progress_bar=False,  # _History's bar: epochs with an ETA, not batches
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        with warnings.catch_warnings():
            # Windows are in memory: loader worker processes would only add start-up cost.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*treespec.*")
            trainer.fit(module, datamodule=data)
        if not checkpoint.best_model_path:
            raise TrainingError("training produced no checkpoint (no validation epoch ran)")
        if trainer.is_global_zero:  # other DDP ranks' networks are discarded (pipelines/ddp.py)
            state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
        device = str(trainer.strategy.root_device)
    best = min(history.records, key=lambda r: r.val_loss)
    network = module.network.cpu()
    network.eval()
    logger.info(
        "trained %d epoch(s) on %s; best epoch %d, val_loss %.5f",
        len(history.records),
        device,
        best.epoch + 1,
        best.val_loss,
    )
    return network, MemberFit(seed=seed, history=tuple(history.records), best_epoch=best.epoch)
