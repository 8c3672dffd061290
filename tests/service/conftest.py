"""A real small model, trained on the bundled data and registered as champion in a temporary
SQLite MLflow; apps built on it with TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from pipelines.retrain import RetrainResult, run_retrain
from service.main import create_app
from service.settings import ServiceSettings
from tests.integration.conftest import tiny_config

API_KEY = "test-admin-key"


@dataclass(frozen=True)
class Registry:
    data_dir: Path
    tracking_uri: str
    result: RetrainResult

    @property
    def version_run_id(self) -> str:
        """The run the registered model was logged in (the pipeline's register step)."""
        version = MlflowClient(self.tracking_uri).get_model_version(
            "stock-lstm", str(self.result.model_version)
        )
        return str(version.run_id)

    def promote(self, version: str) -> None:
        MlflowClient(self.tracking_uri).set_registered_model_alias(
            "stock-lstm", "champion", version
        )

    def new_version(self, source: str | None = None) -> str:
        """Register the trained model (or any source) again as a new version."""
        client = MlflowClient(self.tracking_uri)
        version = client.create_model_version(
            "stock-lstm", source or str(self.result.model_uri), self.result.run_id
        )
        return str(version.version)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    data_dir = tmp_path_factory.mktemp("service") / "data"
    config = tiny_config(data_dir)
    result = run_retrain(config, force=True, name="train")
    tracking_uri = str(config.tracking.tracking_uri)
    # Test set-up, not the product's gate: serve this model whatever its score.
    MlflowClient(tracking_uri).set_registered_model_alias(
        "stock-lstm", "champion", str(result.model_version)
    )
    mlflow.set_tracking_uri(tracking_uri)
    return Registry(data_dir=data_dir, tracking_uri=tracking_uri, result=result)


@pytest.fixture
def settings_for(registry: Registry, tmp_path: Path) -> Callable[..., ServiceSettings]:
    def make(**overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "tracking_uri": registry.tracking_uri,
            "data_dir": registry.data_dir,
            "api_key": API_KEY,
            "reload_interval_seconds": 3600,
            "prediction_log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        }
        values.update(overrides)
        return ServiceSettings(**values)

    return make


@pytest.fixture
def client(settings_for: Callable[..., ServiceSettings]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for()), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_promtool_clean(exposition: str) -> None:
    """`promtool check metrics` (Debian's prometheus package) finds nothing to say about an
    exposition: no counter-like names on gauges, no missing help. Skipped where promtool is
    not installed, a failure under CI (.ci/run installs it)."""
    import os
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not installed under CI (Debian package 'prometheus')")
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition, text=True,
                             capture_output=True, timeout=60)  # fmt: skip
    said = checked.stdout + checked.stderr
    assert checked.returncode == 0, said
    assert not said.strip(), said
