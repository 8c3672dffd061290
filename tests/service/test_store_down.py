"""A tracking store that is down, or silent, when the service starts: the server listens
anyway, says why it is not ready without the store's password, and stops on SIGTERM."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve_process import ServeProcess, clean_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "s3cret-pw"


def _env(tracking_uri: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        FORECASTER_TRACKING_URI=tracking_uri,
        FORECASTER_DATA_DIR=str(tmp_path / "data"),
        FORECASTER_PREDICTION_LOG_URL=f"sqlite:///{tmp_path / 'predictions.db'}",
        FORECASTER_RETRY_MAX_SECONDS="0.5",
        **extra,
    )


@pytest.fixture
def silent_store() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server or a half-open
    network path); the kernel completes the handshakes from the backlog."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def test_postgresql_store_down_at_start_up_serves_health_and_a_short_reason(
    tmp_path: Path,
) -> None:
    """Before: the process retried inside MLflow for about 100 s, then exited with a cut
    message; SIGTERM during that wait was ignored."""
    uri = f"postgresql://forecaster:{SECRET}@127.0.0.1:{free_port()}/mlflow"
    with ServeProcess(_env(uri, tmp_path), tmp_path / "serve.log") as server:
        server.wait_for("/healthz", 200, within=60)
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503
        detail = ready.json()["detail"]
        assert detail == "stock-lstm@champion not available: tracking store unreachable; retrying"
        refused = httpx.post(f"{server.url}/v1/predictions", json={"ticker": "^GSPC"}, timeout=5)
        assert refused.status_code == 503
        assert "tracking store unreachable" in refused.json()["detail"]
        time.sleep(3)  # several polls at a 0.5 s backoff
        assert server.status("/healthz") == 200
        server.terminate()
    output = server.output()
    assert SECRET not in output
    assert "Traceback" not in output
    # One line for the outage, not one per poll.
    assert output.count("not available: tracking store") == 1, output[-3000:]


def test_a_silent_store_neither_delays_listening_nor_a_shutdown(
    silent_store: int, tmp_path: Path
) -> None:
    """The store takes connections but never answers: the service listens after its start-up
    wait, and a SIGTERM stops it although a store call is still hanging."""
    env = _env(f"http://forecaster:{SECRET}@127.0.0.1:{silent_store}", tmp_path,
               FORECASTER_STORE_TIMEOUT_SECONDS="600", FORECASTER_STARTUP_WAIT_SECONDS="1")  # fmt: skip
    with ServeProcess(env, tmp_path / "serve.log") as server:
        server.wait_for("/healthz", 200, within=60)
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["detail"] == "model not loaded yet"
        server.terminate()
    output = server.output()
    assert "no answer from the store in 1 s" in output
    assert SECRET not in output
