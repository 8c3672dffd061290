"""The deployment for real: docker compose builds the images, brings the stack up, and it trains,
tracks, serves, scrapes, restarts and keeps its state, as a user of docker-compose.yml sees it.

Every image is built here (deploy/compose.local-images.yml on a Debian base image made by
deploy/base-image.sh), so no registry but the package indexes is needed. Skipped, in one line,
where no Docker engine answers (`.ci/run` starts one where it can). `pytest -m compose` runs
it alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "forecaster-base:bookworm"
PROJECT = "forecasterci"
FILES = ["-f", "docker-compose.yml", "-f", "deploy/compose.local-images.yml"]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def _compose_program() -> list[str] | None:
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if v2.returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _pip_setting(name: str) -> list[str]:
    """A pip setting as the machine's pip has it (config files and PIP_* variables)."""
    out = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True,
                         text=True, timeout=60).stdout  # fmt: skip
    values = re.findall(rf"^\S*{name}='([^']*)'$", out, re.M)
    values += (
        [os.environ[f"PIP_{name.upper().replace('-', '_')}"]]
        if (f"PIP_{name.upper().replace('-', '_')}" in os.environ)
        else []
    )
    return [v for value in values for v in value.split()]


def _build_context_extras() -> None:
    """What the image build takes from this machine: the CA bundle its pip trusts (a proxy that
    intercepts TLS) and a CPU torch wheel from its wheelhouse, where there are such."""
    for cert in _pip_setting("cert"):
        if Path(cert).is_file():
            shutil.copy(cert, ROOT / "deploy" / "certs" / "pip-ca.crt")
            break
    for place in _pip_setting("find-links"):
        wheels = sorted(Path(place.removeprefix("file://")).glob("torch-*+cpu-*.whl"))
        if wheels:
            target = ROOT / "deploy" / "wheels" / wheels[-1].name
            if not target.exists():
                for old in target.parent.glob("torch-*.whl"):
                    old.unlink()
                shutil.copy(wheels[-1], target)
            break


@dataclass
class Stack:
    program: list[str]
    env_file: Path
    api: str
    ui: str
    api_key: str
    ui_password: str
    timings: dict[str, float]

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> str:
        result = subprocess.run(
            [*self.program, "-p", PROJECT, "--env-file", str(self.env_file), *FILES, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)}: exit {result.returncode}\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")  # fmt: skip
        return result.stdout + result.stderr

    def python(self, service: str, code: str) -> str:
        return self.run("exec", "-T", service, "python", "-c", code, timeout=120).strip()

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).strip().splitlines()[-1]

    def health(self, service: str) -> str:
        return subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}",
                               self.container(service)], capture_output=True, text=True,
                              timeout=30).stdout.strip()  # fmt: skip

    def wait_ready(self, timeout: float = 300) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(f"{self.api}/readyz", timeout=5)
                if reply.status_code == 200:
                    body: dict[str, object] = reply.json()
                    return body
                last = reply.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(2)
        raise AssertionError(f"the API was not ready within {timeout:.0f} s: {last}\n"
                             + self.run("logs", "--tail", "40", "api"))  # fmt: skip

    def logged_predictions(self) -> int:
        return int(self.python("api", "from service.prediction_log import read_log; "
                               "print(len(read_log('sqlite:////app/data/predictions.db')))"))  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not _docker_answers():
        pytest.skip("no Docker engine answers `docker info`: the compose system test needs one")
    program = _compose_program()
    if program is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    timings: dict[str, float] = {}
    start = time.monotonic()
    subprocess.run([str(ROOT / "deploy" / "base-image.sh"), BASE_IMAGE], check=True,
                   timeout=1200)  # fmt: skip
    timings["base image"] = time.monotonic() - start
    _build_context_extras()
    api_key, ui_password = secrets.token_hex(16), secrets.token_hex(16)
    ports = {"API_PORT": free_port(), "MLFLOW_PORT": free_port(), "GRAFANA_PORT": free_port()}
    values = {
        "POSTGRES_USER": "mlflow", "POSTGRES_PASSWORD": secrets.token_hex(16),
        "POSTGRES_DB": "mlflow", "FORECASTER_API_KEY": api_key,
        "FORECASTER_DATA_SOURCE": "sample", "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ui_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "GRAFANA_ADMIN_USER": "admin", "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
        "PUBLISH_ADDRESS": "127.0.0.1", "TUNE_TRIALS": "1", "TUNE_THREADS": "1",
        "TRAIN_THREADS": "1", "FORECASTER_CONFIG": "configs/smoke.yaml",
        "BASE_IMAGE": BASE_IMAGE, **{k: str(v) for k, v in ports.items()},
    }  # fmt: skip
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    stack = Stack(program, env_file, f"http://127.0.0.1:{ports['API_PORT']}",
                  f"http://127.0.0.1:{ports['MLFLOW_PORT']}", api_key, ui_password, timings)  # fmt: skip
    stack.run("--profile", "ui", "--profile", "monitoring", "down", "-v", "--remove-orphans",
              check=False)  # fmt: skip  # what a crashed earlier run left
    try:
        start = time.monotonic()
        stack.run("--profile", "ui", "build", timeout=3600)
        stack.run("--profile", "monitoring", "build", "prometheus", timeout=1200)
        timings["build"] = time.monotonic() - start
        start = time.monotonic()
        stack.run("up", "-d", timeout=900)
        timings["up"] = time.monotonic() - start
        yield stack
    finally:
        if os.environ.get("FORECASTER_KEEP_COMPOSE") != "1":
            stack.run("--profile", "ui", "--profile", "monitoring", "down", "-v",
                      "--remove-orphans", check=False)  # fmt: skip
        shown = json.dumps({k: round(v, 1) for k, v in timings.items()})
        sys.stderr.write(f"compose timings (s): {shown}\n")  # for benchmarks/README.md


def _wait_exited(stack: Stack, service: str, timeout: float) -> int:
    container = stack.container(service)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                                container], capture_output=True, text=True).stdout.split()  # fmt: skip
        if state and state[0] == "exited":
            return int(state[1])
        time.sleep(3)
    raise AssertionError(f"{service} still running after {timeout:.0f} s")


CHAMPION = (
    "from mlflow import MlflowClient; c = MlflowClient('http://localhost:5000'); "
    "name = 'stock-lstm'; "
    "import mlflow.exceptions as e\n"
    "try: print(c.get_model_version_by_alias(name, 'champion').version)\n"
    "except e.MlflowException: print('none')"
)


def test_the_stack_trains_serves_scrapes_restarts_and_keeps_its_state(stack: Stack) -> None:
    # PostgreSQL and the MLflow server are healthy (the API and trainer waited on them).
    assert stack.health("postgres") == "healthy"
    assert stack.health("mlflow") == "healthy"

    # The trainer's first retrain registers a version on the bundled data. Whether the smoke
    # config's network earns the champion alias is the gate's call; if it did not, the test
    # promotes the version itself (set-up, not the product's decision).
    start = time.monotonic()
    assert _wait_exited(stack, "trainer", timeout=900) == 0, stack.run("logs", "trainer")
    stack.timings["trainer"] = time.monotonic() - start
    # The links it prints name the published UI, which a browser reaches, not the services'
    # internal tracking server.
    trainer_log = stack.run("logs", "trainer")
    assert re.search(rf"browse: open {stack.ui.replace('127.0.0.1', 'localhost')}/#/experiments/"
                     r"\d+/runs", trainer_log)  # fmt: skip
    assert re.search(rf"plots: {stack.ui.replace('127.0.0.1', 'localhost')}/#/experiments/\d+/runs/",
                     trainer_log), trainer_log[-2000:]  # fmt: skip
    champion = stack.python("mlflow", CHAMPION)
    if champion == "none":
        stack.python("mlflow", "from mlflow import MlflowClient; c = MlflowClient("
                     "'http://localhost:5000'); v = max(int(m.version) for m in "
                     "c.search_model_versions(\"name='stock-lstm'\")); "
                     "c.set_registered_model_alias('stock-lstm', 'champion', str(v)); print(v)")  # fmt: skip
        champion = stack.python("mlflow", CHAMPION)
    assert champion.isdigit(), champion

    # The API becomes ready on the champion and forecasts with quantiles.
    start = time.monotonic()
    ready = stack.wait_ready()
    stack.timings["api ready"] = time.monotonic() - start
    assert str(ready["version"]) == champion
    reply = httpx.post(f"{stack.api}/v1/predictions", json={"ticker": "^GSPC"}, timeout=30)
    assert reply.status_code == 200, reply.text
    forecast = reply.json()
    assert forecast["model"]["version"] == champion
    assert len(forecast["quantiles"]) == 7
    assert (
        forecast["interval"]["lower"] < forecast["predicted_close"] < forecast["interval"]["upper"]
    )

    # One scheduler cycle on the same data: the retrain skips, nothing is registered.
    cycle = stack.run("run", "--rm", "scheduler", "forecaster", "schedule", "--once",
                      "--config", "configs/smoke.yaml", timeout=600)  # fmt: skip
    assert "skip" in cycle.lower(), cycle
    assert stack.python("mlflow", CHAMPION) == champion

    # The MLflow UI answers on its published port, behind its login.
    stack.run("--profile", "ui", "up", "-d", "mlflow-ui")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.ui}/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(2)
    assert httpx.get(stack.ui, timeout=10).status_code == 401
    assert httpx.get(stack.ui, auth=("admin", stack.ui_password), timeout=10).status_code == 200

    # Prometheus scrapes the API: the prediction counter is there after a prediction.
    stack.run("--profile", "monitoring", "up", "-d", "--no-deps", "prometheus")
    query = ("wget -qO- 'http://localhost:9090/api/v1/query?query="
             "sum(forecaster_predictions_total)'")  # fmt: skip
    deadline = time.monotonic() + 120
    value = None
    while time.monotonic() < deadline and value is None:
        out = stack.run("exec", "-T", "prometheus", "sh", "-c", query, check=False)
        result = json.loads(out[out.find("{") :] or "{}").get("data", {}).get("result", [])
        value = float(result[0]["value"][1]) if result else None
        time.sleep(3)
    assert value is not None, out
    assert value >= 1

    # A restart under requests loses no logged prediction and serves the same champion.
    before = stack.logged_predictions()
    answered: list[int] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(f"{stack.api}/v1/predictions", json={"ticker": "^GSPC"})
                    answered.append(r.status_code)
                except httpx.HTTPError:
                    time.sleep(0.2)  # the API is down for a moment: that is the restart

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        time.sleep(2)
        stack.run("restart", "api", timeout=300)
        assert str(stack.wait_ready()["version"]) == champion
        time.sleep(2)
    finally:
        stop.set()
        asker.join()
    ok = answered.count(200)
    assert ok > 0, answered
    assert all(code in (200, 503) for code in answered), answered
    deadline = time.monotonic() + 30
    while stack.logged_predictions() < before + ok and time.monotonic() < deadline:
        time.sleep(1)
    assert stack.logged_predictions() == before + ok

    # down, then up: the registry, the runs and the prediction log live on named volumes.
    runs = stack.python("mlflow", "import mlflow; mlflow.set_tracking_uri('http://localhost:5000');"
                        " print(len(mlflow.search_runs(search_all_experiments=True)))")  # fmt: skip
    logged = stack.logged_predictions()
    stack.run("down", timeout=300)
    stack.run("up", "-d", "--no-recreate", timeout=600)
    assert str(stack.wait_ready()["version"]) == champion
    assert stack.python("mlflow", CHAMPION) == champion
    # (The trainer ran again on up; on unchanged data it adds no version, perhaps a run.)
    again = stack.python("mlflow", "import mlflow; mlflow.set_tracking_uri("
                         "'http://localhost:5000'); print(len(mlflow.search_runs("
                         "search_all_experiments=True)))")  # fmt: skip
    assert int(again) >= int(runs) > 0
    assert stack.logged_predictions() == logged
