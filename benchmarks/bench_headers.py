"""/healthz latency while hostile request heads arrive: the bounded h11 server `forecaster serve`
runs vs uvicorn's default httptools server, in the same run.

    python benchmarks/bench_headers.py [--probes 1000] [--slow 200] [--seconds 15]

Each server is started (no model needed: /healthz answers regardless) and /healthz is timed
`--probes` times (or for `--seconds`, whichever ends first) on a fresh connection each, first
idle, then while two clients send 64 MB headers over and over and `--slow` connections send a
head one byte every 100 ms. Prints the median, p99 and max latency, and what the attackers
got back. With wrk installed (Debian: apt-get install wrk), also the price of the bounded
server in throughput: `wrk -t2 -c16 -d10s` on /healthz, each server alone.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SERVERS = {
    "bounded h11 (forecaster serve)": "service.server:BoundedH11Protocol",
    "httptools (uvicorn default)": "httptools",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(http: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "FORECASTER_DATA_DIR": str(data_dir), "FORECASTER_TORCH_THREADS": "1",
           "FORECASTER_PREDICTION_LOG_URL": f"sqlite:///{data_dir / 'predictions.db'}"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory", "--port",
         str(port), "--http", http, "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process, port
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{http}: server did not answer in 90 s")


def probe(port: int, n: int, seconds: float) -> list[float]:
    """Seconds for a GET /healthz on a new connection (connect, send, read the whole answer),
    with raw sockets: an HTTP client's own set-up (httpx builds an SSL context per call,
    about 50 ms) would hide the server's share."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while len(times) < n and time.monotonic() < deadline:
        began = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(request)
                while conn.recv(65536):
                    pass
        except OSError:
            pass  # counted at the time it took to fail
        times.append(time.perf_counter() - began)
        time.sleep(0.01)
    return times


def huge_headers(port: int, stop: threading.Event, outcomes: list[str]) -> None:
    chunk = b"a" * 65536
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            try:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(1024):  # 64 MB
                    conn.sendall(chunk)
                conn.sendall(b"\r\n\r\n")
                outcomes.append(conn.recv(12).decode(errors="replace") or "closed")
            except OSError as exc:
                outcomes.append(type(exc).__name__)


def slow_heads(port: int, count: int, stop: threading.Event, outcomes: list[str]) -> None:
    conns = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=60)
        conn.setblocking(False)
        conns.append(conn)
    sent = 0
    while not stop.is_set() and conns:
        for conn in list(conns):
            try:
                conn.send(b"GET /healthz HTTP/1.1\r\n"[sent : sent + 1] or b"a")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
                conns.remove(conn)
                conn.close()
                continue
            try:
                answer = conn.recv(12)
            except BlockingIOError:
                continue
            except OSError as exc:
                answer = type(exc).__name__.encode()
            outcomes.append(answer.decode(errors="replace") or "closed")
            conns.remove(conn)
            conn.close()
        sent += 1
        time.sleep(0.1)
    outcomes.append(f"{len(conns)} still open at the end")
    for conn in conns:
        conn.close()


def throughput(port: int) -> str:
    """wrk's requests/s and latency percentiles on /healthz, or why there are none."""
    if shutil.which("wrk") is None:
        return "wrk not installed"
    out = subprocess.run(["wrk", "-t2", "-c16", "-d10s", "--latency",
                          f"http://127.0.0.1:{port}/healthz"],
                         capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rate and p50 and p99):
        return f"wrk gave no figures: {out[-200:]!r}"
    return f"{float(rate[1]):,.0f} req/s, p50 {p50[1]}, p99 {p99[1]}"


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[max(0, int(0.99 * len(ordered)) - 1)]
    return (f"median {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {ordered[-1] * 1000:7.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0, help="longest probing phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-headers-") as tmp:
        for label, http in SERVERS.items():
            process, port = start(http, Path(tmp))
            try:
                idle = probe(port, args.probes, args.seconds)
                rate = throughput(port)
                stop = threading.Event()
                big: list[str] = []
                slow: list[str] = []
                attackers = [threading.Thread(target=huge_headers, args=(port, stop, big))
                             for _ in range(2)]  # fmt: skip
                attackers.append(
                    threading.Thread(target=slow_heads, args=(port, args.slow, stop, slow))
                )
                for attacker in attackers:
                    attacker.start()
                time.sleep(1.0)
                attacked = probe(port, args.probes, args.seconds)
                stop.set()
                for attacker in attackers:
                    attacker.join()
            finally:
                process.kill()
                process.wait()
            print(f"{label}")
            print(f"  wrk /healthz           {rate}")
            print(f"  /healthz idle          {summary(idle)}  ({len(idle)} probes)")
            print(f"  /healthz under attack  {summary(attacked)}  ({len(attacked)} probes)")
            big_seen = sorted({o.strip() for o in big})
            slow_seen = sorted({o.strip() for o in slow})
            print(f"  64 MB heads tried {len(big)}, outcomes {big_seen}")
            print(f"  {args.slow} slow heads: outcomes {slow_seen[:4]}")


if __name__ == "__main__":
    main()
