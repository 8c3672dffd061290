"""`forecaster serve` as a real process on a free loopback port, for tests of what only the
server shows (start-up, signals, connections)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

FORECASTER = Path(sys.executable).parent / "forecaster"


class ServeProcess:
    """One `forecaster serve`; its output goes to `log`. Use as a context manager: leaving it
    kills whatever is still running."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [str(FORECASTER), "serve", "--port", str(self.port), *args],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.started = time.monotonic()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text()

    def status(self, path: str) -> int:
        """The status `path` answers with, 0 if nothing answers; fails if the process died."""
        if self.process.poll() is not None:
            pytest.fail(f"server exited with {self.process.returncode}: {self.output()[-2000:]}")
        try:
            return httpx.get(f"{self.url}{path}", timeout=5).status_code
        except httpx.TransportError:
            return 0

    def wait_for(self, path: str, status: int, within: float) -> float:
        """Seconds since launch until `path` answered `status`; fails after `within` seconds."""
        deadline = time.monotonic() + within
        while self.status(path) != status:
            if time.monotonic() > deadline:
                pytest.fail(f"{path} did not answer {status} in {within:g} s: "
                            f"{self.output()[-2000:]}")  # fmt: skip
            time.sleep(0.2)
        return time.monotonic() - self.started

    def terminate(self, within: float = 20.0) -> float:
        """SIGTERM; seconds until the process exited (fails if it did not within `within`)."""
        sent = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM ignored for {within:g} s: {self.output()[-2000:]}")
        return time.monotonic() - sent


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without FORECASTER_*/MLFLOW_TRACKING_URI, plus `values`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECASTER_", "MLFLOW_TRACKING_URI"))}  # fmt: skip
    return {**env, **values}
