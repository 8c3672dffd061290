"""MLflow tracking: where runs go, and what a training run records (params, data, metrics,
artifacts, the pyfunc model).

Nothing here runs at import time; `setup_tracking` is called by entry points.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema

from forecaster import __version__
from forecaster.config import ForecasterConfig, config_to_yaml
from forecaster.data.schemas import DATE, OHLCV_COLUMNS, frame_meta
from forecaster.errors import TrackingError
from forecaster.filelock import blocking_lock
from forecaster.local_state import mlflow_artifacts, mlflow_store
from forecaster.registry.bundle import ENTRY_SCRIPT
from forecaster.registry.predictor import Forecaster

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"


def resolve_tracking_uri(config: ForecasterConfig) -> str:
    """Config, else $MLFLOW_TRACKING_URI, else a SQLite store inside the data directory."""
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return mlflow_store(config.data.data_dir)


def _default_artifact_root(config: ForecasterConfig, uri: str) -> str | None:
    """Local stores keep artifacts beside the database; servers decide for themselves."""
    if urlparse(uri).scheme in ("sqlite", "", "file"):
        return mlflow_artifacts(config.data.data_dir)
    return None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with one line when an HTTP tracking server is down (MLflow would retry long)."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            reply.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}); start it or set "
            "MLFLOW_TRACKING_URI"
        ) from exc


def setup_tracking(config: ForecasterConfig, experiment: str | None = None) -> str:
    """Point MLflow at the configured store and make sure the experiment (default: the
    configured one) exists; returns its id. Runs name it explicitly: no global experiment."""
    uri = resolve_tracking_uri(config)
    check_reachable(uri)
    lock: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if uri.startswith("sqlite:///"):
        # Two processes creating one SQLite store at once (two tune workers) race on its
        # tables; one at a time, the second finds them made.
        lock = blocking_lock(Path(uri.removeprefix("sqlite:///") + ".init.lock"))
    mlflow.set_tracking_uri(uri)
    name = experiment or config.tracking.experiment
    with lock:
        try:
            found = mlflow.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            return str(
                mlflow.create_experiment(
                    name, artifact_location=_default_artifact_root(config, uri)
                )
            )
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_ALREADY_EXISTS":  # another process made it just now
                again = mlflow.get_experiment_by_name(name)
                if again is not None:
                    return str(again.experiment_id)
            first = (str(exc.message).strip().splitlines() or [exc.error_code])[0]
            raise TrackingError(f"MLflow at {uri}: {first}") from exc


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_config(config: ForecasterConfig) -> None:
    params = flatten(config.model_dump(mode="json"))
    mlflow.log_params({k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()})
    mlflow.log_text(config_to_yaml(config), "config.yaml")


def _source_uri(frame: pd.DataFrame) -> str:
    meta = frame_meta(frame)
    if meta.source == "yahoo":
        return f"https://finance.yahoo.com/quote/{quote(meta.ticker, safe='')}"
    if meta.source == "sample":
        from importlib import resources

        return str(resources.files("forecaster") / "data" / "sp500.csv.gz")
    return str(Path(meta.origin).resolve())


def _tag_safe(text: str) -> str:
    """MLflow keys allow alphanumerics and _-. :/ only; '^GSPC' becomes '_GSPC'."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in text)


def log_datasets(frames: Mapping[str, pd.DataFrame], context: str = "training") -> None:
    """One MLflow dataset per ticker: source, date range, rows, digest and adjustment mode."""
    for ticker, frame in frames.items():
        meta = frame_meta(frame)
        table = frame.reset_index()[[DATE, *OHLCV_COLUMNS]]
        with warnings.catch_warnings():
            # A local path matches two equivalent MLflow source resolvers; either is right.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            dataset = from_pandas(
                table, source=_source_uri(frame), name=f"{ticker} ({meta.source})"
            )
        first, last = frame.index[0].date(), frame.index[-1].date()
        mlflow.log_input(
            dataset,
            context=context,
            tags={
                "ticker": ticker,
                "source": meta.source,
                "adjustment": meta.adjustment,
                "first_date": str(first),
                "last_date": str(last),
                "rows": str(len(frame)),
            },
        )
        prefix = f"data.{_tag_safe(ticker)}"
        mlflow.set_tags(
            {
                f"{prefix}.digest": dataset.digest,
                f"{prefix}.range": f"{first}..{last}",
                f"{prefix}.rows": str(len(frame)),
                f"{prefix}.adjustment": meta.adjustment,
            }
        )


def log_epochs(records: Iterable[Any], prefix: str = "") -> None:
    """Per-epoch curves, step = epoch; ensemble members each get their own `prefix`."""
    for record in records:
        mlflow.log_metrics(
            {
                f"{prefix}train_loss": record.train_loss,
                f"{prefix}val_loss": record.val_loss,
                f"{prefix}val_mae_return": record.val_mae_return,
            },
            step=record.epoch,
        )


def log_pyfunc(forecaster: Forecaster, input_example: pd.DataFrame) -> ModelInfo:
    """Log network + scaler + feature config as one pyfunc, with signature and input example."""
    history = input_example.drop(columns="ticker").set_index(DATE)
    output = forecaster.predict_next(history, ticker=str(input_example["ticker"].iloc[0]))
    inferred = infer_signature(input_example, output, params={"all_days": False})
    # The ticker column is optional: a single unnamed series is a valid input too.
    inputs = Schema(
        [
            ColSpec(col.type, col.name, required=col.name != "ticker")
            for col in inferred.inputs.inputs
        ]
    )
    signature = ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)
    import numpy
    import pydantic
    import torch

    requirements = [
        f"forecaster=={__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pd.__version__}",
        f"numpy=={numpy.__version__}",
        f"pydantic=={pydantic.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]
    with tempfile.TemporaryDirectory(prefix="forecaster-model-") as tmp:
        bundle, weights, graph = forecaster.save(Path(tmp))
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(Path(__file__).with_name(ENTRY_SCRIPT)),
            artifacts={"bundle": str(bundle), "weights": str(weights), "graph": str(graph)},
            # (see ARTIFACTS)
            signature=signature,
            input_example=input_example,
            pip_requirements=requirements,
        )
        return info
