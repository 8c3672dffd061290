"""What durable prediction logging costs per request, next to the batched default, in one run.

    python benchmarks/bench_durable_log.py [--data-dir data] [--requests 400] [--threads 8]

Needs a champion in the data dir (`make run` or `forecaster train` first). For each mode it
starts `forecaster serve` alone on a fresh SQLite log, warms it, then times --requests
sequential POST /v1/predictions {"ticker": "^GSPC"} (a cached ticker: the path where the log's
share is largest) and the same number from --threads concurrent clients, and reports the
median and p99 latency and requests per second. Last it answers --requests more in durable
mode, kills the server with SIGKILL and counts the answered forecasts missing from the log
(and the same for the batched default).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

FORECASTER = Path(sys.executable).parent / "forecaster"
BODY = {"ticker": "^GSPC"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data_dir: Path, db: Path, durable: bool) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env.update({"FORECASTER_PREDICTION_LOG_URL": f"sqlite:///{db}",
                "FORECASTER_PREDICTION_LOG_DURABLE": str(durable).lower()})  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [str(FORECASTER), "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the server did not become ready; is there a champion?")
        time.sleep(0.3)


def timed(client: httpx.Client) -> float:
    start = time.perf_counter()
    reply = client.post("/v1/predictions", json=BODY)
    assert reply.status_code == 200, reply.text
    return time.perf_counter() - start


def measure(url: str, n: int, threads: int) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(50):
            timed(client)
        sequential = [timed(client) for _ in range(n)]
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(threads)]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        concurrent = list(pool.map(lambda i: timed(clients[i % threads]), range(n)))
    wall = time.perf_counter() - start
    for client in clients:
        client.close()
    ms = sorted(1e3 * t for t in sequential)
    cms = sorted(1e3 * t for t in concurrent)
    return {"sequential_median_ms": round(statistics.median(ms), 3),
            "sequential_p99_ms": round(ms[int(0.99 * len(ms)) - 1], 3),
            "sequential_req_s": round(n / sum(sequential), 1),
            "concurrent_median_ms": round(statistics.median(cms), 3),
            "concurrent_p99_ms": round(cms[int(0.99 * len(cms)) - 1], 3),
            "concurrent_req_s": round(n / wall, 1)}  # fmt: skip


def killed(data_dir: Path, db: Path, durable: bool, n: int) -> dict[str, int]:
    process, url = serve(data_dir, db, durable)
    answered = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(n):
            reply = client.post("/v1/predictions", json=BODY)
            answered.append(reply.headers["x-request-id"])
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(db) as conn:
        logged = {row[0] for row in conn.execute("SELECT request_id FROM predictions")}
    return {"answered": len(answered), "missing_from_log": len(set(answered) - logged)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for durable in (False, True):
            name = "durable" if durable else "batched"
            process, url = serve(args.data_dir, Path(tmp) / f"{name}.db", durable)
            try:
                out[name] = measure(url, args.requests, args.threads)
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
            out[f"{name} kill -9"] = killed(args.data_dir, Path(tmp) / f"{name}-kill.db",
                                            durable, args.requests)  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
