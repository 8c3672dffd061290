"""Real PostgreSQL and a real `mlflow server` on it, started and stopped by the tests.

Debian's `postgresql` package provides the binaries (.ci/run installs it). Where they are
missing the tests skip with the reason, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

BIN = Path(sys.executable).parent

# Read at import, before the session fixture points TMPDIR into pytest's basetemp.
SYSTEM_TMP = tempfile.gettempdir()


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"system test cannot run under CI: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Postgres:
    port: int
    url: str


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        unavailable("PostgreSQL server binaries not found (Debian package 'postgresql')")
    bindir = Path(candidates[-1]).parent
    as_postgres: list[str] = []
    # The system temp dir, not pytest's: the postgres user must reach the cluster's directory
    # (it is removed below).
    root = Path(tempfile.mkdtemp(prefix="forecaster-pg-", dir=SYSTEM_TMP))
    root.chmod(0o755)
    data = root / "data"
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as 'postgres'
        if shutil.which("runuser") is None:
            unavailable("running as root without runuser to drop to the postgres user")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    log = root / "postgres.log"

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        run(str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
            "-c", "CREATE DATABASE mlflow")  # fmt: skip
        yield Postgres(port=port, url=f"postgresql://postgres@127.0.0.1:{port}/mlflow")
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on PostgreSQL, artifacts served by the server; stops its process group."""

    def __init__(
        self,
        backend: str,
        artifacts: Path,
        log: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend, self.artifacts, self.log = backend, artifacts, log
        self.extra_args, self.extra_env = extra_args, env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **self.extra_env}
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend,
                 "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 *self.extra_args],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy in 180 s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(postgres.url, root / "artifacts", root / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
