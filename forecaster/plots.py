"""PNG figures for a training run. Uses matplotlib's object API, no pyplot global state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from forecaster.windows import Windows


def forecast_figure(test: Windows, quantiles: np.ndarray, ticker: str, level: float) -> Figure:
    """Forecast (median) vs realised close with the interval band, over the test period."""
    mask = test.tickers == ticker
    dates = pd.DatetimeIndex(test.target_dates[mask])
    last = test.last_close[mask]
    q = quantiles[mask]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(
        dates, last * np.exp(q[:, 0]), last * np.exp(q[:, -1]), alpha=0.3,
        label=f"{level:.0%} interval", color="tab:blue", linewidth=0,
    )  # fmt: skip
    ax.plot(dates, test.target_close[mask], color="black", linewidth=0.9, label="actual close")
    ax.plot(dates, last * np.exp(q[:, q.shape[1] // 2]), color="tab:blue", linewidth=0.9,
            label="forecast (median)")  # fmt: skip
    ax.set_title(f"{ticker}: next-day forecast vs actual, test period")
    ax.set_ylabel("close")
    ax.legend(loc="upper left")
    return fig


def residual_figure(test: Windows, quantiles: np.ndarray) -> Figure:
    """Histogram of price errors of the model and of naive persistence on the same days."""
    median = test.last_close * np.exp(quantiles[:, quantiles.shape[1] // 2])
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    bins = 60
    ax.hist(median - test.target_close, bins=bins, alpha=0.6, label="model")
    ax.hist(test.last_close - test.target_close, bins=bins, alpha=0.6, label="naive")
    ax.set_title("forecast error (predicted - actual close), test period")
    ax.set_xlabel("price error")
    ax.legend()
    return fig


def training_curves_figure(history: Sequence[Any]) -> Figure:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = [r.epoch + 1 for r in history]
    ax.plot(epochs, [r.train_loss for r in history], marker="o", label="train loss")
    ax.plot(epochs, [r.val_loss for r in history], marker="o", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("pinball loss (target-std units)")
    ax.set_title("training curves")
    ax.legend()
    return fig
