"""Market data sources behind one protocol: bundled sample, CSV files and Yahoo Finance."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from forecaster.config import DataConfig
from forecaster.data.schemas import frame_meta, with_meta
from forecaster.data.sources.base import OHLCVSource, read_yahoo_csv
from forecaster.data.sources.csv_file import CsvSource
from forecaster.data.sources.sample import SAMPLE_TICKER, SampleSource
from forecaster.errors import DataValidationError
from forecaster.local_state import yahoo_cache

logger = logging.getLogger(__name__)

__all__ = [
    "SAMPLE_TICKER",
    "CsvSource",
    "OHLCVSource",
    "SampleSource",
    "csv_tickers",
    "load_frames",
    "make_source",
    "read_yahoo_csv",
    "resolved_tickers",
]


def csv_tickers(config: DataConfig) -> dict[str, Path]:
    """Pair CSV files with tickers: the given tickers (one per file), else the file stems."""
    files = config.csv_files
    if "tickers" in config.model_fields_set:
        if len(config.tickers) != len(files):
            raise DataValidationError(
                f"data: {len(config.tickers)} ticker(s) for {len(files)} CSV file(s); "
                "give one ticker per file or none (the file names are used)"
            )
        return dict(zip(config.tickers, files, strict=True))
    return {Path(f).name.split(".")[0]: Path(f) for f in files}


def resolved_tickers(config: DataConfig) -> tuple[str, ...]:
    return tuple(csv_tickers(config)) if config.source == "csv" else config.tickers


def make_source(config: DataConfig) -> OHLCVSource:
    if config.source == "sample":
        return SampleSource(auto_adjust=config.auto_adjust)
    if config.source == "csv":
        return CsvSource(
            csv_tickers(config), auto_adjust=config.auto_adjust, date_format=config.date_format
        )
    # Imported here so that users of the offline sources never pay for importing yfinance.
    from forecaster.data.sources.yahoo import YahooSource

    return YahooSource(yahoo_cache(config.data_dir), config.yahoo, auto_adjust=config.auto_adjust)


class _OutsideRangeError(DataValidationError):
    """A ticker with no rows inside the configured date range."""


def clip_dates(frame: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    meta = frame_meta(frame)
    clipped = frame
    if config.start is not None:
        clipped = clipped.loc[clipped.index >= pd.Timestamp(config.start)]
    if config.end is not None:
        clipped = clipped.loc[clipped.index <= pd.Timestamp(config.end)]
    if clipped.empty:
        raise _OutsideRangeError(
            f"{meta.origin}: no rows between {config.start or 'the start'} and "
            f"{config.end or 'the end'} (data covers {frame.index[0].date()} to "
            f"{frame.index[-1].date()})"
        )
    return with_meta(clipped.copy(), meta)


def load_frames(config: DataConfig, source: OHLCVSource | None = None) -> dict[str, pd.DataFrame]:
    """Load and validate every configured ticker; all succeed or the first failure is raised.

    A universe's tickers cover different dates: one with no rows inside data.start..data.end is
    left out with a warning, and only a range that leaves no ticker at all is an error.
    """
    source = source or make_source(config)
    frames = {}
    outside: list[DataValidationError] = []
    for ticker in resolved_tickers(config):
        try:
            frame = clip_dates(source.load(ticker), config)
        except _OutsideRangeError as exc:
            outside.append(exc)
            continue
        logger.info(
            "loaded %s from %s: %d rows, %s to %s",
            ticker,
            source.name,
            len(frame),
            frame.index[0].date(),
            frame.index[-1].date(),
        )
        frames[ticker] = frame
    if not frames:
        raise outside[0]
    for skipped in outside:
        logger.warning("%s; left out", skipped)
    return frames
