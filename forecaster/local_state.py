"""Where local state lives: every default store URL under a data directory, and the one
environment variable that points the prediction log elsewhere.

The CLI, the scheduler, the tuner and the service all derive their defaults here, so a data
directory means the same files to each of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

PREDICTION_LOG_ENV = "FORECASTER_PREDICTION_LOG_URL"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def mlflow_store(data_dir: Path) -> str:
    """The local MLflow tracking and registry store (SQLite: mlflow 3 refuses ./mlruns)."""
    return sqlite_url(Path(data_dir) / "mlflow.db")


def mlflow_artifacts(data_dir: Path) -> str:
    """Where a local MLflow store keeps run artifacts and registered models."""
    return (Path(data_dir) / "mlartifacts").resolve().as_uri()


def prediction_log_store(data_dir: Path) -> str:
    """The data directory's own prediction log (SQLite)."""
    return sqlite_url(Path(data_dir) / "predictions.db")


def prediction_log(data_dir: Path, given: str | None = None) -> str:
    """The prediction log: `given`, else $FORECASTER_PREDICTION_LOG_URL, else the data
    directory's own."""
    return given or os.environ.get(PREDICTION_LOG_ENV) or prediction_log_store(data_dir)


def optuna_store(data_dir: Path) -> str:
    """The local Optuna study storage (its directory is created: SQLite will not)."""
    path = Path(data_dir) / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(path)


def yahoo_cache(data_dir: Path) -> Path:
    return Path(data_dir) / "cache" / "yahoo"


def shown_url(url: str) -> str:
    """A store URL for messages, logs and tags: its password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # not a URL at all (a bad port, say): nothing to hide in a structure
        return url
    user = f"{parts.username}:***@" if parts.username is not None else ":***@"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=user + host))


def redact(text: str, url: str) -> str:
    """`text` (a driver's or MLflow's message, say) with `url`'s password replaced by ***
    wherever it appears, raw or percent-encoded, so no message or log line carries it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if not password:
        return text
    for secret in {password, unquote(password), quote(unquote(password), safe="")}:
        text = text.replace(secret, "***")
    return text
