"""Recent daily history per ticker, kept in memory with a TTL.

A prediction for a cached ticker reads neither disk nor network: the validated frame, and the
model input prepared from it, stay in memory until the TTL runs out or the model changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from forecaster.data import sources
from forecaster.data.schemas import CLOSE
from forecaster.data.sources.base import OHLCVSource
from forecaster.errors import DataError, SourceUnavailableError
from forecaster.methods import NETWORK
from forecaster.methods.calibration import Calibration
from forecaster.registry.predictor import Forecaster
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

# The clock behind TTLs and the circuit breaker's cooldown (tests move it instead of sleeping).
_clock = time.monotonic

V = TypeVar("V")


@dataclass(frozen=True)
class PreparedHistory:
    """One model's forecast for the day after `as_of` of a history.

    The network is deterministic, so for server-side history the quantiles are computed once
    per (ticker, model version, history) and every later request reuses them.
    """

    as_of: pd.Timestamp
    last_close: float
    quantiles: np.ndarray  # (n_quantiles,) log returns
    method: str = NETWORK  # the method that made them (forecaster.methods.names())
    calibration: Calibration | None = None  # the band factors applied to the model's bands
    fallback: str | None = None  # why the random walk answers instead of the route's method


def prepare(forecaster: Forecaster, frame: pd.DataFrame, ticker: str) -> PreparedHistory:
    """The ticker's forecast by the method its route names: the network, or a baseline."""
    served = forecaster.serve(frame, ticker)
    return PreparedHistory(frame.index[-1], float(frame[CLOSE].iloc[-1]), served.quantiles,
                           served.method, served.calibration, served.fallback)  # fmt: skip


def make_source(settings: ServiceSettings) -> OHLCVSource:
    """The library's source for the service's settings (Yahoo's retries and timeouts too)."""
    return sources.make_source(settings.data_config())


@dataclass
class _Entry:
    frame: pd.DataFrame
    loaded: float
    prepared: dict[str, PreparedHistory]  # by model version


@dataclass(frozen=True)
class _Failure:
    kind: type[DataError]
    message: str
    until: float


class _Lru(Generic[V]):
    """A dict that forgets its least recently used keys beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class HistoryStore:
    """Per-ticker history with bounded memory, and a source that cannot take the service down.

    - Loaded histories and failed lookups live in LRUs of `history_max_tickers` entries each.
    - A failed lookup (unknown ticker, source down, bad data) is answered from memory for
      `source_failure_ttl_seconds` instead of asking the source again.
    - After `source_breaker_failures` consecutive outages the circuit opens: lookups of uncached
      tickers fail at once for `source_breaker_cooldown_seconds`, then the source is tried again.
    - Lookups run on a small pool of their own, so a slow source never delays the thread pool
      that client-history predictions use; concurrent requests for one ticker share one load.
    """

    def __init__(self, source: OHLCVSource, settings: ServiceSettings) -> None:
        self.source = source
        self.settings = settings
        self._entries: _Lru[_Entry] = _Lru(settings.history_max_tickers)
        self._failures: _Lru[_Failure] = _Lru(settings.history_max_tickers)
        # Band factors computed from client histories (a forward pass over ~250 windows each),
        # keyed by model version, ticker and a digest of the rows they read.
        self._calibrations: _Lru[tuple[Calibration | None]] = _Lru(settings.history_max_tickers)
        self._loading: dict[str, asyncio.Task[_Entry]] = {}
        self._pool = ThreadPoolExecutor(settings.source_threads, thread_name_prefix="source")
        self._outages = 0
        self._open_until = 0.0

    @property
    def tracked_tickers(self) -> int:
        """Tickers with any state held (for tests and metrics): bounded by 2 x history_max_tickers
        plus the loads in flight."""
        return len(self._entries) + len(self._failures) + len(self._loading)

    @property
    def calibrations_held(self) -> int:
        return len(self._calibrations)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def calibration(
        self, key: str, compute: Callable[[], Calibration | None]
    ) -> Calibration | None:
        """`compute()` in a thread, remembered under `key`: the same rows sent again (by any
        client) cost a dictionary lookup."""
        cached = self._calibrations.get(key)
        if cached is not None:
            return cached[0]
        found = await asyncio.to_thread(compute)
        self._calibrations.put(key, (found,))
        return found

    async def _entry(self, ticker: str) -> _Entry:
        now = _clock()
        entry = self._entries.get(ticker)
        if entry is not None and now - entry.loaded < self.settings.history_ttl_seconds:
            return entry
        failure = self._failures.get(ticker)
        if failure is not None and now < failure.until:
            raise failure.kind(failure.message)  # a fresh error: no traceback piles up
        task = self._loading.get(ticker)
        if task is None:
            self._check_breaker(now)
            task = asyncio.get_running_loop().create_task(self._load(ticker))
            self._loading[ticker] = task
            task.add_done_callback(lambda _: self._loading.pop(ticker, None))
        # Shielded: a request that gives up (a batch past its deadline) must not cancel the
        # load that other requests for the ticker are waiting on.
        return await asyncio.shield(task)

    def _check_breaker(self, now: float) -> None:
        if now < self._open_until:
            raise SourceUnavailableError(
                f"{self.source.name}: data source unavailable after {self._outages} "
                f"consecutive failures; not asking it again for "
                f"{self._open_until - now:.0f} s (send the history in the request instead)"
            )

    async def _load(self, ticker: str) -> _Entry:
        loop = asyncio.get_running_loop()
        try:
            frame = await loop.run_in_executor(self._pool, self.source.load, ticker)
        except DataError as exc:
            until = _clock() + self.settings.source_failure_ttl_seconds
            self._failures.put(ticker, _Failure(type(exc), str(exc), until))
            if isinstance(exc, SourceUnavailableError):
                self._outages += 1
                if self._outages >= self.settings.source_breaker_failures:
                    self._open_until = _clock() + self.settings.source_breaker_cooldown_seconds
                    logger.warning("%s: %d consecutive failures; circuit open for %.0f s",
                                   self.source.name, self._outages,
                                   self.settings.source_breaker_cooldown_seconds)  # fmt: skip
            raise
        self._outages = 0
        self._failures.pop(ticker)
        entry = _Entry(frame=frame, loaded=_clock(), prepared={})
        self._entries.put(ticker, entry)
        logger.info("history for %s loaded: %d rows up to %s", ticker, len(frame),
                    frame.index[-1].date())  # fmt: skip
        return entry

    async def prepared(self, ticker: str, version: str, forecaster: Forecaster) -> PreparedHistory:
        entry = await self._entry(ticker)
        ready = entry.prepared.get(version)
        if ready is None:
            # Once per ticker and version, off the event loop: a baseline may fit GARCH on the
            # whole history (tens of milliseconds for a ticker outside the universe).
            ready = await asyncio.to_thread(prepare, forecaster, entry.frame, ticker)
            entry.prepared = {version: ready}  # older versions' inputs are no longer needed
        return ready
