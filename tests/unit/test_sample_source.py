from __future__ import annotations

import pandas as pd
import pytest

from forecaster.config import DataConfig
from forecaster.errors import DataValidationError, TickerNotFoundError
from forecaster.sources import SampleSource, load_frames


def test_bundled_sample_is_the_real_sp500_series(sample_frame: pd.DataFrame) -> None:
    assert len(sample_frame) == 5031
    assert str(sample_frame.index[0].date()) == "1999-01-04"
    assert str(sample_frame.index[-1].date()) == "2018-12-31"
    assert sample_frame.loc["2018-12-31", "close"] == pytest.approx(2506.850098)
    assert sample_frame.attrs["ticker"] == "^GSPC"


def test_sample_refuses_other_tickers_with_a_hint() -> None:
    with pytest.raises(TickerNotFoundError, match=r"only \^GSPC, not 'AAPL'.*--csv FILE"):
        SampleSource().load("AAPL")


def test_load_frames_clips_dates() -> None:
    frames = load_frames(DataConfig(start="2010-01-01", end="2010-12-31"))
    frame = frames["^GSPC"]
    assert str(frame.index[0].date()) == "2010-01-04"
    assert str(frame.index[-1].date()) == "2010-12-31"
    assert frame.attrs["source"] == "sample"
    with pytest.raises(DataValidationError, match="no rows between 2030-01-01"):
        load_frames(DataConfig(start="2030-01-01"))
