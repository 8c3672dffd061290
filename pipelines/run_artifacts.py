"""What a training run logs besides its metrics: the headline figures, the model's input
example and the registry tags of a version. The science (baselines, folds, scoring, the
walk-forward backtest) is `forecaster.evaluation.backtest`; the flow is `pipelines.retrain`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import PreparedData
from forecaster.evaluation.backtest import FoldResult
from forecaster.evaluation.metrics import GARCH, MODEL, NAIVE, Evaluation, summary_row
from forecaster.evaluation.plots import (
    calibration_figure,
    forecast_figure,
    per_ticker_figure,
    pit_figure,
    return_bands_figure,
    training_curves_figure,
)
from forecaster.registry.bundle import ModelBundle
from forecaster.registry.loader import model_history_input
from forecaster.registry.version_tags import VersionTags


def input_example(frames: Mapping[str, pd.DataFrame], bundle: ModelBundle) -> pd.DataFrame:
    ticker, frame = next(iter(frames.items()))
    return model_history_input(frame.iloc[-bundle.min_history :], ticker)


def log_figures(fold: FoldResult, config: ForecasterConfig) -> None:
    """The headline pictures: realised returns inside the model's and GARCH's bands."""
    ev = fold.evaluation
    for ticker in list(dict.fromkeys(ev.windows.tickers))[:4]:
        safe = "".join(c if c.isalnum() else "_" for c in ticker)
        for name in (MODEL, GARCH):
            if name in ev.forecasts:
                figure = return_bands_figure(ev, name, ticker)
                mlflow.log_figure(figure, f"plots/return_bands_{name}_{safe}.png")
        mlflow.log_figure(
            forecast_figure(ev.windows, ev.forecasts[MODEL], ticker, config.model),
            f"plots/forecast_{safe}.png",
        )
    mlflow.log_figure(pit_figure(ev), "plots/pit.png")
    mlflow.log_figure(calibration_figure(ev), "plots/calibration.png")
    mlflow.log_figure(training_curves_figure(fold.trained.members), "plots/training_curves.png")


def version_tags(data: PreparedData, ev: Evaluation, run_id: str) -> dict[str, str]:
    """Registry tags: what data the version saw and how it scored."""
    first = min(f.index[0] for f in data.frames.values()).date()
    last = max(f.index[-1] for f in data.frames.values()).date()
    summary = ev.summary()
    return VersionTags(
        tickers=tuple(data.frames),
        data_range=(first, last),
        test_range=(data.split.test_start.date(), data.split.test_end.date()),
        test_mae=ev.model.point.mae,
        naive_mae=ev.scores[NAIVE].point.mae,
        mae_ratio_vs_naive=summary["mae_ratio_vs_naive"],
        test_pinball=ev.model.pinball,
        pinball_ratio_vs_naive=summary["pinball_ratio_vs_naive"],
        pinball_ratio_vs_garch=summary["pinball_ratio_vs_garch"],
        run_id=run_id,
    ).to_tags()


def metric_key(text: str) -> str:
    """A ticker as MLflow accepts it in a metric name (^GSPC -> _GSPC)."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)


def log_per_ticker(ev: Evaluation, config: ForecasterConfig) -> dict[str, dict[str, Any]]:
    """Every ticker's own scores: per_ticker.json (the summary's keys per ticker), a table
    artifact, `ticker.<T>.<metric>` metrics and the per-ticker ratio plot."""
    per_ticker = ev.per_ticker_summary(config.evaluation.lookahead_pinball_ratio)
    rows = {ticker: summary_row(block) for ticker, block in per_ticker.items()}
    mlflow.log_dict(per_ticker, "per_ticker.json")
    mlflow.log_table(
        pd.DataFrame([{"ticker": t, **row} for t, row in rows.items()]), "per_ticker_table.json"
    )
    metrics = {
        f"ticker.{metric_key(ticker)}.{key}": float(value)
        for ticker, row in rows.items()
        for key, value in row.items()
        if isinstance(value, int | float)  # the strongest comparator's name is in the table
    }
    mlflow.log_metrics(metrics)
    mlflow.log_figure(per_ticker_figure(per_ticker), "plots/per_ticker_ratios.png")
    return per_ticker
