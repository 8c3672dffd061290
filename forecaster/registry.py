"""Model Registry: register a run's model, alias it `challenger`, and move `champion` only when
the challenger earns it on the same evaluation days.

Aliases, not the deprecated stages. The gate: the challenger's test MAE must beat naive
persistence, and beat the current champion's MAE on exactly the challenger's test days.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecaster.schemas import DATE, OHLCV_COLUMNS
from forecaster.tracking import TrackingError
from forecaster.windows import Windows

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_version: str
    challenger_mae: float
    naive_mae: float
    champion_version: str | None = None
    champion_mae: float | None = None


def register(model_uri: str, name: str, tags: Mapping[str, str]) -> str:
    """Register the model and point `challenger` at the new version; returns the version."""
    try:
        version = mlflow.register_model(model_uri, name, tags=dict(tags))
        MlflowClient().set_registered_model_alias(name, CHALLENGER, version.version)
    except MlflowException as exc:
        raise TrackingError(f"could not register {model_uri} as {name}: {exc.message}") from exc
    logger.info("registered %s version %s (alias %s)", name, version.version, CHALLENGER)
    return str(version.version)


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def model_history_input(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """A validated frame as the pyfunc's input: date + OHLCV columns + ticker."""
    table = frame.reset_index()[[DATE, *OHLCV_COLUMNS]]
    table.insert(0, "ticker", ticker)
    return table


def champion_mae_on(model_uri: str, frames: Mapping[str, pd.DataFrame], windows: Windows) -> float:
    """MAE of any registered model on exactly these windows' target days, in price space."""
    model = mlflow.pyfunc.load_model(model_uri)
    predicted = np.full(len(windows), np.nan)
    for ticker, frame in frames.items():
        mask = windows.tickers == ticker
        if not mask.any():
            continue
        last_as_of = pd.Timestamp(windows.end_dates[mask].max())
        history = model_history_input(frame.loc[frame.index <= last_as_of], ticker)
        out = model.predict(history, params={"all_days": True})
        by_day = pd.Series(out["predicted_close"].to_numpy(), index=pd.DatetimeIndex(out["as_of"]))
        predicted[mask] = by_day.reindex(pd.DatetimeIndex(windows.end_dates[mask])).to_numpy()
    if np.isnan(predicted).any():
        missing = int(np.isnan(predicted).sum())
        raise TrackingError(f"{model_uri} produced no forecast for {missing} evaluation day(s)")
    return float(np.mean(np.abs(predicted - windows.target_close)))


def promote_if_better(
    name: str,
    version: str,
    challenger_mae: float,
    naive_mae: float,
    frames: Mapping[str, pd.DataFrame],
    test: Windows,
    champion_mae: float | None = None,
) -> PromotionDecision:
    """`champion_mae`, when the caller already measured it on `test`, saves loading the
    champion a second time."""
    champion = alias_version(name, CHAMPION)
    if challenger_mae >= naive_mae:
        kept = f"kept champion v{champion}" if champion else "no champion yet, none promoted"
        reason = (
            f"{kept}: challenger v{version} test MAE {challenger_mae:.4f} does not beat naive "
            f"persistence ({naive_mae:.4f})"
        )
        promoted = False
    elif champion is None:
        champion_mae = None
        reason = (
            f"promoted v{version}: first champion, test MAE {challenger_mae:.4f} beats naive "
            f"({naive_mae:.4f})"
        )
        promoted = True
    else:
        if champion_mae is None:
            try:
                champion_mae = champion_mae_on(f"models:/{name}@{CHAMPION}", frames, test)
            except (MlflowException, TrackingError, OSError, ValueError) as exc:
                logger.warning("champion v%s could not be evaluated: %s", champion, exc)
        if champion_mae is not None and challenger_mae >= champion_mae:
            reason = (
                f"kept champion v{champion}: its MAE {champion_mae:.4f} on the same "
                f"{len(test)} days is not worse than challenger v{version}'s {challenger_mae:.4f}"
            )
            promoted = False
        else:
            against = (
                f"champion v{champion} ({champion_mae:.4f})"
                if champion_mae is not None
                else f"champion v{champion}, which could not be evaluated"
            )
            reason = (
                f"promoted v{version}: test MAE {challenger_mae:.4f} beats naive "
                f"({naive_mae:.4f}) and {against} on the same {len(test)} days"
            )
            promoted = True
    if promoted:
        try:
            MlflowClient().set_registered_model_alias(name, CHAMPION, version)
        except MlflowException as exc:
            raise TrackingError(
                f"could not move alias {CHAMPION} to v{version}: {exc.message}"
            ) from exc
    logger.info("%s", reason)
    return PromotionDecision(
        promoted=promoted,
        reason=reason,
        challenger_version=version,
        challenger_mae=challenger_mae,
        naive_mae=naive_mae,
        champion_version=champion,
        champion_mae=champion_mae,
    )
