"""Model Registry IO: register a run's model as `challenger`, load a registered version (the one
loader: the API, predict, replay and the champion re-scoring all use it), read what versions
saw, re-score the champion on given days, and move `champion` as a gate decision says.

Aliases, not the deprecated stages. The decision itself is
`forecaster.evaluation.gate.decide`, a pure function; nothing here decides.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from forecaster.data.schemas import DATE, OHLCV_COLUMNS
from forecaster.data.windows import Windows
from forecaster.errors import ModelFormatError, StoreUnavailableError, TrackingError, first_line
from forecaster.local_state import redact, shown_url
from forecaster.methods.network.forward import Runtime
from forecaster.registry import version_tags
from forecaster.registry.bundle import served_artifacts
from forecaster.registry.predictor import Forecaster

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class RegisteredModel:
    """A loaded registry version: its forecaster and where it came from."""

    name: str
    version: str
    run_id: str
    forecaster: Forecaster
    tags: dict[str, str] = field(default_factory=dict)


def load_version(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    version: str,
    runtime: Runtime = "onnxruntime",
    threads: int | None = None,
) -> RegisteredModel:
    """Check the version's MLmodel, then read its bundle and weights as data.

    MLflow's own loader would first run the code stored with the model; whoever can write to
    the registry could then run code wherever it loads. Only two files are read here, and the
    weights with torch's weights-only loader. Raises MlflowException, OSError, TrackingError
    (a file that cannot be read, named) or ModelFormatError.
    """
    # The version's artifact location, resolved with this client's registry (models:/ URIs
    # would be resolved against MLflow's process-wide registry URI instead).
    root = str(client.get_model_version_download_uri(name, version)).rstrip("/")
    where = f"{name} v{version}"

    def fetch(path: str, directory: str) -> Path:
        try:
            return Path(download_artifacts(artifact_uri=f"{root}/{path}", dst_path=directory,
                                           tracking_uri=tracking_uri))  # fmt: skip
        except MlflowException as exc:
            # MLflow's message opens with the artifact root and a colon and names the file and
            # the reason on later lines: keep the reason, name the file.
            lines = str(exc.message).splitlines()
            reasons = [x for x in lines if x.strip() and not x.startswith(("#####", "The "))]
            reason = reasons[-1] if reasons else first_line(exc)
            raise TrackingError(
                f"{where}: cannot read its {path}: {redact(reason, tracking_uri)}"
            ) from exc

    with tempfile.TemporaryDirectory(prefix="forecaster-model-") as tmp:
        metadata = yaml.safe_load(fetch("MLmodel", tmp).read_text(encoding="utf-8"))
        bundle, weights, graph = served_artifacts(metadata, where)
        forecaster = Forecaster.load(fetch(bundle, tmp), fetch(weights, tmp),
                                     fetch(graph, tmp) if graph else None, runtime,
                                     threads)  # fmt: skip
    found = client.get_model_version(name, version)
    return RegisteredModel(name, version, str(found.run_id), forecaster, dict(found.tags))


def probe_store(tracking_uri: str, timeout: float = 5.0) -> None:
    """Raise StoreUnavailableError (one line, no password) if the tracking store does not answer
    within `timeout` seconds.

    MLflow's own clients retry an unreachable store for minutes (HTTP: 7 retries with backoff,
    about 250 s; SQL: 10 engine attempts, about 100 s) before they fail. A caller that polls
    (the service) asks here first, so an outage is seen in seconds and the retrying is the
    caller's, with its own backoff.
    """
    shown = shown_url(tracking_uri)
    scheme = tracking_uri.split(":", 1)[0].lower()
    try:
        if scheme in ("http", "https"):
            # The MLflow server's liveness route; an answer below 500 (401 included) means the
            # server listens, a 5xx is a proxy or gateway that cannot reach it. Credentials
            # stay out of the URL urllib sees.
            parts = urlsplit(tracking_uri)
            netloc = parts.netloc.rpartition("@")[2]
            health = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
            try:
                urllib.request.urlopen(health, timeout=timeout).close()
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise OSError(f"HTTP {exc.code} from {netloc}") from exc
        elif "://" in tracking_uri and scheme not in ("file", "sqlite", "databricks"):
            postgres = "postgres" in scheme
            connect_args = {"connect_timeout": max(1, round(timeout))} if postgres else {}
            engine = create_engine(tracking_uri, connect_args=connect_args)
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
    except (OSError, SQLAlchemyError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "orig", None) or exc
        raise StoreUnavailableError(
            f"tracking store {shown} unreachable: {redact(first_line(reason), tracking_uri)}"
        ) from exc


def load_registered(
    uri: str, tracking_uri: str | None = None, runtime: Runtime = "onnxruntime"
) -> RegisteredModel:
    """A `models:/NAME@ALIAS` or `models:/NAME/N` version; one-line TrackingError otherwise.
    `runtime` runs its network's forward (Forecaster.load)."""
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    where = f"cannot load model {uri} from {shown_url(tracking_uri)}"
    match = MODEL_URI.match(uri)
    if match is None:
        raise TrackingError(f"{where}: not a registered model; use models:/NAME@ALIAS or "
                            "models:/NAME/N")  # fmt: skip
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name, alias = match["name"], match["alias"]
    try:
        version = match["version"] or str(client.get_model_version_by_alias(name, alias).version)
        return load_version(client, tracking_uri, name, version, runtime)
    except (MlflowException, OSError, ModelFormatError) as exc:
        raise TrackingError(
            f"{where}: {redact(first_line(exc), tracking_uri)} (train one with 'forecaster "
            "train', or pass --model-uri)"
        ) from exc


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
    return version_tags.data_end(MlflowClient().get_model_version(name, version).tags)


def latest_version(name: str, tickers: Sequence[str]) -> str | None:
    """Newest registered version trained on exactly these tickers, in this order."""
    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    wanted = version_tags.tickers_tag(list(tickers))
    same = [v for v in versions if version_tags.trained_on(v.tags) == wanted]
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


def model_quantiles(
    model_uri: str, frames: Mapping[str, pd.DataFrame], windows: Windows
) -> tuple[tuple[float, ...], np.ndarray]:
    """Any registered model's log-return quantiles on exactly these windows' as-of days, from
    history up to each ticker's last as-of day only, as that model serves them (its network's
    recalibrated bands); returns (levels, (n, n_levels)). With the torch forward, the one the
    evaluation scores a new model with, so a re-scored model ties with itself bit for bit."""
    forecaster = load_registered(model_uri, runtime="torch").forecaster
    levels = forecaster.bundle.quantiles
    result = np.full((len(windows), len(levels)), np.nan)
    for ticker, frame in frames.items():
        mask = windows.tickers == ticker
        if not mask.any():
            continue
        last_as_of = pd.Timestamp(windows.end_dates[mask].max())
        q, as_of = forecaster.quantiles_all(frame.loc[frame.index <= last_as_of], ticker)
        by_day = pd.DataFrame(q, index=as_of)
        result[mask] = by_day.reindex(pd.DatetimeIndex(windows.end_dates[mask])).to_numpy()
    if np.isnan(result).any():
        missing = int(np.isnan(result).any(axis=1).sum())
        raise TrackingError(f"{model_uri} produced no forecast for {missing} evaluation day(s)")
    return levels, result
