"""Recent daily history per ticker, kept in memory with a TTL.

A prediction for a cached ticker reads neither disk nor network: the validated frame, and the
model input prepared from it, stay in memory until the TTL runs out or the model changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.inference import Forecaster
from forecaster.schemas import CLOSE
from forecaster.sources.base import OHLCVSource
from forecaster.sources.sample import SampleSource
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedHistory:
    """One model's forecast for the day after `as_of` of a history.

    The network is deterministic, so for server-side history the quantiles are computed once
    per (ticker, model version, history) and every later request reuses them.
    """

    as_of: pd.Timestamp
    last_close: float
    quantiles: np.ndarray  # (n_quantiles,) log returns


def prepare(forecaster: Forecaster, frame: pd.DataFrame) -> PreparedHistory:
    return PreparedHistory(
        as_of=frame.index[-1],
        last_close=float(frame[CLOSE].iloc[-1]),
        quantiles=forecaster.forecast_window(forecaster.prepare_window(frame)),
    )


def make_source(settings: ServiceSettings) -> OHLCVSource:
    if settings.data_source == "yahoo":
        from forecaster.sources.yahoo import YahooSource

        return YahooSource(settings.data_dir / "cache" / "yahoo", auto_adjust=settings.auto_adjust)
    return SampleSource(auto_adjust=settings.auto_adjust)


@dataclass
class _Entry:
    frame: pd.DataFrame
    loaded: float
    prepared: dict[str, PreparedHistory]  # by model version


class HistoryStore:
    def __init__(self, source: OHLCVSource, ttl_seconds: float) -> None:
        self.source = source
        self.ttl = ttl_seconds
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _entry(self, ticker: str) -> _Entry:
        entry = self._entries.get(ticker)
        if entry is not None and time.monotonic() - entry.loaded < self.ttl:
            return entry
        lock = self._locks.setdefault(ticker, asyncio.Lock())
        async with lock:  # one load per ticker, however many requests wait for it
            entry = self._entries.get(ticker)
            if entry is not None and time.monotonic() - entry.loaded < self.ttl:
                return entry
            frame = await asyncio.to_thread(self.source.load, ticker)
            entry = _Entry(frame=frame, loaded=time.monotonic(), prepared={})
            self._entries[ticker] = entry
            logger.info("history for %s loaded: %d rows up to %s", ticker, len(frame),
                        frame.index[-1].date())  # fmt: skip
            return entry

    async def prepared(self, ticker: str, version: str, forecaster: Forecaster) -> PreparedHistory:
        entry = await self._entry(ticker)
        ready = entry.prepared.get(version)
        if ready is None:
            ready = prepare(forecaster, entry.frame)
            entry.prepared = {version: ready}  # older versions' inputs are no longer needed
        return ready
