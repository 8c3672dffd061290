"""The real server process: `forecaster serve` on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import free_port
from tests.service.conftest import API_KEY, Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORECASTER = Path(sys.executable).parent / "forecaster"


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    logs = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        **os.environ,
        "FORECASTER_TRACKING_URI": registry.tracking_uri,
        "FORECASTER_DATA_DIR": str(registry.data_dir),
        "FORECASTER_API_KEY": API_KEY,
        "FORECASTER_RELOAD_INTERVAL_SECONDS": "0.5",
        "FORECASTER_PREDICTION_LOG_URL": f"sqlite:///{logs.parent / 'predictions.db'}",
    }
    with logs.open("w") as out:
        process = subprocess.Popen(
            [str(FORECASTER), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {logs.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in 90 s: {logs.read_text()[-2000:]}")
            time.sleep(0.25)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_live_server_switches_to_a_promoted_version_without_failing_a_request(
    server: str, registry: Registry
) -> None:
    original = registry.result.model_version
    first = httpx.post(f"{server}/v1/predictions", json={"ticker": "^GSPC"}, timeout=10)
    assert first.status_code == 200
    assert first.json()["model"]["version"] == original

    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                reply = client.post(f"{server}/v1/predictions", json={"ticker": "^GSPC"})
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code}: {reply.text}")
                else:
                    versions.add(reply.json()["model"]["version"])

    workers = [threading.Thread(target=hammer) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        new = registry.new_version()
        registry.promote(new)  # the service polls the alias every 0.5 s
        deadline = time.monotonic() + 60
        while httpx.get(f"{server}/v1/model", timeout=10).json()["version"] != new:
            assert time.monotonic() < deadline, "service never switched to the new version"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        registry.promote(original)
    assert failures == []
    assert {original, new} <= versions


def test_openapi_schema_fuzz_gives_no_server_errors(server: str) -> None:
    """Schemathesis generates bodies from the app's own OpenAPI schema; none may get a 5xx."""
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        checked.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=server, headers={"X-API-Key": API_KEY}, timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            )

        no_server_error()
    assert "POST /v1/predictions" in checked
    assert "POST /v1/predictions/batch" in checked
