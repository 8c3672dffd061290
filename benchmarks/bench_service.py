"""Load test of the prediction API on loopback, next to its own trivial endpoint and to
`mlflow models serve` on the same registered model, all in one run.

    python benchmarks/bench_service.py [--duration 10] [--connections 16] [--workers 1 2]
                                       [--repeats 3] [--runtimes onnxruntime torch]

Needs wrk (Debian: apt-get install wrk). Trains a model with the default architecture (2
epochs; speed does not depend on how well it is trained) on ^GSPC into a temporary MLflow
store, registers it with a hand-set table (^GSPC served by the network, any other ticker by
GARCH(1,1)-t fitted on its own history, as a trained table routes tickers it has no parameters
for), aliases it champion, then, for `forecaster serve --workers N` with each N given and each
network runtime (FORECASTER_NETWORK_RUNTIME), runs wrk against:
  1. GET  /healthz               (the framework's ceiling on this machine)
  2. POST /v1/predictions        {"ticker": "^GSPC"}, history cached in memory
  3. POST /v1/predictions        ^GSPC with 80 rows of history in the body (parsing,
                                 validation, features, scaling and a forward on every request)
  4. POST /v1/predictions        an unseen ticker with 300 rows in the body (GARCH fitted on
                                 them once per process, then filtered over them per request)
  5. POST /v1/predictions/batch  50 ^GSPC histories of 80 rows each, ending on different days
                                 (one forward for all 50)
and last POST /invocations on `mlflow models serve` with the same model and 80 rows (the
outside anchor). Each server runs alone while it is measured.
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import mlflow
from mlflow import MlflowClient

from forecaster.config import load_config
from forecaster.data.sources import SampleSource
from forecaster.evaluation.gate import Evidence, Route
from forecaster.methods import NETWORK, Garch
from forecaster.methods.network.forward import RUNTIMES, Runtime
from forecaster.registry.loader import load_version, register
from forecaster.registry.predictor import Forecaster
from forecaster.registry.tracking import log_pyfunc
from pipelines.retrain import run_retrain
from pipelines.run_artifacts import input_example

BIN = Path(sys.executable).parent
UNSEEN_ROWS = 300


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


def history_body(ticker: str, rows: int, skip: int = 0) -> dict[str, object]:
    """`rows` days of ^GSPC ending `skip` days before its last, sent as `ticker`'s history."""
    sample = SampleSource().load("^GSPC")
    frame = sample.iloc[len(sample) - rows - skip : len(sample) - skip].reset_index()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    return {"ticker": ticker, "history": frame.to_dict(orient="records")}


def routed_champion(uri: str, version: str) -> str:
    """The trained version registered again with a hand-set table: ^GSPC by the network, every
    other ticker by GARCH fitted on its own history; aliased champion."""
    client = MlflowClient(uri)
    trained = load_version(client, uri, "stock-lstm", version, runtime="torch").forecaster
    evidence = Evidence("ticker", 0, {}, {}, None, {}, None)
    bundle = replace(
        trained.bundle,
        routes={"^GSPC": Route(NETWORK, "set by the benchmark", evidence)},
        unseen=Route(Garch.name, "set by the benchmark", replace(evidence, scope="unseen")),
    )
    frames = {"^GSPC": SampleSource().load("^GSPC")}
    with mlflow.start_run(run_name="bench-routed"):
        info = log_pyfunc(Forecaster(bundle, trained.network), input_example(frames, bundle))
    routed = register(info.model_uri, "stock-lstm", {})
    client.set_registered_model_alias("stock-lstm", "champion", routed)
    return routed


def measure_api(
    workers: int, runtime: Runtime, env: dict[str, str], work: Path, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Every path of one `forecaster serve --workers N`, healthz first, in one run."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start([str(BIN / "forecaster"), "-q", "serve", "--port", str(port),
                 "--workers", str(workers)], {**env, "FORECASTER_NETWORK_RUNTIME": runtime},
                f"{base}/readyz", work / f"api-{workers}-{runtime}.log")  # fmt: skip
    cached = json.dumps({"ticker": "^GSPC"})
    own = json.dumps(history_body("^GSPC", args.rows))
    unseen = json.dumps(history_body("ACME", UNSEEN_ROWS))
    batch = json.dumps({"requests": [history_body("^GSPC", args.rows, skip=i) for i in range(50)]})
    paths = {
        "GET /healthz (trivial)": ("/healthz", None),
        "POST /v1/predictions, cached ^GSPC": ("/v1/predictions", cached),
        f"POST /v1/predictions, {args.rows} rows sent": ("/v1/predictions", own),
        f"POST /v1/predictions, unseen, {UNSEEN_ROWS} rows": ("/v1/predictions", unseen),
        f"POST /v1/predictions/batch, 50 x {args.rows} rows": ("/v1/predictions/batch", batch),
    }
    figures = {}
    try:
        deadline = time.monotonic() + 60  # every worker has loaded the model
        while sum(httpx.get(f"{base}/readyz").status_code == 200 for _ in range(10)) < 10:
            if time.monotonic() > deadline:
                raise SystemExit("workers not ready")
            time.sleep(0.5)
        model = httpx.get(f"{base}/v1/model").json()
        if model["network_runtime"] != runtime:
            raise SystemExit(f"asked for {runtime}, served by {model['network_runtime']}")
        for name, (path, body) in paths.items():
            if body is not None:
                reply = httpx.post(f"{base}{path}", content=body, timeout=30,
                                   headers={"content-type": "application/json"})  # fmt: skip
                reply.raise_for_status()
                answer = reply.json()
                method = answer.get("method") or answer["results"][0]["prediction"]["method"]
                print(f"{name}: served by {method}", file=sys.stderr)
        for name, (path, body) in paths.items():
            figures[name] = wrk(f"{base}{path}", body, args.duration, args.connections, work)
    finally:
        stop(api)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rows", type=int, default=80, help="rows of client history")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="runs of every path")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    data_dir = work / "data"
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    values = {"data.data_dir": str(data_dir), "tracking.tracking_uri": uri}
    # One index and no routing table: the network answers every path, as in earlier runs.
    overrides = [
        "training.max_epochs=2",
        "data.tickers=[^GSPC]",
        "evaluation.route_per_ticker=false",
    ]
    config = load_config(None, overrides, values=values)
    result = run_retrain(config, force=True, name="train")
    mlflow.set_tracking_uri(uri)
    version = routed_champion(uri, str(result.model_version))

    # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    path = f"{BIN}:{os.environ.get('PATH', '')}"
    env.update({"FORECASTER_TRACKING_URI": uri, "FORECASTER_DATA_DIR": str(data_dir),
                "MLFLOW_TRACKING_URI": uri, "PATH": path})  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for workers in args.workers:
            for runtime in args.runtimes:
                for name, figures in measure_api(workers, runtime, env, work, args).items():
                    runs.setdefault(f"{name} [{workers} worker(s), {runtime}]", []).append(figures)

    if not args.no_mlflow:
        port = free_port()
        mlflow_base = f"http://127.0.0.1:{port}"
        serve = start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/stock-lstm@champion",
                       "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
                      env, f"{mlflow_base}/ping", work / "mlflow-serve.log")  # fmt: skip
        try:
            frame = SampleSource().load("^GSPC").tail(args.rows).reset_index()
            frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
            payload = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)})
            headers = {"content-type": "application/json"}
            check = httpx.post(
                f"{mlflow_base}/invocations", content=payload, headers=headers, timeout=30
            )
            check.raise_for_status()
            runs[f"mlflow models serve /invocations, {args.rows} rows"] = [
                wrk(f"{mlflow_base}/invocations", payload, args.duration, args.connections, work)
            ]
        finally:
            stop(serve)

    print(f"wrk -t2 -c{args.connections} -d{args.duration}s on {platform.machine()}, "
          f"{os.cpu_count()} cores; model v{version}; {args.repeats} run(s) "
          "each, medians, p99 of every run")  # fmt: skip
    for name, figs in runs.items():
        rps = statistics.median(f["rps"] for f in figs)
        p99s = ", ".join(f"{f['p99_ms']:.1f}" for f in figs)
        bad = sum(f["non_2xx"] for f in figs)
        print(f"{name:<58} {rps:9.1f} req/s  p99 {p99s} ms  non-2xx {bad:.0f}")
    for workers in args.workers:
        for runtime in args.runtimes:

            def median(name: str, at: str = f"{workers} worker(s), {runtime}") -> float:
                return statistics.median(f["rps"] for f in runs[f"{name} [{at}]"])

            trivial = median("GET /healthz (trivial)")
            single = median(f"POST /v1/predictions, {args.rows} rows sent")
            unseen = median(f"POST /v1/predictions, unseen, {UNSEEN_ROWS} rows")
            batch = median(f"POST /v1/predictions/batch, 50 x {args.rows} rows")
            cached = median("POST /v1/predictions, cached ^GSPC")
            print(f"{workers} worker(s), {runtime}: cached / healthz {cached / trivial:.2f}; "
                  f"{args.rows} rows sent / healthz {single / trivial:.2f}; unseen "
                  f"{UNSEEN_ROWS} rows / healthz {unseen / trivial:.2f}; batch of 50: "
                  f"{batch * 50:.0f} tickers/s = {batch * 50 / single:.1f}x single "
                  "calls")  # fmt: skip
    print(json.dumps(runs))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
