"""Training throughput of the Lightning pipeline next to a plain PyTorch loop, same run.

    python benchmarks/bench_training.py [--epochs 5] [--repeats 3]

Both train the same network (default config) on the same scaled ^GSPC training windows with the
same batch size, shuffling, AdamW, pinball loss and gradient clipping; validation and
checkpointing are off in both so only the training loop is compared. Reports windows/s medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass

import lightning.pytorch as pl
import torch

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import prepare
from forecaster.data.scaling import FeatureScaler
from forecaster.data.sources import load_frames
from forecaster.methods.network.datamodule import WindowDataModule
from forecaster.methods.network.lit_module import LitForecaster, pinball_loss
from forecaster.methods.network.spec import NetworkSpec


@dataclass(frozen=True)
class Setup:
    """What both loops share: config, data, the target scale and the fitted scaler."""

    config: ForecasterConfig
    data: WindowDataModule
    scale: float
    scaler: FeatureScaler

    def network(self) -> torch.nn.Module:
        """A freshly seeded network, identical for both loops."""
        pl.seed_everything(0, verbose=False)
        return NetworkSpec.from_config(self.config, self.scaler).member(self.scale)


def lightning_run(setup: Setup, epochs: int) -> float:
    config, data = setup.config, setup.data
    net = setup.network()
    module = LitForecaster(net, config.model.quantiles, config.training.learning_rate)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True,
        gradient_clip_val=config.training.gradient_clip, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return time.perf_counter() - start


def plain_run(setup: Setup, epochs: int) -> float:
    config, data, scale = setup.config, setup.data, setup.scale
    net = setup.network()
    quantiles = torch.tensor(config.model.quantiles)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.training.learning_rate)
    loader = data.train_dataloader()
    start = time.perf_counter()
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            optimiser.zero_grad()
            loss = pinball_loss(net(x) / scale, y / scale, quantiles)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.training.gradient_clip)
            optimiser.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")

    config = ForecasterConfig()
    prepared = prepare(load_frames(config.data), config)
    train = prepared.part("train")
    scale = float(train.y.std())
    data = WindowDataModule(train, prepared.part("val"), config.training.batch_size, 0)
    n = len(train) * args.epochs

    setup = Setup(config, data, scale, prepared.scaler)
    lightning_run(setup, 1)  # warm-up: imports, allocator, thread pools
    plain_run(setup, 1)
    times: dict[str, list[float]] = {"plain PyTorch loop": [], "Lightning": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        times["plain PyTorch loop"].append(plain_run(setup, args.epochs))
        times["Lightning"].append(lightning_run(setup, args.epochs))
    print(
        f"{len(train)} training windows x lookback {config.windows.lookback} x "
        f"{len(train.feature_names)} features, batch {config.training.batch_size}, "
        f"{args.epochs} epochs, hidden {config.model.hidden_size} x {config.model.num_layers}"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, runs in times.items():
        print(f"{name:<20} median {medians[name]:6.2f} s  {n / medians[name]:8.0f} windows/s  "
              f"runs: {', '.join(f'{t:.2f}' for t in runs)}")  # fmt: skip
    overhead = medians["Lightning"] / medians["plain PyTorch loop"] - 1
    print(f"Lightning overhead: {100 * overhead:+.1f}%")
    print(json.dumps({"times_s": times, "overhead": overhead}))


if __name__ == "__main__":
    main()
