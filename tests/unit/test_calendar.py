"""h-day target dates on the NYSE calendar, across holidays and past its end."""

from __future__ import annotations

from datetime import date

import pytest

from forecaster.data.calendar import TradingCalendar


@pytest.fixture(scope="module")
def calendar() -> TradingCalendar:
    return TradingCalendar()


def test_sessions_skip_weekends_and_holidays(calendar: TradingCalendar) -> None:
    friday = date(2024, 12, 20)
    assert calendar.next_session(friday) == date(2024, 12, 23)
    # Dec 23, 24, (25 Christmas), 26, 27, 30.
    assert calendar.session_after(friday, 5) == date(2024, 12, 30)
    # 10 sessions: Dec 31, (Jan 1), Jan 2, 3, 6, 7. 21: also across the day of mourning for
    # President Carter (Jan 9, 2025) and Martin Luther King day (Jan 20).
    assert calendar.session_after(friday, 10) == date(2025, 1, 7)
    assert calendar.session_after(friday, 21) == date(2025, 1, 24)
    assert calendar.next_session(date(2025, 1, 8)) == date(2025, 1, 10)
    # Good Friday 2024 (March 29) is a holiday on a weekday.
    assert calendar.session_after(date(2024, 3, 27), 2) == date(2024, 4, 1)
    # A client's as-of date on a holiday counts from the session before it.
    assert calendar.session_after(date(2024, 12, 25), 1) == date(2024, 12, 26)


def test_past_the_calendar_counts_weekdays(calendar: TradingCalendar) -> None:
    assert calendar.session_after(date(2099, 1, 2), 5) == date(2099, 1, 9)  # a Friday
    with pytest.raises(ValueError, match="at least 1"):
        calendar.session_after(date(2024, 1, 2), 0)
