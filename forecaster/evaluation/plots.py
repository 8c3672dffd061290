"""PNG figures for a training run. Uses matplotlib's object API, no pyplot global state.

The headline picture is the realised daily log return inside the forecast bands: that is where
distributional skill (bands that widen before turbulent days) is visible. A price chart of a
next-day forecast mostly shows the forecast lagging the price, so it is kept but not the lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from forecaster.config import ModelConfig
from forecaster.data.windows import Windows
from forecaster.evaluation.metrics import Evaluation
from forecaster.evaluation.scores import pit_values
from forecaster.levels import interval_columns
from forecaster.methods import CLASSIC

BAND_ALPHA = {0.5: 0.45, 0.8: 0.3, 0.9: 0.18}


def return_bands_figure(ev: Evaluation, name: str, ticker: str) -> Figure:
    """Realised next-day log returns with `name`'s central intervals over the test period."""
    w = ev.windows
    mask = w.tickers == ticker
    dates = pd.DatetimeIndex(w.target_dates[mask])
    y = np.log(w.target_close[mask] / w.last_close[mask])
    q = ev.forecasts[name][mask]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for coverage in sorted(ev.intervals, reverse=True):
        lo, hi = interval_columns(ev.levels, coverage)
        ax.fill_between(dates, q[:, lo], q[:, hi], color="tab:blue", linewidth=0,
                        alpha=BAND_ALPHA.get(coverage, 0.25),
                        label=f"{coverage:.0%} band")  # fmt: skip
    lo, hi = interval_columns(ev.levels, max(ev.intervals))
    outside = (y < q[:, lo]) | (y > q[:, hi])
    ax.scatter(dates[~outside], y[~outside], s=4, color="black", label="realised")
    ax.scatter(dates[outside], y[outside], s=8, color="tab:red",
               label=f"outside {max(ev.intervals):.0%}")  # fmt: skip
    coverage_text = ", ".join(
        f"{c:.0%}: {ev.scores[name].intervals[c].coverage:.1%}" for c in sorted(ev.intervals)
    )
    ax.set_title(f"{ticker}: next-day log return in {name}'s bands (coverage {coverage_text})")
    ax.set_ylabel("log return")
    ax.legend(loc="lower left", ncols=5, fontsize="small")
    return fig


def pit_figure(ev: Evaluation, bins: int = 10) -> Figure:
    """PIT histograms: flat when the forecast distribution is calibrated."""
    w = ev.windows
    y = np.log(w.target_close / w.last_close)
    names = list(ev.forecasts)
    fig = Figure(figsize=(3.2 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        pit = pit_values(ev.forecasts[name], y, ev.levels)
        ax.hist(pit, bins=bins, range=(0, 1), density=True, color="tab:blue", alpha=0.7)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{name}: pinball {ev.scores[name].pinball:.3g}")
        ax.set_xlabel("PIT")
    axes[0].set_ylabel("density")
    return fig


def calibration_figure(ev: Evaluation) -> Figure:
    """Share of realised returns below each quantile vs its level, and interval coverage vs
    nominal, for every forecaster."""
    w = ev.windows
    y = np.log(w.target_close / w.last_close)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    levels = np.asarray(ev.levels)
    left.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--")
    width = 0.8 / max(len(ev.forecasts), 1)
    positions = np.arange(len(ev.intervals))
    for k, (name, q) in enumerate(ev.forecasts.items()):
        left.plot(levels, (y[:, None] <= q).mean(axis=0), marker="o", label=name)
        coverage = [ev.scores[name].intervals[c].coverage for c in ev.intervals]
        right.bar(positions + k * width, coverage, width=width, label=name)
    right.scatter(positions + width * (len(ev.forecasts) - 1) / 2, ev.intervals, marker="_",
                  s=600, color="black", label="nominal", zorder=3)  # fmt: skip
    left.set_xlabel("quantile level")
    left.set_ylabel("share of realised returns below")
    left.set_title("reliability per quantile")
    left.legend()
    right.set_xticks(positions + width * (len(ev.forecasts) - 1) / 2,
                     [f"{c:.0%}" for c in ev.intervals])  # fmt: skip
    right.set_ylim(0, 1)
    right.set_title("interval coverage vs nominal")
    right.legend(fontsize="small")
    return fig


def forecast_figure(test: Windows, q_all: np.ndarray, ticker: str, model: ModelConfig) -> Figure:
    """Median price forecast vs realised close with the headline band (not the headline)."""
    mask = test.tickers == ticker
    dates = pd.DatetimeIndex(test.target_dates[mask])
    last = test.last_close[mask]
    q = q_all[mask]
    lo, hi = interval_columns(model.quantiles, model.interval_level)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(
        dates, last * np.exp(q[:, lo]), last * np.exp(q[:, hi]), alpha=0.3,
        label=f"{model.interval_level:.0%} interval", color="tab:blue", linewidth=0,
    )  # fmt: skip
    ax.plot(dates, test.target_close[mask], color="black", linewidth=0.9, label="actual close")
    ax.plot(dates, last * np.exp(q[:, model.median_index]), color="tab:blue", linewidth=0.9,
            label="forecast (median)")  # fmt: skip
    ax.set_title(f"{ticker}: next-day price forecast vs actual (a lagged line; see return bands)")
    ax.set_ylabel("close")
    ax.legend(loc="upper left")
    return fig


def training_curves_figure(members: Sequence[Any]) -> Figure:
    """Train (dashed) and validation (solid) loss per epoch, one colour per ensemble member."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for i, member in enumerate(members):
        history = member.history
        epochs = [r.epoch + 1 for r in history]
        tag = f"member {i + 1} " if len(members) > 1 else ""
        (line,) = ax.plot(epochs, [r.val_loss for r in history], marker="o",
                          label=f"{tag}validation loss")  # fmt: skip
        ax.plot(epochs, [r.train_loss for r in history], linestyle="--", color=line.get_color(),
                label=f"{tag}train loss")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("pinball loss (target-std units)")
    ax.set_title("training curves")
    ax.legend(fontsize="small")
    return fig


def per_ticker_figure(per_ticker: dict[str, dict[str, Any]]) -> Figure:
    """Pinball ratio of the model vs each classic comparator, per ticker (below 1: the model is
    better on that ticker's own test days), with the headline coverage beside it."""
    tickers = list(per_ticker)
    x = np.arange(len(tickers))
    fig = Figure(figsize=(max(6.0, 1.2 * len(tickers) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    compared = [
        vs
        for vs in CLASSIC
        if any(per_ticker[t].get(f"pinball_ratio_vs_{vs}") is not None for t in tickers)
    ]
    width = 0.8 / max(1, len(compared))
    for k, vs in enumerate(compared):
        ratios = [per_ticker[t].get(f"pinball_ratio_vs_{vs}") for t in tickers]
        heights = [np.nan if r is None else r for r in ratios]
        offset = (k - (len(compared) - 1) / 2) * width
        ax.bar(x + offset, heights, width=width, color=f"C{k}", label=f"vs {vs}")
    ax.axhline(1.0, color="black", linewidth=0.8)
    low = min([0.9, *(v for t in tickers for v in _ratios(per_ticker[t]))])
    high = max([1.05, *(v for t in tickers for v in _ratios(per_ticker[t]))])
    ax.set_ylim(low - 0.01, high + 0.01)
    labels = []
    for t in tickers:
        block = per_ticker[t]
        headline = str(block["model"]["interval_level"])
        labels.append(
            f"{t}\n{block['n_days']} days\n{float(headline):.0%} cov "
            f"{100 * block['model']['coverage'][headline]:.1f}%"
        )
    ax.set_xticks(x, labels, fontsize="small")
    ax.set_ylabel("model pinball / baseline pinball")
    ax.set_title("Per ticker, on each ticker's own test days: below 1 the model is better")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def _ratios(block: dict[str, Any]) -> list[float]:
    return [
        float(block[f"pinball_ratio_vs_{vs}"])
        for vs in CLASSIC
        if block.get(f"pinball_ratio_vs_{vs}") is not None
    ]
