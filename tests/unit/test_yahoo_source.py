"""The real yfinance code path, with recorded responses injected in place of the network call.

`yf.Ticker.history` is the only thing replaced: our source builds real `yf.Ticker` objects and
calls `history` with the arguments it would send to Yahoo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yfinance as yf
from curl_cffi.requests.exceptions import DNSError
from yfinance.exceptions import YFRateLimitError, YFTzMissingError

from forecaster.config import YahooConfig
from forecaster.data.schemas import ADJUSTED, RAW, frame_meta
from forecaster.data.sources.yahoo import YahooSource
from forecaster.errors import SourceUnavailableError, TickerNotFoundError


def yfinance_shaped(frame: pd.DataFrame, *, auto_adjust: bool) -> pd.DataFrame:
    """What `Ticker.history(interval='1d', actions=False)` returns: tz-aware 'Date' index,
    capitalised columns, int64 volume, and 'Adj Close' only when auto_adjust is off."""
    index = pd.DatetimeIndex(frame.index).tz_localize("America/New_York")
    out = pd.DataFrame(
        {
            "Open": frame["open"].to_numpy(),
            "High": frame["high"].to_numpy(),
            "Low": frame["low"].to_numpy(),
            "Close": frame["close"].to_numpy(),
        },
        index=pd.DatetimeIndex(index, name="Date"),
    )
    if not auto_adjust:
        out["Adj Close"] = frame["close"].to_numpy() * 0.98
    out["Volume"] = frame["volume"].to_numpy().astype("int64")
    return out


@dataclass
class RecordedYahoo:
    """Plays back a recorded daily history as of `today`, and logs every request."""

    history: pd.DataFrame
    today: pd.Timestamp
    failures: list[Exception] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    empty: bool = False

    def __call__(self, ticker: yf.Ticker, **kwargs: Any) -> pd.DataFrame:
        self.calls.append({"ticker": ticker.ticker, **kwargs})
        if self.failures:
            raise self.failures.pop(0)
        if self.empty:
            return pd.DataFrame(columns=["Open", "High", "Low", "Close", "Volume"])
        frame = self.history.loc[self.history.index <= self.today]
        if kwargs.get("start") is not None:
            frame = frame.loc[frame.index >= pd.Timestamp(kwargs["start"])]
        else:
            assert kwargs.get("period") == "max"
        return yfinance_shaped(frame, auto_adjust=kwargs["auto_adjust"])


@pytest.fixture
def recorded(sample_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> RecordedYahoo:
    history = sample_frame.loc["2018-01-01":]
    player = RecordedYahoo(history=history, today=pd.Timestamp("2018-06-29"))
    monkeypatch.setattr(yf.Ticker, "history", lambda self, **kw: player(self, **kw))
    return player


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2018, 7, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_source(tmp_path: Path, clock: Clock, sleeps: list[float], **kwargs: Any) -> YahooSource:
    return YahooSource(
        tmp_path / "cache",
        YahooConfig(retries=3, backoff_seconds=0.5, cache_ttl_hours=12),
        sleep=sleeps.append,
        clock=clock,
        **kwargs,
    )


def set_mtime(path: Path, when: datetime) -> None:
    stamp = when.timestamp()
    import os

    os.utime(path, (stamp, stamp))


def test_first_load_downloads_full_history_and_caches_it(
    recorded: RecordedYahoo, tmp_path: Path
) -> None:
    source = make_source(tmp_path, Clock(), [])
    frame = source.load("^GSPC")
    assert recorded.calls[0]["ticker"] == "^GSPC"
    assert recorded.calls[0]["period"] == "max"
    assert recorded.calls[0]["interval"] == "1d"
    assert recorded.calls[0]["auto_adjust"] is True
    assert frame.index.tz is None
    assert str(frame.index[-1].date()) == "2018-06-29"
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame_meta(frame).adjustment == ADJUSTED
    assert source.cache.path("^GSPC", adjusted=True).exists()


def test_fresh_cache_is_used_without_asking_yahoo(recorded: RecordedYahoo, tmp_path: Path) -> None:
    clock = Clock()
    source = make_source(tmp_path, clock, [])
    source.load("^GSPC")
    clock.now += timedelta(hours=1)
    recorded.today = pd.Timestamp("2018-07-31")
    frame = source.load("^GSPC")
    assert len(recorded.calls) == 1
    assert str(frame.index[-1].date()) == "2018-06-29"


def test_stale_cache_is_refreshed_incrementally(
    recorded: RecordedYahoo, tmp_path: Path, sample_frame: pd.DataFrame
) -> None:
    clock = Clock()
    source = make_source(tmp_path, clock, [])
    source.load("^GSPC")
    set_mtime(source.cache.path("^GSPC", adjusted=True), clock.now)
    clock.now += timedelta(days=31)
    recorded.today = pd.Timestamp("2018-07-31")
    frame = source.load("^GSPC")
    second = recorded.calls[1]
    assert "period" not in second
    # Only the tail (plus a short overlap to detect re-adjustment) is requested.
    assert date(2018, 6, 15) <= second["start"] <= date(2018, 6, 29)
    expected = sample_frame.loc["2018-01-01":"2018-07-31"]
    pd.testing.assert_frame_equal(frame, expected, check_freq=False, check_flags=False)
    assert len(recorded.calls) == 2


def test_readjusted_history_triggers_a_full_download(
    recorded: RecordedYahoo, tmp_path: Path
) -> None:
    clock = Clock()
    source = make_source(tmp_path, clock, [])
    source.load("^GSPC")
    clock.now += timedelta(days=31)
    set_mtime(source.cache.path("^GSPC", adjusted=True), clock.now - timedelta(days=31))
    recorded.today = pd.Timestamp("2018-07-31")
    # A dividend went ex: Yahoo now reports all adjusted history 1% lower.
    scaled = recorded.history.copy()
    for col in ("open", "high", "low", "close"):
        scaled[col] = scaled[col] * 0.99
    recorded.history = scaled
    frame = source.load("^GSPC")
    assert recorded.calls[-1].get("period") == "max"
    np.testing.assert_allclose(frame["close"].iloc[0], scaled["close"].iloc[0])


def test_empty_answer_is_an_error_naming_the_ticker(
    recorded: RecordedYahoo, tmp_path: Path
) -> None:
    recorded.empty = True
    with pytest.raises(TickerNotFoundError, match="'NOSUCH'"):
        make_source(tmp_path, Clock(), []).load("NOSUCH")
    assert (
        not any((tmp_path / "cache").glob("*.parquet")) if (tmp_path / "cache").exists() else True
    )


def test_yfinance_missing_ticker_error_becomes_ticker_not_found(
    recorded: RecordedYahoo, tmp_path: Path
) -> None:
    recorded.failures = [YFTzMissingError("ZZZZ")]
    with pytest.raises(TickerNotFoundError, match="unknown or delisted ticker 'ZZZZ'"):
        make_source(tmp_path, Clock(), []).load("ZZZZ")


def test_transient_errors_are_retried_with_exponential_backoff(
    recorded: RecordedYahoo, tmp_path: Path
) -> None:
    sleeps: list[float] = []
    recorded.failures = [YFRateLimitError(), DNSError("Could not resolve host")]
    frame = make_source(tmp_path, Clock(), sleeps).load("^GSPC")
    assert sleeps == [0.5, 1.0]
    assert len(frame) > 100


def test_network_down_without_cache_is_a_clear_error(
    recorded: RecordedYahoo, tmp_path: Path
) -> None:
    sleeps: list[float] = []
    recorded.failures = [DNSError("Could not resolve host: query2.finance.yahoo.com")] * 3
    with pytest.raises(SourceUnavailableError, match=r"'\^GSPC'.*after 3 attempt\(s\)"):
        make_source(tmp_path, Clock(), sleeps).load("^GSPC")
    assert sleeps == [0.5, 1.0]


def test_network_down_falls_back_to_cache_and_says_how_old(
    recorded: RecordedYahoo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    source = make_source(tmp_path, clock, [])
    first = source.load("^GSPC")
    set_mtime(source.cache.path("^GSPC", adjusted=True), clock.now)
    clock.now += timedelta(days=3)
    recorded.failures = [DNSError("Could not resolve host")] * 3
    with caplog.at_level(logging.WARNING):
        frame = source.load("^GSPC")
    pd.testing.assert_frame_equal(frame, first)
    assert "using cached ^GSPC data (last date 2018-06-29, downloaded 3.0 days ago)" in caplog.text


def test_raw_prices_when_auto_adjust_is_off(recorded: RecordedYahoo, tmp_path: Path) -> None:
    source = make_source(tmp_path, Clock(), [], auto_adjust=False)
    frame = source.load("^GSPC")
    assert recorded.calls[0]["auto_adjust"] is False
    assert frame_meta(frame).adjustment == RAW
    # Raw Close, not the (different) Adj Close column of the response.
    np.testing.assert_allclose(
        frame["close"].to_numpy(), recorded.history.loc[:"2018-06-29", "close"].to_numpy()
    )
    assert source.cache.path("^GSPC", adjusted=False).name == "%5EGSPC.raw.parquet"


def test_corrupt_cache_is_rebuilt(
    recorded: RecordedYahoo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(tmp_path, Clock(), [])
    path = source.cache.path("^GSPC", adjusted=True)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING):
        frame = source.load("^GSPC")
    assert "unreadable cache file" in caplog.text
    assert len(frame) > 100
    assert recorded.calls[0]["period"] == "max"
