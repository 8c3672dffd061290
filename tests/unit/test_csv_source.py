"""A bad CSV of every kind gives one clear error: the file, the line or date, and the fault."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from forecaster.data.schemas import ADJUSTED, AS_GIVEN, RAW, frame_meta
from forecaster.data.sources import CsvSource
from forecaster.errors import DataError, DataValidationError
from tests.conftest import csv_rows


def load(path: Path, *, auto_adjust: bool = True, ticker: str = "ACME"):
    return CsvSource({ticker: path}, auto_adjust=auto_adjust).load(ticker)


def replace_field(line: str, index: int, value: str) -> str:
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


def test_well_formed_csv_loads_as_the_contract(write_csv: Callable[..., Path]) -> None:
    frame = load(write_csv(csv_rows(50)))
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "date"
    assert frame.index.tz is None
    assert frame.index.is_monotonic_increasing
    assert frame.index.is_unique
    assert all(str(t) == "float64" for t in frame.dtypes)
    assert len(frame) == 50
    meta = frame_meta(frame)
    assert meta.ticker == "ACME"
    assert meta.source == "csv"


def test_column_names_are_case_insensitive_and_adj_close_optional(
    write_csv: Callable[..., Path],
) -> None:
    lines = [",".join(f for i, f in enumerate(line.split(",")) if i != 5) for line in csv_rows()]
    frame = load(write_csv(lines, header="DATE,open,HIGH,Low,cLoSe,VOLUME"))
    assert len(frame) == 80
    assert frame_meta(frame).adjustment == AS_GIVEN


def test_adj_close_rescales_ohlc_when_auto_adjust(write_csv: Callable[..., Path]) -> None:
    lines = csv_rows(10)
    # A 2:1 split adjustment on the first five days: Adj Close is half of Close.
    halved = []
    for i, line in enumerate(lines):
        fields = line.split(",")
        if i < 5:
            fields[5] = f"{float(fields[4]) / 2:.6f}"
        halved.append(",".join(fields))
    path = write_csv(halved)
    raw = load(path, auto_adjust=False)
    adjusted = load(path, auto_adjust=True)
    assert frame_meta(raw).adjustment == RAW
    assert frame_meta(adjusted).adjustment == ADJUSTED
    np.testing.assert_allclose(adjusted["close"].iloc[:5], raw["close"].iloc[:5] / 2, rtol=1e-5)
    np.testing.assert_allclose(adjusted["open"].iloc[:5], raw["open"].iloc[:5] / 2, rtol=1e-5)
    np.testing.assert_allclose(adjusted["close"].iloc[5:], raw["close"].iloc[5:])
    np.testing.assert_allclose(adjusted["volume"], raw["volume"])


def test_iso_dates_with_time_and_offset_keep_the_calendar_day(
    write_csv: Callable[..., Path],
) -> None:
    lines = csv_rows(5)
    offsets = ["-05:00", "-05:00", "-04:00", "-04:00", "-04:00"]
    lines = [
        replace_field(line, 0, f"{line.split(',')[0]} 00:00:00{off}")
        for line, off in zip(lines, offsets, strict=True)
    ]
    frame = load(write_csv(lines))
    assert [str(d.date()) for d in frame.index] == [line.split(",")[0][:10] for line in lines]


def test_us_style_dates_parse(write_csv: Callable[..., Path]) -> None:
    frame = load(write_csv(["1/4/1999,10,11,9,10.5,10.5,100", "1/5/1999,10,11,9,10.5,10.5,100"]))
    assert str(frame.index[1].date()) == "1999-01-05"


def test_unsorted_dates_are_sorted_with_a_warning(
    write_csv: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    lines = csv_rows(20)
    lines[3], lines[4] = lines[4], lines[3]
    with caplog.at_level(logging.WARNING):
        frame = load(write_csv(lines))
    assert frame.index.is_monotonic_increasing
    assert "not in ascending order; sorted them" in caplog.text


BAD_CASES = [
    # (how to break line 4 of the file, expected fragments of the message)
    ("missing_column", None, ["missing required column(s) volume"]),
    ("non_numeric", lambda ln: replace_field(ln, 4, "abc"), ["line 4", "close is not a number", "'abc'"]),
    ("bad_date", lambda ln: replace_field(ln, 0, "2021-13-45"), ["line 4", "unparseable date '2021-13-45'"]),
    ("empty_date", lambda ln: replace_field(ln, 0, ""), ["line 4", "unparseable date an empty value"]),
    ("nan", lambda ln: replace_field(ln, 2, "null"), ["line 4", "high is missing (NaN)"]),
    ("inf", lambda ln: replace_field(ln, 3, "inf"), ["line 4", "low is infinite"]),
    ("zero_price", lambda ln: replace_field(ln, 1, "0"), ["line 4", "open must be positive"]),
    ("negative_price", lambda ln: replace_field(ln, 4, "-3"), ["line 4", "close must be positive"]),
    ("high_below_low", lambda ln: replace_field(replace_field(ln, 2, "1.0"), 3, "2.0"), ["line 4", "high is below low"]),
    ("negative_volume", lambda ln: replace_field(ln, 6, "-10"), ["line 4", "volume is negative"]),
    ("open_above_high", lambda ln: replace_field(ln, 1, "1000"), ["line 4", "open is outside [low, high]"]),
    ("close_below_low", lambda ln: replace_field(ln, 4, "0.5"), ["line 4", "close is outside [low, high]"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "breaker", "fragments"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_csv_gives_one_clear_line(
    write_csv: Callable[..., Path], case: str, breaker, fragments: list[str]
) -> None:
    lines = csv_rows(30)
    header = "Date,Open,High,Low,Close,Adj Close,Volume"
    if case == "missing_column":
        header = "Date,Open,High,Low,Close,Adj Close"
        lines = [line.rsplit(",", 1)[0] for line in lines]
    else:
        lines[2] = breaker(lines[2])  # data line 3 is line 4 of the file
    path = write_csv(lines, header=header)
    with pytest.raises(DataValidationError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message
    if case not in ("missing_column", "bad_date", "empty_date"):
        assert f"({lines[2].split(',')[0][:10]})" in message  # the date of the row


def test_duplicate_dates_are_refused(write_csv: Callable[..., Path]) -> None:
    lines = csv_rows(20)
    lines[7] = replace_field(lines[7], 0, lines[6].split(",")[0])
    with pytest.raises(DataValidationError, match=r"duplicate date 20\d\d-\d\d-\d\d"):
        load(write_csv(lines))


def test_blank_lines_keep_line_numbers_honest(write_csv: Callable[..., Path]) -> None:
    lines = csv_rows(10)
    lines.insert(2, "")
    lines[5] = replace_field(lines[5], 4, "x")
    with pytest.raises(DataValidationError, match="line 7 "):
        load(write_csv(lines))


def test_missing_file_empty_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="not a readable CSV file"):
        load(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("Date,Open,High,Low,Close,Volume\n")
    with pytest.raises(DataValidationError, match="no data rows"):
        load(header_only)
    with pytest.raises(DataError, match="is a directory"):
        load(tmp_path)


def test_bad_adj_close_names_the_row_and_the_escape_hatch(write_csv: Callable[..., Path]) -> None:
    lines = csv_rows(10)
    lines[4] = replace_field(lines[4], 5, "n/a")
    with pytest.raises(DataValidationError, match=r"line 6 .*adj close.*data.auto_adjust=false"):
        load(write_csv(lines))
    assert len(load(write_csv(lines), auto_adjust=False)) == 10
