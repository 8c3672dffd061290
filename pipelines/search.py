"""What one tuning trial is: parameters drawn from the typed search space, and their score.

The score is the mean validation pinball loss over walk-forward folds cut from the dates
before the test period. The test days stay unseen by the search: they are for the gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
import yaml
from lightning.pytorch.callbacks import Callback

from forecaster.config import (
    Choice,
    ChoiceValue,
    ForecasterConfig,
    IntRange,
    SearchParam,
    SplitConfig,
    with_values,
)
from forecaster.data.dataset import PreparedData, build_windows, fit_scaler, last_train_days
from forecaster.data.splits import chronological_split, walk_forward_folds
from forecaster.errors import ConfigError
from forecaster.evaluation.scores import pinball
from forecaster.methods.lstm import LSTMForecaster
from forecaster.methods.network.train import EpochRecord

logger = logging.getLogger(__name__)


def label(choice: ChoiceValue) -> str | int | float | bool | None:
    """How Optuna stores a choice: scalars as they are, a list by its YAML text."""
    if isinstance(choice, tuple):
        return str(yaml.safe_dump(list(choice), default_flow_style=True, width=10_000)).strip()
    return choice


def suggest(trial: optuna.Trial, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """Draw one value per dotted config key."""
    values: dict[str, Any] = {}
    for key, param in space.items():
        if isinstance(param, Choice):
            labels = [label(c) for c in param.choices]
            values[key] = param.choices[labels.index(trial.suggest_categorical(key, labels))]
        elif isinstance(param, IntRange):
            values[key] = trial.suggest_int(key, param.low, param.high, step=param.step,
                                            log=param.log)  # fmt: skip
        else:
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
    return values


def distribution(param: SearchParam) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution `suggest` draws a parameter from."""
    if isinstance(param, Choice):
        return optuna.distributions.CategoricalDistribution([label(c) for c in param.choices])
    if isinstance(param, IntRange):
        return optuna.distributions.IntDistribution(param.low, param.high, log=param.log,
                                                    step=param.step)  # fmt: skip
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log)


def space_conflict(study: optuna.Study, space: Mapping[str, SearchParam]) -> str | None:
    """Why `space` cannot join the study's earlier trials (Optuna refuses a parameter whose
    range or choices changed), or None."""
    for trial in study.get_trials(deepcopy=False):
        for key, earlier in trial.distributions.items():
            if key not in space:
                continue
            try:
                optuna.distributions.check_distribution_compatibility(
                    earlier, distribution(space[key])
                )
            except ValueError:
                return f"{key} was drawn from {earlier} in trial {trial.number}"
    return None


def _current(config: ForecasterConfig, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def current_params(
    config: ForecasterConfig, space: Mapping[str, SearchParam]
) -> dict[str, Any] | None:
    """The config's own values as trial parameters (Optuna's stored form), or None when one
    lies outside the space: enqueued first, they put the untuned config in the study."""
    params: dict[str, Any] = {}
    for key, param in space.items():
        value = _current(config, key)
        if isinstance(param, Choice):
            if value not in param.choices:
                return None
            params[key] = label(value)
        elif isinstance(param, IntRange):
            if not param.low <= value <= param.high or (value - param.low) % param.step:
                return None
            params[key] = int(value)
        else:
            if not param.low <= value <= param.high:
                return None
            params[key] = float(value)
    return params


def trial_config(
    base: ForecasterConfig, values: Mapping[str, Any], number: int
) -> ForecasterConfig:
    """The base config with a trial's values and the tuning ensemble size."""
    # Each trial trains in its worker's process: tuning scales out by workers, not DDP.
    single = {"training.devices": 1, "training.strategy": "auto", "training.num_nodes": 1}
    values = {**values, "model.ensemble_size": base.tuning.ensemble_size, **single}
    return with_values(base, values, f"tuning trial {number}")


def test_start(config: ForecasterConfig, frames: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """First test target date of the base config, the earliest over tickers: fixed for the
    whole study, so a trial's lookback or features cannot move any ticker's test period into
    the search."""
    windows = build_windows(frames, config)
    return chronological_split(windows.target_dates, config.split, windows.tickers).test_start


@dataclass(frozen=True)
class FoldScore:
    fold: int
    pinball: float  # mean over the fold's scored days and the quantile levels, log returns
    days: int
    epochs: tuple[EpochRecord, ...]  # of the first ensemble member


def score_config(
    config: ForecasterConfig,
    frames: Mapping[str, pd.DataFrame],
    before: pd.Timestamp,
    callbacks: Sequence[Callback] = (),
    on_fold: Callable[[FoldScore], None] = lambda _: None,
) -> list[FoldScore]:
    """Train and score `config` on walk-forward folds of the windows whose target date is
    before `before`. `callbacks` (pruning) join the first fold's training."""
    windows = build_windows(frames, config)
    pre = windows.take(np.flatnonzero(windows.target_dates < np.datetime64(before)))
    tuning = config.tuning
    folds = walk_forward_folds(
        pre.target_dates,
        SplitConfig(folds=tuning.folds, test_fraction=tuning.fold_fraction,
                    val_fraction=config.split.val_fraction, gap=config.split.gap),
        pre.tickers,
    )  # fmt: skip
    scores = []
    for number, split in enumerate(folds, start=1):
        scaler = fit_scaler(frames, config, last_train_days(pre, split.train))
        data = PreparedData(windows=pre, split=split, scaler=scaler, frames=frames)
        model = LSTMForecaster(config, callbacks if number == 1 else ()).fit(data)
        scored = pre.take(split.test)
        loss = pinball(model.predict(scored), scored.y.astype("float64"), config.model.quantiles)
        if model.trained is None:
            raise ConfigError("tuning: the fold's model did not train")
        score = FoldScore(number, float(loss.mean()), len(scored), model.trained.members[0].history)
        on_fold(score)
        scores.append(score)
    return scores
