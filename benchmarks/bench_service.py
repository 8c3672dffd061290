"""Load test of the prediction API on loopback, next to its own trivial endpoint and to
`mlflow models serve` on the same registered model, all in one run.

    python benchmarks/bench_service.py [--duration 10] [--connections 16]

Needs wrk (Debian: apt-get install wrk). Trains a model with the default architecture (2
epochs; speed does not depend on how well it is trained) into a temporary MLflow store,
aliases it champion, then runs wrk against:
  1. GET  /healthz            (the framework's ceiling on this machine)
  2. POST /v1/predictions     {"ticker": "^GSPC"}, history cached in memory
  3. POST /v1/predictions     with 60 rows of history in the body (validation, features,
                              scaling and a forward pass on every request)
  4. POST /invocations        on `mlflow models serve` with the same model and 50 rows
Each server runs alone while it is measured, one uvicorn worker each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from mlflow import MlflowClient

from forecaster.config import load_config
from forecaster.sources import SampleSource
from pipelines.retrain import run_retrain

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    cmd: list[str], env: dict[str, str], ready_url: str, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"{cmd[0]} did not become ready: {log.read_text()[-1500:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wrk(
    url: str, body: str | None, duration: int, connections: int, workdir: Path
) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if body is not None:
        script = workdir / f"post{abs(hash(body))}.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n"
        )
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            raise ValueError(f"no {label}% latency in wrk output:\n{out}")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    data_dir = work / "data"
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    values = {"data.data_dir": str(data_dir), "tracking.tracking_uri": uri}
    config = load_config(None, ["training.max_epochs=2"], values=values)
    result = run_retrain(config, force=True, name="train")
    MlflowClient(uri).set_registered_model_alias(
        "stock-lstm", "champion", str(result.model_version)
    )

    # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
    env = {**os.environ, "FORECASTER_TRACKING_URI": uri, "FORECASTER_DATA_DIR": str(data_dir),
           "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}  # fmt: skip
    figures: dict[str, dict[str, float]] = {}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start([str(BIN / "forecaster"), "-q", "serve", "--port", str(port)], env,
                f"{base}/readyz", work / "api.log")  # fmt: skip
    try:
        body = json.dumps({"ticker": "^GSPC"})
        httpx.post(f"{base}/v1/predictions", content=body,
                   headers={"content-type": "application/json"}).raise_for_status()  # fmt: skip
        figures["GET /healthz (trivial)"] = wrk(f"{base}/healthz", None, args.duration,
                                                args.connections, work)  # fmt: skip
        figures["POST /v1/predictions"] = wrk(f"{base}/v1/predictions", body, args.duration,
                                              args.connections, work)  # fmt: skip
        rows = SampleSource().load("^GSPC").tail(60).reset_index()
        rows["date"] = rows["date"].dt.strftime("%Y-%m-%d")
        own = json.dumps({"ticker": "ACME", "history": rows.to_dict(orient="records")})
        figures["POST /v1/predictions, 60 rows sent"] = wrk(
            f"{base}/v1/predictions", own, args.duration, args.connections, work
        )
    finally:
        stop(api)

    port = free_port()
    mlflow_base = f"http://127.0.0.1:{port}"
    serve = start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/stock-lstm@champion",
                   "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
                  env, f"{mlflow_base}/ping", work / "mlflow-serve.log")  # fmt: skip
    try:
        frame = SampleSource().load("^GSPC").tail(50).reset_index()
        frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
        payload = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)})
        check = httpx.post(f"{mlflow_base}/invocations", content=payload,
                           headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
        check.raise_for_status()
        figures["mlflow models serve /invocations"] = wrk(
            f"{mlflow_base}/invocations", payload, args.duration, args.connections, work
        )
    finally:
        stop(serve)

    print(f"wrk -t2 -c{args.connections} -d{args.duration}s on {platform.machine()}, "
          f"{os.cpu_count()} cores; model v{result.model_version}")  # fmt: skip
    for name, f in figures.items():
        print(f"{name:<36} {f['rps']:9.1f} req/s  p50 {f['p50_ms']:7.2f} ms  "
              f"p99 {f['p99_ms']:7.2f} ms  non-2xx {f['non_2xx']:.0f}")  # fmt: skip
    pred = figures["POST /v1/predictions"]["rps"]
    print(
        f"predictions / trivial: {pred / figures['GET /healthz (trivial)']['rps']:.2f}; "
        f"predictions / mlflow models serve: "
        f"{pred / figures['mlflow models serve /invocations']['rps']:.1f}x"
    )
    print(json.dumps(figures))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
