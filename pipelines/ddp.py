"""Multi-process training: what a process that is not rank 0 does.

With `training.strategy: ddp`, every training process runs the same `forecaster train`
command: Lightning starts the local ones itself (re-running the command line), `torchrun` or
SLURM's `srun` start them on every node. Rank 0 runs the whole pipeline (lock, MLflow,
evaluation, registry, gate). Every other rank only joins the fits: it prepares the same data
and trains the same networks, whose gradients DDP averages with rank 0's, and exits without
touching MLflow or the registry.
"""

from __future__ import annotations

import logging
import os

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import prepare
from forecaster.data.sources import load_frames
from forecaster.methods.lstm import LSTMForecaster

logger = logging.getLogger(__name__)

# Set by torchrun (RANK), SLURM (SLURM_PROCID) and Lightning's own launcher (LOCAL_RANK,
# NODE_RANK) in the processes they start.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def worker_rank() -> int:
    """A non-zero rank when a launcher started this process as one of several training
    processes of which it is not the first; 0 otherwise."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


def train_as_worker(config: ForecasterConfig) -> None:
    if config.training.devices == 1 and config.training.num_nodes == 1:
        logger.warning("rank %d of a single-process config: nothing to join", worker_rank())
        return
    logger.info("rank %d: joining the training of every network", worker_rank())
    # Rank 0 reports the epochs; the same synced figures from every rank would repeat them.
    logging.getLogger("forecaster.methods.network.train").setLevel(logging.WARNING)
    LSTMForecaster(config).fit(prepare(load_frames(config.data), config))
