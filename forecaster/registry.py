"""Model Registry IO: register a run's model as `challenger`, read what versions saw, re-score
the champion on given days, and move `champion` as a gate decision says.

Aliases, not the deprecated stages. The decision itself is `forecaster.gate.decide`, a pure
function; nothing here decides.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecaster.errors import TrackingError
from forecaster.schemas import DATE, OHLCV_COLUMNS
from forecaster.windows import Windows

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def register(model_uri: str, name: str, tags: Mapping[str, str]) -> str:
    """Register the model and point `challenger` at the new version; returns the version."""
    printed = io.StringIO()
    try:
        # MLflow prints its own "Created version ..." lines to stderr; the log line below says
        # it once, so they go to the debug log instead.
        with contextlib.redirect_stderr(printed):
            version = mlflow.register_model(model_uri, name, tags=dict(tags))
        MlflowClient().set_registered_model_alias(name, CHALLENGER, version.version)
    except MlflowException as exc:
        raise TrackingError(f"could not register {model_uri} as {name}: {exc.message}") from exc
    finally:
        for line in printed.getvalue().splitlines():
            logger.debug("mlflow: %s", line)
    logger.info("registered %s version %s (alias %s)", name, version.version, CHALLENGER)
    return str(version.version)


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def data_end(name: str, version: str) -> pd.Timestamp | None:
    """Last trading day of the data a version was trained on (its `data_range` tag)."""
    tags = MlflowClient().get_model_version(name, version).tags
    data_range = tags.get("data_range", "")
    return pd.Timestamp(data_range.split("..")[1]) if ".." in data_range else None


def latest_version(name: str, tickers: str) -> str | None:
    """Newest registered version trained on exactly these tickers (comma-joined)."""
    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    same = [v for v in versions if v.tags.get("tickers") == tickers]
    return str(max(same, key=lambda v: int(v.version)).version) if same else None


def set_champion(name: str, version: str) -> None:
    try:
        MlflowClient().set_registered_model_alias(name, CHAMPION, version)
    except MlflowException as exc:
        raise TrackingError(
            f"could not move alias {CHAMPION} to v{version}: {exc.message}"
        ) from exc
    logger.info("%s@%s -> v%s", name, CHAMPION, version)


def model_history_input(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """A validated frame as the pyfunc's input: date + OHLCV columns + ticker."""
    table = frame.reset_index()[[DATE, *OHLCV_COLUMNS]]
    table.insert(0, "ticker", ticker)
    return table


def _quantile_table(out: pd.DataFrame) -> tuple[tuple[float, ...], np.ndarray]:
    """Levels and quantiles of a pyfunc output; models from before the distributional bundle
    give only their interval and median."""
    columns = [c for c in out.columns if str(c).startswith("q")]
    if columns:
        levels = tuple(float(str(c)[1:]) for c in columns)
        return levels, out[columns].to_numpy(dtype=np.float64)
    tail = (1.0 - float(out["interval_level"].iloc[0])) / 2.0
    q = out[["lower_return", "predicted_return", "upper_return"]].to_numpy(dtype=np.float64)
    return (tail, 0.5, 1.0 - tail), q


def model_quantiles(
    model_uri: str, frames: Mapping[str, pd.DataFrame], windows: Windows
) -> tuple[tuple[float, ...], np.ndarray]:
    """Any registered model's log-return quantiles on exactly these windows' as-of days, from
    history up to each ticker's last as-of day only; returns (levels, (n, n_levels))."""
    model = mlflow.pyfunc.load_model(model_uri)
    levels: tuple[float, ...] | None = None
    result: np.ndarray | None = None
    for ticker, frame in frames.items():
        mask = windows.tickers == ticker
        if not mask.any():
            continue
        last_as_of = pd.Timestamp(windows.end_dates[mask].max())
        history = model_history_input(frame.loc[frame.index <= last_as_of], ticker)
        out = model.predict(history, params={"all_days": True})
        levels, q = _quantile_table(out)
        if result is None:
            result = np.full((len(windows), len(levels)), np.nan)
        by_day = pd.DataFrame(q, index=pd.DatetimeIndex(out["as_of"]))
        result[mask] = by_day.reindex(pd.DatetimeIndex(windows.end_dates[mask])).to_numpy()
    if result is None or levels is None or np.isnan(result).any():
        missing = len(windows) if result is None else int(np.isnan(result).any(axis=1).sum())
        raise TrackingError(f"{model_uri} produced no forecast for {missing} evaluation day(s)")
    return levels, result
