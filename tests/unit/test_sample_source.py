from __future__ import annotations

import pandas as pd
import pytest

from forecaster.config import DataConfig
from forecaster.data.sources import SampleSource, load_frames
from forecaster.errors import DataValidationError, TickerNotFoundError


def test_bundled_sample_is_the_real_sp500_series(sample_frame: pd.DataFrame) -> None:
    assert len(sample_frame) == 5031
    assert str(sample_frame.index[0].date()) == "1999-01-04"
    assert str(sample_frame.index[-1].date()) == "2018-12-31"
    assert sample_frame.loc["2018-12-31", "close"] == pytest.approx(2506.850098)
    assert sample_frame.attrs["ticker"] == "^GSPC"


def test_sample_refuses_other_tickers_with_a_hint() -> None:
    with pytest.raises(TickerNotFoundError, match=r"only \^GSPC, \^IXIC, .*FB, not 'TSLA'.*--csv"):
        SampleSource().load("TSLA")


@pytest.mark.parametrize(
    ("ticker", "rows", "first", "last", "close"),
    [
        ("^IXIC", 5031, "1999-01-04", "2018-12-31", 6635.279785),
        ("AAPL", 3270, "2000-03-01", "2013-03-01", 56.1374),
        ("GOOG", 2148, "2004-08-19", "2013-03-01", 404.3432),
        ("IBM", 3270, "2000-03-01", "2013-03-01", 175.2712),
        ("MSFT", 3270, "2000-03-01", "2013-03-01", 24.6843),
        ("FB", 196, "2012-05-18", "2013-03-01", 27.78),
    ],
)
def test_offline_universe_is_real_data_from_installed_packages(
    ticker: str, rows: int, first: str, last: str, close: float
) -> None:
    frame = SampleSource().load(ticker)
    assert (len(frame), str(frame.index[0].date()), str(frame.index[-1].date())) == (
        rows,
        first,
        last,
    )
    assert frame["close"].iloc[-1] == pytest.approx(close, rel=1e-4)
    assert frame.attrs["adjustment"] == "adjusted"
    assert frame.attrs["ticker"] == ticker


def test_adjustment_removes_split_jumps() -> None:
    """AAPL split 2:1 on 2005-02-28: raw closes halve overnight, adjusted ones do not."""
    raw = SampleSource(auto_adjust=False).load("AAPL")
    adjusted = SampleSource().load("AAPL")
    day = pd.Timestamp("2005-02-28")
    before = raw.index[raw.index.get_loc(day) - 1]
    assert raw.loc[day, "close"] / raw.loc[before, "close"] < 0.55
    assert 0.95 < adjusted.loc[day, "close"] / adjusted.loc[before, "close"] < 1.05
    assert raw.attrs["adjustment"] == "raw"


def test_load_frames_clips_dates() -> None:
    frames = load_frames(DataConfig(start="2010-01-01", end="2010-12-31"))
    frame = frames["^GSPC"]
    assert str(frame.index[0].date()) == "2010-01-04"
    assert str(frame.index[-1].date()) == "2010-12-31"
    assert frame.attrs["source"] == "sample"
    with pytest.raises(DataValidationError, match="no rows between 2030-01-01"):
        load_frames(DataConfig(start="2030-01-01"))


def test_a_date_range_leaves_out_tickers_with_no_rows_in_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = DataConfig(tickers=("^GSPC", "AAPL", "GOOG"), start="2015-01-01")
    frames = load_frames(config)
    assert list(frames) == ["^GSPC"]
    assert "AAPL): no rows between 2015-01-01" in caplog.text
    assert "left out" in caplog.text
    with pytest.raises(DataValidationError, match=r"\(AAPL\): no rows between 2015-01-01"):
        load_frames(DataConfig(tickers=("AAPL", "GOOG"), start="2015-01-01"))
