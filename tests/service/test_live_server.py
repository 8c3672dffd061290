"""The real server process: `forecaster serve` on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from pipelines.cli import main
from service.prediction_log import read_log
from tests.conftest import free_port
from tests.service.conftest import API_KEY, Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORECASTER = Path(sys.executable).parent / "forecaster"
ROOT = Path(__file__).resolve().parents[2]
HEAD_TIMEOUT = 2.0


@dataclass(frozen=True)
class LiveServer:
    url: str
    log: Path


@pytest.fixture(scope="module")
def live(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    logs = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        **os.environ,
        "FORECASTER_TRACKING_URI": registry.tracking_uri,
        "FORECASTER_DATA_DIR": str(registry.data_dir),
        "FORECASTER_API_KEY": API_KEY,
        "FORECASTER_RELOAD_INTERVAL_SECONDS": "0.5",
        "FORECASTER_PREDICTION_LOG_URL": f"sqlite:///{logs.parent / 'predictions.db'}",
        "FORECASTER_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
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
        yield LiveServer(url=base, log=logs)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(live: LiveServer) -> str:
    return live.url


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
        deadline = time.monotonic() + 60
        while original not in versions:  # the clients are answered before the switch starts
            assert time.monotonic() < deadline, "no answer from the original version"
            time.sleep(0.05)
        new = registry.new_version()
        registry.promote(new)  # the service polls the alias every 0.5 s
        deadline = time.monotonic() + 60
        while new not in versions:  # the clients themselves see the switch
            assert time.monotonic() < deadline, "service never switched to the new version"
            time.sleep(0.05)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        registry.promote(original)
    assert failures == []
    assert {original, new} <= versions


def test_replay_through_a_running_service_logs_what_in_process_replay_logs(
    live: LiveServer, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replay --url`: one request per day with history up to it; the service logs them, and
    each logged forecast equals the in-process replay of the same version and day."""
    original = registry.result.model_version
    deadline = time.monotonic() + 30  # the switch test above promoted the original back
    while httpx.get(f"{live.url}/readyz", timeout=5).json()["version"] != original:
        assert time.monotonic() < deadline, "service never went back to the original version"
        time.sleep(0.2)
    common = ["--start", "2018-12-03", "--end", "2018-12-14", "--ticker", "^GSPC",
              "--data-dir", str(registry.data_dir),
              "--set", f"tracking.tracking_uri={registry.tracking_uri}", "--json"]  # fmt: skip
    assert main(["-q", "replay", "--url", live.url, *common]) == 0
    via_service = json.loads(capsys.readouterr().out)
    assert via_service["logged"] == 9  # ten weekdays; markets closed on 2018-12-05
    assert via_service["versions"] == {original: 9}

    own = f"sqlite:///{tmp_path / 'in-process.db'}"
    assert main(["-q", "replay", "--log-url", own, "--model-uri",
                 f"models:/stock-lstm/{original}", *common]) == 0  # fmt: skip
    capsys.readouterr()
    expected = {r["as_of"]: r for r in read_log(own)}
    served_log = f"sqlite:///{live.log.parent / 'predictions.db'}"
    deadline = time.monotonic() + 30  # the service's writer runs in the background
    while True:
        logged = {r["as_of"]: r for r in read_log(served_log)
                  if r["history_source"] == "request" and r["as_of"] in expected}  # fmt: skip
        if len(logged) == len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(logged) == sorted(expected)
    for day, row in logged.items():
        assert row["model_version"] == original
        assert row["target_date"] == expected[day]["target_date"]
        # float32 forward passes: one window at a time vs all days in one batch.
        for level, price in expected[day]["quantiles"].items():
            assert row["quantiles"][level] == pytest.approx(price, rel=1e-7), (day, level)


def test_replay_against_no_service_is_one_line(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["-q", "replay", "--url", url, "--start", "2018-12-03", "--end", "2018-12-14",
            "--data-dir", str(registry.data_dir)]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"forecaster: error: cannot reach the service at {url} (")
    assert "\n" not in err
    assert main([*args, "--log-url", "sqlite:///x.db"]) == 1
    assert "drop --model-uri and --log-url" in capsys.readouterr().err


schemathesis.checks.load_all_checks()
ALL_CHECKS = schemathesis.checks.CHECKS.get_all()


def fuzz_config(keyed: bool) -> SchemathesisConfig:
    """The project's schemathesis.toml (what a `st run` of the live service expects; its
    comments say why), with the admin key's 401 and 403 counted as failures when keyed."""
    config = SchemathesisConfig.from_path(ROOT / "schemathesis.toml")
    if keyed:
        check = config.projects.default.checks.positive_data_acceptance
        check.expected_statuses = [s for s in check.expected_statuses if s not in ("401", "403")]
    return config


@pytest.mark.parametrize("keyed", [True, False], ids=["with the admin key", "anonymous"])
def test_openapi_schema_fuzz_passes_every_check(server: str, keyed: bool) -> None:
    """Schemathesis generates requests from the app's own OpenAPI schema, valid and invalid, as
    the admin and as anyone, and runs all of its checks on every response: no 5xx, responses,
    status codes, content types and headers as documented, invalid data refused, valid data
    accepted, authentication honoured."""
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json", config=fuzz_config(keyed))
    headers = {"X-API-Key": API_KEY} if keyed else {}
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        checked.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples every run: a failure reproduces
            suppress_health_check=list(HealthCheck),
        )
        def every_check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                base_url=server, headers=headers, checks=ALL_CHECKS, timeout=30
            )
            if response.status_code == 422 and case.meta and case.meta.generation.mode.is_positive:
                detail = response.json()["detail"]
                assert isinstance(detail, str), (
                    f"{case.method} {case.path}: schema-valid data refused field by field, so "
                    f"the schema does not state a rule the service enforces: {detail}"
                )
                assert "\n" not in detail

        every_check()
    assert "POST /v1/predictions" in checked
    assert "POST /v1/predictions/batch" in checked


def _hostile_bodies() -> list[bytes]:
    invalid = {"date": "2018-01-02", "open": "x", "high": 1, "low": 1, "close": 1, "volume": 1}
    return [
        b'{"ticker": NaN}',
        b'{"ticker": "A", "history": [{"date": "9999-12-31"}]}',
        json.dumps({"ticker": "A", "history": [invalid] * 16_000}).encode(),  # 1.3 MB
        b"[" * 100_000,
        # 16k valid rows (over max_history_rows): many objects to build and collect.
        json.dumps(
            {
                "ticker": "A",
                "history": [
                    {**invalid, "open": 1.0, "date": f"{1950 + i // 300}-01-{1 + i % 28:02d}"}
                    for i in range(16_000)
                ],
            }
        ).encode(),
    ]


def test_healthz_stays_fast_while_hostile_bodies_arrive(live: LiveServer) -> None:
    """Four clients send hostile bodies (1.3 MB of invalid rows among them) nonstop; /healthz
    probes meanwhile must each be answered (within 10 s: a body that stalls the event loop
    fails it). Its latency is a benchmark's figure, not an assertion."""
    stop = threading.Event()
    statuses: list[int] = []

    def attack(body: bytes) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                reply = client.post(f"{live.url}/v1/predictions", content=body,
                                    headers={"content-type": "application/json"})  # fmt: skip
                statuses.append(reply.status_code)

    attackers = [threading.Thread(target=attack, args=(b,)) for b in _hostile_bodies()]
    for attacker in attackers:
        attacker.start()
    latencies = []
    try:
        # Measure only once every attacker is under way: each has had a reply.
        deadline = time.monotonic() + 30
        while len(statuses) < 2 * len(attackers):
            assert time.monotonic() < deadline, "the attackers never got a reply"
            time.sleep(0.01)
        with httpx.Client(timeout=10) as client:
            for _ in range(200):
                start = time.perf_counter()
                assert client.get(f"{live.url}/healthz").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.01)
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join()
    # Every probe was answered within the client's timeout; the latency itself is measured in
    # benchmarks/ (a wall-clock bound here would flake on two loaded cores).
    assert len(latencies) == 200
    assert statuses
    assert set(statuses) <= {413, 422}, sorted(set(statuses))


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    return conn


def _reply(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def test_a_huge_header_is_refused_before_it_is_read(live: LiveServer) -> None:
    """64 MB of header: 431 once the head passes 32 KiB, and the connection is closed, so the
    server neither buffers it nor stalls on it (before: 200 after 10 s, event loop frozen)."""
    conn = _connect(live.url)
    sent = 0
    chunk = b"a" * 65536
    with conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < 64 * 2**20:
                conn.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = _reply(conn)
        except ConnectionResetError:  # closed with our unread bytes pending: the kernel resets
            answer = b""
    assert sent < 64 * 2**20, "the server read the whole 64 MB header"
    if answer:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b'{"detail":"request headers too large"}' in answer
    assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200


def test_a_header_just_too_large_gets_431(live: LiveServer) -> None:
    big = httpx.get(f"{live.url}/healthz", headers={"X-Big": "a" * 40_000}, timeout=10)
    assert big.status_code == 431
    assert big.json() == {"detail": "request headers too large"}
    fine = httpx.get(f"{live.url}/healthz", headers={"X-Big": "a" * 20_000}, timeout=10)
    assert fine.status_code == 200


def test_slow_and_silent_connections_are_closed(live: LiveServer) -> None:
    """A head sent a byte at a time gets 408 and a close after the head timeout; a connection
    that sends nothing is closed; neither holds the server (before: held open forever)."""
    slow = _connect(live.url)
    silent = _connect(live.url)
    with slow, silent:
        start = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            for byte in b"Host: x\r\nX-Slow: " + b"a" * 100:
                slow.sendall(bytes([byte]))
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _reply(slow)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert _reply(silent) == b""
        waited = time.monotonic() - start
    assert HEAD_TIMEOUT <= waited < 30, waited


def test_http11_without_host_is_400(live: LiveServer) -> None:
    conn = _connect(live.url)
    with conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        answer = _reply(conn)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_no_traceback_in_the_server_log_after_hostile_clients(live: LiveServer) -> None:
    """Runs after the fuzz and the hostile-body tests in this module: the log has none."""
    log = live.log.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
    assert "Exception in ASGI application" not in log


def _serve_data_dir(
    registry: Registry,
    tmp_path: Path,
    db: Path,
    busy_timeout: float | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`forecaster serve --data-dir` with no FORECASTER_* variables but the log's URL (with
    SQLite's busy timeout, if given) and `extra_env`, on a free port (process.args[-1]), ready;
    its output in tmp_path/serve.log."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECASTER_", "MLFLOW_TRACKING_URI"))}  # fmt: skip
    env.update(extra_env or {})
    query = f"?timeout={busy_timeout:g}" if busy_timeout is not None else ""
    env["FORECASTER_PREDICTION_LOG_URL"] = f"sqlite:///{db}{query}"
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(FORECASTER), "serve", "--data-dir", str(registry.data_dir), "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while _answer(f"http://127.0.0.1:{port}/readyz", process, log) != 200:
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"not ready in 60 s: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    return process


def test_serve_takes_data_dir_and_config_flags(registry: Registry, tmp_path: Path) -> None:
    """No FORECASTER_* variables: --data-dir alone points the service at the store."""
    process = _serve_data_dir(registry, tmp_path, tmp_path / "predictions.db")
    try:
        url = f"http://127.0.0.1:{process.args[-1]}/readyz"  # type: ignore[index]
        assert httpx.get(url).json()["version"] == registry.result.model_version
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_a_clean_shutdown_writes_every_logged_prediction(
    registry: Registry, tmp_path: Path
) -> None:
    """The log's database is locked while predictions are served, and the server is told to
    stop before it frees up: the shutdown waits for the writer, and every row lands."""
    db = tmp_path / "predictions.db"
    # A busy timeout far longer than the 40 requests take, however loaded the machine: the
    # writer waits for the lock instead of failing a batch.
    process = _serve_data_dir(registry, tmp_path, db, busy_timeout=120)
    try:
        holder = sqlite3.connect(db)
        holder.execute("BEGIN EXCLUSIVE")  # the writer waits on SQLite's busy timeout
        base = f"http://127.0.0.1:{process.args[-1]}"  # type: ignore[index]
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(40):
                assert client.post("/v1/predictions", json={"ticker": "^GSPC"}).status_code == 200
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(1.0)
        assert process.poll() is None, "exited with rows still queued"
        holder.rollback()
        holder.close()
        # uvicorn re-raises the SIGTERM once its shutdown is complete.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log = (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in log
    assert len(read_log(f"sqlite:///{db}")) == 40, log[-2000:]


def test_in_durable_mode_a_kill_9_loses_no_answered_forecast(
    registry: Registry, tmp_path: Path
) -> None:
    """Durable mode: every forecast answered 200 is in the log even when the server dies with
    SIGKILL right after the last answer (no shutdown, no flush); a locked log answers 503."""
    db = tmp_path / "predictions.db"
    durable = {"FORECASTER_PREDICTION_LOG_DURABLE": "true",
               "FORECASTER_PREDICTION_LOG_DURABLE_TIMEOUT_SECONDS": "1"}  # fmt: skip
    process = _serve_data_dir(registry, tmp_path, db, busy_timeout=30, extra_env=durable)
    answered = []
    try:
        base = f"http://127.0.0.1:{process.args[-1]}"  # type: ignore[index]
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(30):
                reply = client.post("/v1/predictions", json={"ticker": "^GSPC"})
                assert reply.status_code == 200, reply.text
                answered.append(reply.headers["x-request-id"])
            holder = sqlite3.connect(db)
            holder.execute("BEGIN EXCLUSIVE")
            locked = client.post("/v1/predictions", json={"ticker": "^GSPC"})
            holder.rollback()
            holder.close()
            assert locked.status_code == 503
            assert locked.json()["detail"].startswith(
                "the prediction log did not commit within 1 s; in durable mode"
            )
            for _ in range(5):
                reply = client.post("/v1/predictions", json={"ticker": "^GSPC"})
                assert reply.status_code == 200, reply.text
                answered.append(reply.headers["x-request-id"])
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    logged = {r["request_id"] for r in read_log(f"sqlite:///{db}")}
    assert set(answered) <= logged


def _answer(url: str, process: subprocess.Popen[bytes], log: Path) -> int:
    if process.poll() is not None:
        pytest.fail(f"exited with {process.returncode}: {log.read_text()[-2000:]}")
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


def test_metrics_count_every_worker(registry: Registry, tmp_path: Path) -> None:
    """`serve --workers 2`: whichever worker answers /metrics reports both workers' counts."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORECASTER_", "MLFLOW_TRACKING_URI", "PROMETHEUS_"))}  # fmt: skip
    env["FORECASTER_PREDICTION_LOG_URL"] = f"sqlite:///{tmp_path / 'predictions.db'}"
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(FORECASTER), "serve", "--data-dir", str(registry.data_dir), "--port", str(port),
             "--workers", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        # Both workers load the model; a fresh connection per request reaches either.
        ready = 0
        while ready < 10:
            ready = ready + 1 if _answer(f"{base}/readyz", process, log) == 200 else 0
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        for _ in range(20):
            reply = httpx.post(f"{base}/v1/predictions", json={"ticker": "^GSPC"}, timeout=30)
            assert reply.status_code == 200
        version = registry.result.model_version
        line = f'forecaster_predictions_total{{model_version="{version}"}} 20.0'
        for _ in range(10):
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert line in text, [t for t in text.splitlines() if "predictions_total" in t]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text()
    assert not list(Path(tempfile.gettempdir()).glob("forecaster-metrics-*")), "left behind"
