"""Checks on a client's history across rows and fields, on arrays: the CSV/frame validation's
rules and messages (`forecaster.schemas.check_ohlcv_values`), plus the request's own: dates
strictly increasing (a client's history is never re-sorted), none before 1900 or in the future.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from forecaster.errors import DataValidationError
from forecaster.schemas import check_ohlcv_values, row_location
from service.requests import RequestHistory

# Client dates outside this range are refused: nothing traded before it, and a history cannot
# end after tomorrow (one day of slack for clients ahead of the server's time zone).
EARLIEST_DAY = np.datetime64("1900-01-01", "D")
FUTURE_SLACK_DAYS = 1


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
    rows = range(len(history))
    check_ohlcv_values(
        history.prices.columns(), origin, lambda i: row_location(rows, i, days[i], "row")
    )
