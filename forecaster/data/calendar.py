"""Trading days by the exchange calendar (NYSE: weekends and market holidays skipped)."""

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
        self._cache: dict[tuple[date, int], date] = {}

    def next_session(self, day: date | pd.Timestamp) -> date:
        return self.session_after(day, 1)

    def session_after(self, day: date | pd.Timestamp, sessions: int) -> date:
        """The session `sessions` trading days after `day`: the target date of an h-day
        forecast made at its close (holidays skipped, as the exchange skips them)."""
        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, got {sessions}")
        key = (pd.Timestamp(day).date(), sessions)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._session_after(key[0], sessions)
        return cached

    def _session_after(self, day: date, sessions: int) -> date:
        stamp = pd.Timestamp(day).normalize()
        first, last = self._calendar.first_session, self._calendar.last_session
        if first <= stamp < last:
            # The day itself may be a holiday (a client's own data): count from the session
            # before it.
            session = self._calendar.date_to_session(stamp, direction="previous")
            try:
                return self._calendar.session_offset(session, sessions).date()  # type: ignore[no-any-return]
            except ValueError:  # RequestedSessionOutOfBounds
                pass  # runs past the calendar's end: fall through to weekdays
        # Outside the calendar's range: fall back to weekdays, and say so.
        logger.warning("%s + %d sessions is outside the %s calendar; counting weekdays",
                       stamp.date(), sessions, self.code)  # fmt: skip
        return (stamp + pd.offsets.BDay(sessions)).date()  # type: ignore[no-any-return]
