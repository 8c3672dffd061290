"""How many torch threads a training process takes: deliberate, never every core in every
process of a shared machine."""

from __future__ import annotations

import os

import pytest

from forecaster.config import load_config
from forecaster.methods.network.train import training_threads


def cores() -> int:
    return len(os.sched_getaffinity(0))


def test_the_configured_count_wins() -> None:
    config = load_config(None, ["training.torch_threads=3"])
    assert training_threads(config.training) == 3


def test_by_default_the_process_cores_are_shared_among_cpu_devices() -> None:
    assert training_threads(load_config(None).training) == cores()
    two = load_config(None, ["training.devices=2", "training.strategy=ddp"])
    assert training_threads(two.training) == max(1, cores() // 2)


def test_zero_threads_is_refused_at_load() -> None:
    from forecaster.errors import ConfigError

    with pytest.raises(ConfigError, match=r"training\.torch_threads"):
        load_config(None, ["training.torch_threads=0"])
