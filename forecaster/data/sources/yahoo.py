"""Live daily OHLCV from Yahoo Finance through yfinance, with retries and an incremental cache.

The cache is the fallback when Yahoo cannot be reached: the user gets a warning that says how old
the data is instead of an error, as long as some history was downloaded before.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import yfinance as yf
from yfinance.exceptions import YFException, YFRateLimitError, YFTickerMissingError

from forecaster.config import YahooConfig
from forecaster.data.schemas import (
    ADJUSTED,
    CLOSE,
    OHLCV_COLUMNS,
    RAW,
    TICKER_PATTERN,
    FrameMeta,
    validate_ohlcv,
    with_meta,
)
from forecaster.data.sources.cache import CachedSeries, ParquetCache
from forecaster.errors import (
    DataValidationError,
    SourceUnavailableError,
    TickerNotFoundError,
    first_line,
)

logger = logging.getLogger(__name__)

# How far back an incremental refresh re-downloads, so the overlap can reveal a re-adjustment
# (a new dividend or split rescales all adjusted history) and a partial last bar gets replaced.
OVERLAP_DAYS = 10
# Relative change of an overlapping close that means the history was re-adjusted.
READJUST_TOLERANCE = 1e-5

Downloader = Callable[[str, date | None, bool, float], pd.DataFrame]


def yfinance_history(
    ticker: str, start: date | None, auto_adjust: bool, timeout: float
) -> pd.DataFrame:
    """One real call to Yahoo through yfinance; tests replace `yf.Ticker.history` only."""
    # Without this, yfinance logs errors and returns an empty frame we could not tell apart
    # from an unknown ticker.
    yf.config.debug.hide_exceptions = False
    kwargs: dict[str, object] = {"start": start} if start is not None else {"period": "max"}
    return yf.Ticker(ticker).history(
        interval="1d", auto_adjust=auto_adjust, actions=False, timeout=timeout, **kwargs
    )


def _describe_age(cached: CachedSeries, now: datetime) -> str:
    hours = (now - cached.fetched_at).total_seconds() / 3600
    age = f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"
    return f"last date {cached.last_date.date()}, downloaded {age} ago"


class YahooSource:
    name = "yahoo"

    def __init__(
        self,
        cache_dir: Path,
        config: YahooConfig | None = None,
        *,
        auto_adjust: bool = True,
        downloader: Downloader = yfinance_history,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cache = ParquetCache(cache_dir)
        self.config = config or YahooConfig()
        self.auto_adjust = auto_adjust
        self._download_fn = downloader
        self._sleep = sleep or time.sleep
        self._clock = clock

    def load(self, ticker: str) -> pd.DataFrame:
        if not re.fullmatch(TICKER_PATTERN, ticker):
            raise DataValidationError(
                f"yahoo: {ticker!r} is not a ticker symbol (1-20 letters, digits or ^.=_-)"
            )
        cached = self.cache.read(ticker, adjusted=self.auto_adjust)
        now = self._clock()
        if cached is not None:
            if now - cached.fetched_at < timedelta(hours=self.config.cache_ttl_hours):
                logger.info("yahoo: %s from cache (%s)", ticker, _describe_age(cached, now))
                return self._tag(cached.frame, ticker)
            start = (cached.last_date - pd.Timedelta(days=OVERLAP_DAYS)).date()
        else:
            start = None
        try:
            fresh = self._download(ticker, start)
            merged = fresh if cached is None else self._merge(ticker, cached.frame, fresh)
        except (SourceUnavailableError, TickerNotFoundError) as exc:
            if cached is None:
                raise
            logger.warning(
                "yahoo: %s; using cached %s data (%s)", exc, ticker, _describe_age(cached, now)
            )
            return self._tag(cached.frame, ticker)
        self.cache.write(ticker, merged, adjusted=self.auto_adjust)
        return self._tag(merged, ticker)

    def _merge(self, ticker: str, old: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
        overlap = old.index.intersection(fresh.index)
        if len(overlap) == 0:
            logger.info("yahoo: %s cache does not meet the new data; downloading it all", ticker)
            return self._download(ticker, None)
        first = overlap[0]
        drift = abs(fresh.at[first, CLOSE] / old.at[first, CLOSE] - 1.0)
        if drift > READJUST_TOLERANCE:
            logger.info(
                "yahoo: %s history was re-adjusted (close on %s moved %.4f%%); downloading it all",
                ticker,
                first.date(),
                100 * drift,
            )
            return self._download(ticker, None)
        kept = old.loc[old.index < fresh.index[0]]
        added = len(fresh.index.difference(old.index))
        logger.info("yahoo: %s refreshed incrementally, %d new day(s)", ticker, added)
        return pd.concat([kept, fresh])

    def _download(self, ticker: str, start: date | None) -> pd.DataFrame:
        attempts = self.config.retries
        last_error: Exception | None = None
        for attempt in range(attempts):
            try:
                raw = self._download_fn(
                    ticker, start, self.auto_adjust, self.config.timeout_seconds
                )
                break
            except YFTickerMissingError as exc:
                raise TickerNotFoundError(
                    f"yahoo: unknown or delisted ticker '{ticker}' ({exc})"
                ) from exc
            except (YFRateLimitError, YFException, OSError, TimeoutError) as exc:
                last_error = exc
                if attempt + 1 < attempts:
                    delay = self.config.backoff_seconds * 2**attempt
                    logger.info(
                        "yahoo: %s download failed (%s); retry %d/%d in %.1fs",
                        ticker,
                        type(exc).__name__,
                        attempt + 1,
                        attempts - 1,
                        delay,
                    )
                    self._sleep(delay)
        else:
            reason = first_line(last_error) if last_error else "no answer"
            raise SourceUnavailableError(
                f"could not download '{ticker}' from Yahoo Finance after {attempts} attempt(s): "
                f"{reason}"
            ) from last_error

        if raw is None or raw.empty or raw.get("Close", pd.Series(dtype=float)).isna().all():
            raise TickerNotFoundError(
                f"yahoo: no data returned for ticker '{ticker}' (unknown or delisted ticker?)"
            )
        columns = {str(c).lower(): c for c in raw.columns}
        missing = [c for c in OHLCV_COLUMNS if c not in columns]
        if missing:
            raise DataValidationError(
                f"yahoo:{ticker}: response lacks column(s) {', '.join(missing)}"
            )
        frame = raw[[columns[c] for c in OHLCV_COLUMNS]].copy()
        frame.columns = list(OHLCV_COLUMNS)
        # yfinance leaves rows with no trades as NaN when keepna is on; never treat them as data.
        frame = frame.dropna(how="all")
        return validate_ohlcv(frame, origin=f"yahoo:{ticker}")

    def _tag(self, frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
        frame = frame.copy()
        cache_file = self.cache.path(ticker, adjusted=self.auto_adjust)
        return with_meta(
            frame,
            FrameMeta(
                ticker=ticker,
                source=self.name,
                adjustment=ADJUSTED if self.auto_adjust else RAW,
                origin=f"yahoo:{ticker} (cache {cache_file})",
            ),
        )
