"""`forecaster serve`: one precedence rule for what it serves. A value the command line gives
(flag, --set, --config) > the FORECASTER_* environment > the default; the command line and the
environment disagreeing is an error, never a silent choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.errors import ConfigError
from pipelines.cli import _serve_environment, build_parser

ENV = ("FORECASTER_DATA_DIR", "FORECASTER_TRACKING_URI", "MLFLOW_TRACKING_URI",
       "FORECASTER_MODEL_NAME", "FORECASTER_AUTO_ADJUST", "FORECASTER_DATA_SOURCE")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def serve_env(*argv: str) -> dict[str, str]:
    return _serve_environment(build_parser().parse_args(["serve", *argv]))


def test_data_dir_alone_sets_the_data_dir_and_its_store(tmp_path: Path) -> None:
    assert serve_env("--data-dir", str(tmp_path)) == {
        "FORECASTER_DATA_DIR": str(tmp_path),
        "FORECASTER_TRACKING_URI": f"sqlite:///{tmp_path.resolve()}/mlflow.db",
    }


def test_the_environment_wins_over_defaults_the_command_line_did_not_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORECASTER_MODEL_NAME", "does-not-exist")
    monkeypatch.setenv("FORECASTER_TRACKING_URI", "postgresql://db/mlflow")
    env = serve_env("--data-dir", str(tmp_path))
    # Neither the model name nor the store is replaced by a default derived from --data-dir.
    assert env == {"FORECASTER_DATA_DIR": str(tmp_path)}


def test_the_command_line_sets_what_it_names(tmp_path: Path) -> None:
    env = serve_env("--data-dir", str(tmp_path), "--set", "tracking.model_name=other",
                    "--set", "data.auto_adjust=false")  # fmt: skip
    assert env["FORECASTER_MODEL_NAME"] == "other"
    assert env["FORECASTER_AUTO_ADJUST"] == "false"


def test_a_config_file_counts_as_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("tracking:\n  model_name: from-file\n", encoding="utf-8")
    assert serve_env("--config", str(config))["FORECASTER_MODEL_NAME"] == "from-file"


def test_the_command_line_contradicting_the_environment_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORECASTER_MODEL_NAME", "does-not-exist")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@mlflow:5000")
    with pytest.raises(ConfigError) as raised:
        serve_env("--set", "tracking.model_name=stock-lstm",
                  "--set", "tracking.tracking_uri=http://me:mine@other:5000")  # fmt: skip
    message = str(raised.value)
    assert "tracking.model_name 'stock-lstm' but FORECASTER_MODEL_NAME='does-not-exist'" in message
    assert "MLFLOW_TRACKING_URI='http://user:***@mlflow:5000'" in message
    assert "secret" not in message
    assert "mine" not in message
    assert "'http://me:***@other:5000'" in message
    # The same value both ways is no conflict.
    monkeypatch.setenv("FORECASTER_MODEL_NAME", "stock-lstm")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert serve_env("--set", "tracking.model_name=stock-lstm")["FORECASTER_MODEL_NAME"] == (
        "stock-lstm"
    )
