"""`forecaster ui` as a real process: it must stop MLflow and its workers with it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORECASTER = Path(sys.executable).parent / "forecaster"


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url, timeout=2).status_code
        except httpx.TransportError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {timeout} s: {log.read_text()[-2000:]}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_forecaster_ui_stops_mlflow_and_its_workers(tmp_path: Path) -> None:
    data_dir = tmp_path / "ui-data"
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(FORECASTER), "ui", "--data-dir", str(data_dir), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    groups: list[int] = []
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/health", process, log) == 200
        groups = _children(process.pid)  # mlflow, leader of its own process group
        assert groups, "forecaster ui started no MLflow process"
        assert all(_group_alive(g) for g in groups)
        process.send_signal(signal.SIGTERM)  # to forecaster only, as a process manager would
        assert process.wait(timeout=30) == 143  # the shell's code for "ended by SIGTERM"
        deadline = time.monotonic() + 15
        while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_group_alive(g) for g in groups), "MLflow workers outlived forecaster ui"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # the port is free again
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
