"""The data source cannot take the service down: failed lookups are remembered, an outage opens
a circuit, lookups run on their own pool, batches have a deadline, per-ticker state is bounded.

The Yahoo code path is the real one; only its network call (the downloader) is replaced."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from curl_cffi.requests.exceptions import DNSError
from fastapi.testclient import TestClient

from forecaster.config import YahooConfig
from forecaster.data.sources import SampleSource
from forecaster.data.sources.yahoo import YahooSource
from forecaster.errors import TickerNotFoundError
from service.history import HistoryStore
from service.main import create_app
from service.settings import ServiceSettings
from tests.service.test_api import history_rows

pytestmark = pytest.mark.slow


class OfflineNetwork:
    """Stands in for Yahoo's HTTP call: counts calls, optionally blocks until released, then
    fails the way yfinance does offline (a DNS error)."""

    def __init__(self, block: bool = False) -> None:
        self.calls: list[str] = []
        self.finished = 0  # calls that have returned (failed), released or timed out
        self.released = threading.Event()
        if not block:
            self.released.set()

    def __call__(
        self, ticker: str, start: date | None, adjust: bool, timeout: float
    ) -> pd.DataFrame:
        self.calls.append(ticker)
        self.released.wait(timeout=10)
        self.finished += 1
        raise DNSError("Could not resolve host: query2.finance.yahoo.com")


@contextmanager
def yahoo_app(
    settings_for: Callable[..., ServiceSettings],
    tmp_path: Path,
    network: OfflineNetwork,
    **overrides: Any,
) -> Iterator[TestClient]:
    app = create_app(settings_for(data_source="yahoo", **overrides))
    with TestClient(app, raise_server_exceptions=False) as client:
        store: HistoryStore = app.state.service.history
        store.source = YahooSource(
            tmp_path / "empty-cache", YahooConfig(retries=1), downloader=network
        )
        try:
            yield client
        finally:
            network.released.set()


def test_a_failed_lookup_is_answered_from_memory(
    settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    network = OfflineNetwork()
    with yahoo_app(settings_for, tmp_path, network, source_breaker_failures=100) as client:
        for _ in range(5):
            response = client.post("/v1/predictions", json={"ticker": "AAPL"})
            assert response.status_code == 503
            assert "could not download 'AAPL'" in response.json()["detail"]
        assert network.calls == ["AAPL"]


def test_an_outage_opens_the_circuit_then_it_tries_again(
    settings_for: Callable[..., ServiceSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cooldown is passed by moving the store's clock, not by sleeping: on a loaded machine
    a wall-clock cooldown could pass before the refusal is checked."""
    import service.history

    offset = [0.0]
    monkeypatch.setattr(service.history, "_clock", lambda: time.monotonic() + offset[0])
    network = OfflineNetwork()
    settings = {"source_breaker_failures": 3, "source_breaker_cooldown_seconds": 60}
    with yahoo_app(settings_for, tmp_path, network, **settings) as client:
        for ticker in ("A1", "A2", "A3"):
            assert client.post("/v1/predictions", json={"ticker": ticker}).status_code == 503
        refused = client.post("/v1/predictions", json={"ticker": "B1"})
        assert refused.status_code == 503
        assert "unavailable after 3 consecutive failures" in refused.json()["detail"]
        assert network.calls == ["A1", "A2", "A3"]  # B1 never reached the network
        # Client history does not depend on the source: still served.
        rows = history_rows(60)
        assert (
            client.post("/v1/predictions", json={"ticker": "X", "history": rows}).status_code == 200
        )
        offset[0] = 61.0  # the cooldown passes: the next uncached ticker is tried again
        assert client.post("/v1/predictions", json={"ticker": "B2"}).status_code == 503
        assert network.calls[-1] == "B2"


def test_lookups_do_not_hold_up_client_history_predictions(
    settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    """Twelve lookups hang in the source (more than the default thread pool's workers); a
    prediction from client history is still answered while they hang."""
    network = OfflineNetwork(block=True)
    with yahoo_app(
        settings_for, tmp_path, network, source_threads=2, source_breaker_failures=100
    ) as client:
        hanging = [
            threading.Thread(
                target=client.post, args=("/v1/predictions",), kwargs={"json": {"ticker": f"T{i}"}}
            )
            for i in range(12)
        ]
        for thread in hanging:
            thread.start()
        rows = history_rows(60)
        response = client.post("/v1/predictions", json={"ticker": "X", "history": rows})
        assert response.status_code == 200
        # Answered while every lookup still hangs (sharing their threads, it would have waited
        # for them to time out).
        assert network.calls
        assert network.finished == 0
        network.released.set()
        for thread in hanging:
            thread.join(timeout=30)


def test_a_batch_answers_late_items_with_503_at_its_deadline(
    settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    network = OfflineNetwork(block=True)
    with yahoo_app(settings_for, tmp_path, network, batch_deadline_seconds=0.5) as client:
        body = {"requests": [{"ticker": "SLOW"}, {"ticker": "X", "history": history_rows(60)}]}
        response = client.post("/v1/predictions/batch", json=body)
        assert response.status_code == 200
        slow, fast = response.json()["results"]
        assert slow["error"]["status"] == 503
        assert "batch deadline of 0.5 s" in slow["error"]["detail"]
        assert fast["prediction"]["ticker"] == "X"
        # The abandoned lookup goes on for whoever asks next; once it fails, that is remembered.
        network.released.set()
        again = client.post("/v1/predictions", json={"ticker": "SLOW"})
        assert again.status_code == 503
        assert network.calls == ["SLOW"]


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_per_ticker_state_stays_bounded_over_200k_tickers() -> None:
    """Every distinct unknown ticker leaves a remembered failure; the LRU caps them, so memory
    after 200k tickers is what it was after 20k (it grew 44 MB before the cap)."""
    store = HistoryStore(SampleSource(), ServiceSettings(history_max_tickers=500, source_threads=2))

    async def one(i: int) -> None:
        with pytest.raises(TickerNotFoundError):
            await store.prepared(f"T{i}", "1", None)  # type: ignore[arg-type]

    async def ask(first: int, count: int) -> int:
        for start in range(first, first + count, 500):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 500, first + count))))
        return _resident_bytes()

    async def run() -> tuple[int, int]:
        return await ask(0, 20_000), await ask(20_000, 180_000)

    try:
        after_20k, after_200k = asyncio.run(run())
    finally:
        store.close()
    assert store.tracked_tickers <= 500
    assert after_200k - after_20k < 8 * 2**20, f"grew {(after_200k - after_20k) / 2**20:.1f} MiB"
