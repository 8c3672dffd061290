"""One owner for local state and for what a message may show of a URL or an exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.errors import first_line
from forecaster.local_state import (
    PREDICTION_LOG_ENV,
    mlflow_store,
    optuna_store,
    prediction_log,
    redact,
    shown_url,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://forecaster:s3cret@db:5432/log", "postgresql://forecaster:***@db:5432/log"),
        ("http://user:secret@mlflow:5000", "http://user:***@mlflow:5000"),
        ("postgresql+psycopg://:onlypass@db/x", "postgresql+psycopg://:***@db/x"),
        ("sqlite:////tmp/predictions.db", "sqlite:////tmp/predictions.db"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("not a url", "not a url"),
    ],
)
def test_a_shown_url_never_carries_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_every_default_store_lives_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PREDICTION_LOG_ENV, raising=False)
    assert mlflow_store(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert prediction_log(tmp_path) == f"sqlite:///{tmp_path.resolve()}/predictions.db"
    assert optuna_store(tmp_path / "new") == f"sqlite:///{(tmp_path / 'new').resolve()}/optuna.db"
    assert (tmp_path / "new").is_dir()
    # A given URL wins over the environment, which wins over the default.
    monkeypatch.setenv(PREDICTION_LOG_ENV, "postgresql://db/log")
    assert prediction_log(tmp_path) == "postgresql://db/log"
    assert prediction_log(tmp_path, "sqlite:///x.db") == "sqlite:///x.db"


def test_first_line_of_any_exception() -> None:
    assert first_line(ValueError("bad\nsecond line")) == "bad"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(RuntimeError("  \n  ")) == "RuntimeError"


def test_redact_removes_a_urls_password_from_any_message() -> None:
    url = "http://user:p%40ss@mlflow:5000"
    message = "Max retries exceeded with url http://user:p%40ss@mlflow:5000/api (p@ss)"
    assert (
        redact(message, url)
        == "Max retries exceeded with url http://user:***@mlflow:5000/api (***)"
    )
    assert redact("nothing secret", "sqlite:///x.db") == "nothing secret"


def test_a_store_that_is_down_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's model store reports why no model loaded (/readyz, 503 details) without
    the tracking URI's password, whatever MLflow put in its message (here: a real MLflow
    client refused by a closed port, with retries off so it fails at once)."""
    import asyncio

    from service.model_store import ModelStore

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    url = "http://forecaster:s3cret@127.0.0.1:1"
    store = ModelStore(url, "stock-lstm", "champion")
    assert asyncio.run(store.refresh()) is False
    assert store.last_error is not None
    assert store.last_error.startswith("stock-lstm@champion not available")
    assert "s3cret" not in store.last_error


def test_loading_a_model_from_a_store_that_is_down_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """predict, replay and the champion re-scoring report a failed load in one line: the
    store's URL and MLflow's message both carry the password, the line must not."""
    from forecaster.errors import TrackingError
    from forecaster.registry.loader import load_registered

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrackingError) as raised:
        load_registered("models:/stock-lstm@champion", "http://forecaster:s3cret@127.0.0.1:1")
    message = str(raised.value)
    assert message.startswith("cannot load model models:/stock-lstm@champion from "
                              "http://forecaster:***@127.0.0.1:1: ")  # fmt: skip
    assert "s3cret" not in message
