"""The published MLflow UI of docker-compose.yml: MLflow's basic-auth app with the project's
auth config, run as a process (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.system.conftest import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"


def test_the_published_ui_requires_the_admin_credentials_from_the_environment(
    tmp_path: Path,
) -> None:
    config = (ROOT / "configs" / "mlflow_auth.ini").read_text()
    # Same file as the compose service, with the user store in this test's directory.
    config = config.replace(
        "sqlite:////mlartifacts/basic_auth.db", f"sqlite:///{tmp_path / 'auth.db'}"
    )
    (tmp_path / "auth.ini").write_text(config)
    server = MlflowServer(
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        tmp_path / "artifacts",
        tmp_path / "server.log",
        extra_args=("--app-name", "basic-auth"),
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
            "MLFLOW_AUTH_ADMIN_PASSWORD": "from-dot-env-7f3a",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key",
        },
    )
    server.start()
    try:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}{SEARCH}", timeout=10).status_code == 401
        wrong = httpx.get(f"{server.url}{SEARCH}", auth=("admin", "password1234"), timeout=10)
        assert wrong.status_code == 401  # MLflow's documented old default does not work
        ok = httpx.get(f"{server.url}{SEARCH}", auth=("admin", "from-dot-env-7f3a"), timeout=10)
        assert ok.status_code == 200, ok.text
    finally:
        server.stop()
