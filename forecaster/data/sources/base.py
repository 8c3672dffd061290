"""The small protocol every source implements, and the Yahoo-style CSV parser they share."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import pandas as pd

from forecaster.data.schemas import (
    ADJ_CLOSE,
    ADJUSTED,
    AS_GIVEN,
    CLOSE,
    DATE,
    PRICE_COLUMNS,
    RAW,
    FrameMeta,
    validate_ohlcv,
    with_meta,
)
from forecaster.errors import DataError, DataValidationError, first_line

logger = logging.getLogger(__name__)

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"


class OHLCVSource(Protocol):
    """Anything that returns a validated OHLCV frame (see forecaster.data.schemas) for a ticker."""

    name: str

    def load(self, ticker: str) -> pd.DataFrame: ...


def _parse_dates(
    text: pd.Series, *, origin: str, line_numbers: np.ndarray, date_format: str | None
) -> pd.Series:
    text = text.astype("string").str.strip()
    if date_format:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        expected = date_format
    elif text[text.fillna("") != ""].str.match(_ISO_DATE).all():
        # Keep the calendar date and drop any time or UTC offset (yfinance exports carry both).
        parsed = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
        expected = "YYYY-MM-DD"
    else:
        parsed = pd.to_datetime(text, format="%m/%d/%Y", errors="coerce")
        expected = "YYYY-MM-DD or MM/DD/YYYY"
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = text.iloc[pos]
        shown = "an empty value" if pd.isna(value) or value == "" else repr(str(value))
        raise DataValidationError(
            f"{origin}: line {line_numbers[pos]}: unparseable date {shown} "
            f"(expected {expected}; set data.date_format for other layouts)"
        )
    return parsed


def read_yahoo_csv(
    source: Path | IO[bytes],
    *,
    ticker: str,
    source_name: str,
    origin: str,
    auto_adjust: bool,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Read a Yahoo-style daily CSV (Date, Open, High, Low, Close[, Adj Close], Volume).

    Column names are case-insensitive. With `auto_adjust` and an Adj Close column, OHLC are scaled
    by Adj Close / Close (what yfinance's auto_adjust does), so splits and dividends do not look
    like price jumps.
    """
    try:
        raw = pd.read_csv(
            source, dtype=str, skip_blank_lines=False, compression="infer", encoding="utf-8-sig"
        )
    except FileNotFoundError as exc:
        raise DataError(f"{origin}: file not found") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{origin}: is a directory, not a CSV file") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{origin}: not a readable CSV file ({first_line(exc)})") from exc

    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    # Line numbers as a text editor shows them: the header is line 1.
    line_numbers = np.arange(len(raw)) + 2
    blank = raw.isna().all(axis=1).to_numpy()
    raw, line_numbers = raw.loc[~blank].reset_index(drop=True), line_numbers[~blank]
    if DATE not in raw.columns:
        found = ", ".join(raw.columns) or "none"
        raise DataValidationError(f"{origin}: missing required column 'date' (found: {found})")
    if len(raw) == 0:
        raise DataValidationError(f"{origin}: no data rows")
    raw[DATE] = _parse_dates(
        raw[DATE], origin=origin, line_numbers=line_numbers, date_format=date_format
    )
    frame = validate_ohlcv(raw, origin=origin, line_numbers=line_numbers)

    adjustment = AS_GIVEN
    if ADJ_CLOSE in raw.columns:
        adjustment = RAW
        if auto_adjust:
            adj = pd.to_numeric(raw[ADJ_CLOSE], errors="coerce").to_numpy(dtype="float64")
            bad = ~np.isfinite(adj) | (adj <= 0)
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise DataValidationError(
                    f"{origin}: line {line_numbers[pos]} ({raw[DATE].iloc[pos].date()}): "
                    f"adj close must be a positive number ({raw[ADJ_CLOSE].iloc[pos]!r}); "
                    "fix it or set data.auto_adjust=false"
                )
            factor = pd.Series(adj, index=pd.DatetimeIndex(raw[DATE])).reindex(frame.index)
            factor = factor / frame[CLOSE]
            for column in PRICE_COLUMNS:
                frame[column] = frame[column] * factor
            adjustment = ADJUSTED
    return with_meta(
        frame, FrameMeta(ticker=ticker, source=source_name, adjustment=adjustment, origin=origin)
    )
