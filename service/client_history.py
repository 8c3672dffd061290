"""Checks on a client's history across rows and fields, on arrays: the CSV/frame validation's
rules and messages (`forecaster.data.schemas.check_ohlcv_values`), plus the request's own: dates
strictly increasing (a client's history is never re-sorted), none before 1900 or in the future,
and spaced like daily trading data. What is legal but suspicious (a jump like an unadjusted
split) is not refused: `history_warnings` names it for the response.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from forecaster.data.schemas import check_ohlcv_values, row_location
from forecaster.errors import DataValidationError
from service.requests import RequestHistory

# Client dates outside this range are refused: nothing traded before it, and a history cannot
# end after tomorrow (one day of slack for clients ahead of the server's time zone).
EARLIEST_DAY = np.datetime64("1900-01-01", "D")
FUTURE_SLACK_DAYS = 1
# Daily trading data: consecutive rows a few calendar days apart (weekends and holidays give 1
# to 4; a median above this is weekly, monthly or yearly data) and most rows on weekdays (a
# Sunday-to-Thursday market has a fifth of them on Sundays).
MAX_MEDIAN_GAP_DAYS = 4
MAX_WEEKEND_SHARE = 0.5
# A close-to-close move beyond this (log units: x1.65 or x0.61 in a day) is more often an
# unadjusted split or a bad row than a market move; the forecast names it in `warnings`.
JUMP_LOG_RETURN = 0.5
# A history whose close did not move on more than this share of its days (a stale or
# forward-filled feed, an illiquid listing) gives a volatility estimate resting on the few days
# that did move; the forecast says so in `warnings`.
MAX_FLAT_SHARE = 0.5


def check_history(history: RequestHistory, origin: str) -> None:
    """Raise DataValidationError naming the first row that breaks a rule."""
    days = history.days
    latest = np.datetime64(date.today() + timedelta(days=FUTURE_SLACK_DAYS), "D")
    for mask, problem in ((days < EARLIEST_DAY, f"is before {EARLIEST_DAY}"),
                          (days > latest, "is in the future")):  # fmt: skip
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataValidationError(f"{origin}: row {i}: date {days[i]} {problem}")
    steps = np.diff(days).astype("int64")
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        problem = "duplicates" if steps[i - 1] == 0 else "is before"
        raise DataValidationError(
            f"{origin}: history dates must be strictly increasing: row {i} ({days[i]}) "
            f"{problem} row {i - 1} ({days[i - 1]})"
        )
    gap = float(np.median(steps)) if len(steps) else 1.0
    if gap > MAX_MEDIAN_GAP_DAYS:
        raise DataValidationError(
            f"{origin}: not daily data: its rows are a median {gap:g} days apart (daily trading "
            f"data is at most {MAX_MEDIAN_GAP_DAYS}); send one row per trading day"
        )
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday: Monday is 0
    weekend = float(np.mean(weekday >= 5))
    if weekend > MAX_WEEKEND_SHARE:
        raise DataValidationError(
            f"{origin}: not daily trading data: {weekend:.0%} of its rows fall on a Saturday or "
            "Sunday"
        )
    rows = range(len(history))
    check_ohlcv_values(
        history.prices.columns(), origin, lambda i: row_location(rows, i, days[i], "row")
    )


def history_warnings(history: RequestHistory) -> list[str]:
    """What a valid history holds that a forecaster should be told about: the largest
    close-to-close jump beyond JUMP_LOG_RETURN (an unadjusted split looks like this), and a
    close that did not move on most days."""
    close = history.prices.close
    if len(close) < 2:
        return []
    moves = np.abs(np.diff(np.log(close)))
    warnings = []
    i = int(np.argmax(moves))
    if moves[i] > JUMP_LOG_RETURN:
        n = int(np.sum(moves > JUMP_LOG_RETURN))
        ratio = close[i + 1] / close[i]
        more = f" (and {n - 1} more)" if n > 1 else ""
        warnings.append(
            f"close moved x{ratio:.3g} from {history.days[i]} to {history.days[i + 1]} "
            f"(row {i + 1}){more}: if that is an unadjusted split or dividend, send adjusted "
            "prices; the forecast reads it as a market move"
        )
    flat = moves == 0
    if flat.mean() > MAX_FLAT_SHARE:
        moved = np.flatnonzero(~flat)
        last = (f"; the last move is from {history.days[moved[-1]]} to "
                f"{history.days[moved[-1] + 1]}" if len(moved) else "")  # fmt: skip
        warnings.append(
            f"close did not move on {int(flat.sum())} of {len(flat)} days{last}: the "
            "volatility rests on the few days that moved; a stale or forward-filled feed "
            "looks like this"
        )
    return warnings
