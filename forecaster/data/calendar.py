"""Next trading day by the exchange calendar (NYSE: weekends and market holidays skipped)."""

from __future__ import annotations

import logging
from datetime import date

import exchange_calendars as xcals
import pandas as pd

logger = logging.getLogger(__name__)


class TradingCalendar:
    def __init__(self, code: str = "XNYS", start: str = "1990-01-01") -> None:
        self.code = code
        self._calendar = xcals.get_calendar(code, start=start)
        self._cache: dict[date, date] = {}

    def next_session(self, day: date | pd.Timestamp) -> date:
        key = pd.Timestamp(day).date()
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._next_session(key)
        return cached

    def _next_session(self, day: date) -> date:
        stamp = pd.Timestamp(day).normalize()
        first, last = self._calendar.first_session, self._calendar.last_session
        if first <= stamp < last:
            # The day itself may be a holiday (a client's own data): take the next session.
            session = self._calendar.date_to_session(stamp, direction="previous")
            return self._calendar.next_session(session).date()  # type: ignore[no-any-return]
        # Outside the calendar's range: fall back to the next weekday, and say so.
        logger.warning("%s is outside the %s calendar; using the next weekday", stamp.date(),
                       self.code)  # fmt: skip
        return (stamp + pd.offsets.BDay(1)).date()  # type: ignore[no-any-return]
