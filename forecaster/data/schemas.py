"""The one OHLCV frame contract that every source returns and every consumer trusts.

A validated frame has a tz-naive, sorted, unique `DatetimeIndex` named `date` and float64 columns
`open, high, low, close, volume`. Metadata (ticker, source, adjustment, origin) lives in
`frame.attrs` under the `ATTR_*` keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecaster.errors import DataValidationError

logger = logging.getLogger(__name__)

DATE = "date"
OPEN = "open"
HIGH = "high"
LOW = "low"
CLOSE = "close"
ADJ_CLOSE = "adj close"
VOLUME = "volume"
PRICE_COLUMNS: tuple[str, ...] = (OPEN, HIGH, LOW, CLOSE)
OHLCV_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, VOLUME)

ATTR_TICKER = "ticker"
ATTR_SOURCE = "source"
ATTR_ADJUSTMENT = "adjustment"
ATTR_ORIGIN = "origin"

# Adjustment modes recorded in frame.attrs[ATTR_ADJUSTMENT].
ADJUSTED = "adjusted"  # OHLC scaled for splits and dividends (yfinance auto_adjust or Adj Close)
RAW = "raw"  # prices as traded, no corporate-action adjustment
AS_GIVEN = "as_given"  # a CSV without Adj Close: whatever the file holds

# What a ticker symbol may look like (^GSPC, AAPL, BRK-B, EURUSD=X): checked before a source or
# the API uses one, so an empty or odd string never reaches yfinance or a file name.
TICKER_PATTERN = r"^[A-Za-z0-9^.=_\-]{1,20}$"

# Open and close must lie within [low, high] up to this relative slack, so that float rounding in
# adjusted prices is not refused while a real inconsistency (a typo, a shifted column) is.
RANGE_SLACK = 1e-6


@dataclass(frozen=True)
class FrameMeta:
    """Typed view of the metadata a source attaches to its frame."""

    ticker: str
    source: str
    adjustment: str
    origin: str


def frame_meta(frame: pd.DataFrame) -> FrameMeta:
    attrs = frame.attrs
    return FrameMeta(
        ticker=str(attrs.get(ATTR_TICKER, "")),
        source=str(attrs.get(ATTR_SOURCE, "")),
        adjustment=str(attrs.get(ATTR_ADJUSTMENT, "")),
        origin=str(attrs.get(ATTR_ORIGIN, "")),
    )


def with_meta(frame: pd.DataFrame, meta: FrameMeta) -> pd.DataFrame:
    frame.attrs.update(
        {
            ATTR_TICKER: meta.ticker,
            ATTR_SOURCE: meta.source,
            ATTR_ADJUSTMENT: meta.adjustment,
            ATTR_ORIGIN: meta.origin,
        }
    )
    return frame


Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OHLCVArrays:
    """A validated history as equal-length float64 arrays, oldest first: what features read,
    so the API can build a model input without constructing a DataFrame."""

    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Floats

    @classmethod
    def of(cls, frame: pd.DataFrame) -> OHLCVArrays:
        def column(name: str) -> Floats:
            values: Floats = frame[name].to_numpy(dtype=np.float64)
            return values

        return cls(column(OPEN), column(HIGH), column(LOW), column(CLOSE), column(VOLUME))

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def tail(self, n: int) -> OHLCVArrays:
        return OHLCVArrays(
            self.open[-n:], self.high[-n:], self.low[-n:], self.close[-n:], self.volume[-n:]
        )

    def columns(self) -> dict[str, Floats]:
        return {OPEN: self.open, HIGH: self.high, LOW: self.low, CLOSE: self.close,
                VOLUME: self.volume}  # fmt: skip


def row_location(
    line_numbers: Sequence[int] | None, position: int, when: object | None, unit: str
) -> str:
    """Locate a row for an error message: 'line 7 (2020-01-09)', '2020-01-09' or 'row 3'."""
    day = None if when is None or pd.isna(when) else str(pd.Timestamp(when).date())
    if line_numbers is not None:
        line = f"{unit} {line_numbers[position]}"
        return f"{line} ({day})" if day else line
    return day or f"row {position}"


def validate_ohlcv(
    frame: pd.DataFrame,
    *,
    origin: str,
    line_numbers: Sequence[int] | None = None,
    unit: str = "line",
) -> pd.DataFrame:
    """Check a frame against the contract and return a clean float64 copy.

    `frame` holds OHLCV columns (case-insensitive names) and either a `date` column or a
    DatetimeIndex. `line_numbers[i]` is the source line of row i, so errors point at the file.
    Unsorted dates are repaired by sorting, with a warning; every other defect is refused with a
    `DataValidationError` naming `origin`, the line or date, and what is wrong. `unit` names
    what `line_numbers` count ("line" in a file, "row" in a request body).
    """
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    if DATE in frame.columns:
        dates = frame[DATE]
        if not pd.api.types.is_datetime64_any_dtype(dates):
            raise DataValidationError(f"{origin}: column 'date' must hold parsed dates")
        index = pd.DatetimeIndex(dates)
    elif isinstance(frame.index, pd.DatetimeIndex):
        index = frame.index
    else:
        raise DataValidationError(f"{origin}: missing required column 'date'")

    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(str(c) for c in frame.columns) or "none"
        raise DataValidationError(
            f"{origin}: missing required column(s) {', '.join(missing)} (found: {found})"
        )
    if len(frame) == 0:
        raise DataValidationError(f"{origin}: no rows")

    if index.tz is not None:
        index = index.tz_localize(None)
    if index.hasnans:
        pos = int(np.flatnonzero(index.isna())[0])
        raise DataValidationError(
            f"{origin}: {row_location(line_numbers, pos, None, unit)}: missing date"
        )
    index = index.normalize()

    values = {}
    for column in OHLCV_COLUMNS:
        raw = frame[column].reset_index(drop=True)
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() & raw.notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"{origin}: {row_location(line_numbers, pos, index[pos], unit)}: "
                f"{column} is not a number ({raw.iloc[pos]!r})"
            )
        values[column] = numeric.to_numpy(dtype="float64", na_value=np.nan)
    check_ohlcv_values(
        values, origin, lambda pos: row_location(line_numbers, pos, index[pos], unit)
    )

    clean = pd.DataFrame(values, index=pd.DatetimeIndex(index, name=DATE))
    if clean.index.has_duplicates:
        dup = clean.index[clean.index.duplicated()][0]
        raise DataValidationError(f"{origin}: duplicate date {dup.date()}")
    if not clean.index.is_monotonic_increasing:
        logger.warning("%s: dates were not in ascending order; sorted them", origin)
        clean = clean.sort_index(kind="stable")
    return clean


def check_ohlcv_values(
    values: Mapping[str, np.ndarray], origin: str, locate: Callable[[int], str]
) -> None:
    """The row rules every history obeys, wherever it comes from (file, frame, request body):
    finite, positive prices, open and close within [low, high], volume not negative.

    Raises DataValidationError naming `origin`, the first bad row (`locate(position)`), what
    is wrong, and how many more rows are like it.
    """
    for column in OHLCV_COLUMNS:
        array = values[column]
        finite = np.isfinite(array)
        if not finite.all():
            pos = int(np.flatnonzero(~finite)[0])
            what = "missing (NaN)" if np.isnan(array[pos]) else "infinite"
            raise DataValidationError(f"{origin}: {locate(pos)}: {column} is {what}")

    def refuse(mask: np.ndarray, message: str) -> None:
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            count = int(mask.sum())
            more = f" ({count - 1} more row(s) like it)" if count > 1 else ""
            raise DataValidationError(f"{origin}: {locate(pos)}: {message}{more}")

    for column in PRICE_COLUMNS:
        refuse(values[column] <= 0, f"{column} must be positive")
    high, low = values[HIGH], values[LOW]
    refuse(high < low, "high is below low")
    top, bottom = high * (1 + RANGE_SLACK), low * (1 - RANGE_SLACK)
    for column in (OPEN, CLOSE):
        col = values[column]
        refuse((col > top) | (col < bottom), f"{column} is outside [low, high]")
    refuse(values[VOLUME] < 0, "volume is negative")
