"""Prediction request bodies to arrays: a fast path for well-formed JSON, pydantic for the rest.

Building 80 pydantic `HistoryRow` objects costs more than the forecast itself, and a 16,000-row
body holds the interpreter for ~80 ms. Bodies are therefore parsed with orjson and a
well-formed history goes straight into numpy arrays; a history longer than the limit is refused
(a 422 for its request) before any row is looked at. Anything the fast path is not sure of (a
wrong type, a missing or extra field, a date in another spelling, a value a field's rule
refuses) is handed to the pydantic models in `service.schemas`, which accept or refuse it with
their usual 422: the API has one set of rules and messages, whichever path a body takes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import Request

from forecaster.data.schemas import OHLCV_COLUMNS, TICKER_PATTERN, OHLCVArrays
from service.body import INLINE_BYTES, read_json, validate
from service.deps import get_state
from service.schemas import BatchRequest, HistoryRow, PredictionRequest

_TICKER = re.compile(TICKER_PATTERN)
_DATES = re.compile(r"(?:\d{4}-\d{2}-\d{2})*", re.ASCII)
_ROW_FIELDS = ("date", *OHLCV_COLUMNS)
_NUMBER_TYPES = {int, float}


@dataclass(frozen=True)
class RequestHistory:
    """A client's rows as arrays, each field valid on its own (dates are dates, prices
    positive, volume not negative); the checks across rows and fields come later, in
    `service.client_history`, with the CSV validation's rules and messages."""

    days: np.ndarray  # datetime64[D]
    prices: OHLCVArrays

    def __len__(self) -> int:
        return len(self.prices)

    @classmethod
    def of_rows(cls, rows: Sequence[HistoryRow]) -> RequestHistory:
        n = len(rows)

        def column(name: str) -> np.ndarray:
            return np.fromiter((getattr(row, name) for row in rows), np.float64, n)

        days = np.array([row.date for row in rows], dtype="datetime64[D]")
        return cls(days, OHLCVArrays(*(column(name) for name in OHLCV_COLUMNS)))


@dataclass(frozen=True)
class ClientRequest:
    ticker: str
    history: RequestHistory | None
    # Rows of a history refused unread for being over the limit; the route answers with a 422
    # (for a batch, that item's error).
    refused_rows: int = 0


def _fast_history(rows: list[Any]) -> RequestHistory | None:
    """Arrays of a well-formed history, or None to let pydantic judge it."""
    try:
        if not all(type(row) is dict and len(row) == len(_ROW_FIELDS) for row in rows):
            return None
        dates = [row["date"] for row in rows]
        columns = [[row[name] for row in rows] for name in OHLCV_COLUMNS]
    except KeyError:
        return None
    if not all(set(map(type, column)) <= _NUMBER_TYPES for column in columns):
        return None  # strings, booleans, nulls, nested values
    if set(map(type, dates)) != {str} or set(map(len, dates)) != {10}:
        return None
    if not _DATES.fullmatch("".join(dates)):
        return None  # numpy would read more spellings than YYYY-MM-DD
    try:
        days = np.array(dates, dtype="datetime64[D]")  # refuses 2018-02-30 and month 13
    except ValueError:
        return None
    try:
        arrays = [np.array(column, dtype=np.float64) for column in columns]
    except (OverflowError, ValueError):
        return None
    prices, volume = arrays[:4], arrays[4]
    if not all(np.isfinite(a).all() for a in arrays):
        return None
    if not all((a > 0).all() for a in prices) or not (volume >= 0).all():
        return None
    return RequestHistory(days, OHLCVArrays(*arrays))


def _fast_request(item: Any, max_rows: int) -> ClientRequest | None:
    if type(item) is not dict or not item.keys() <= {"ticker", "history"}:
        return None
    ticker = item.get("ticker")
    if type(ticker) is not str or not _TICKER.fullmatch(ticker):
        return None
    rows = item.get("history")
    if rows is None:
        return ClientRequest(ticker, None)
    if type(rows) is not list or not rows:
        return None
    if len(rows) > max_rows:
        return ClientRequest(ticker, None, refused_rows=len(rows))
    history = _fast_history(rows)
    return None if history is None else ClientRequest(ticker, history)


def _from_model(body: PredictionRequest) -> ClientRequest:
    rows = body.history
    return ClientRequest(body.ticker, None if rows is None else RequestHistory.of_rows(rows))


def parse_prediction(raw: bytes, max_rows: int) -> ClientRequest:
    try:
        parsed = _fast_request(orjson.loads(raw), max_rows)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed or _from_model(validate(PredictionRequest, raw))


def parse_batch(raw: bytes, max_rows: int) -> list[ClientRequest]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    items = data.get("requests") if type(data) is dict and data.keys() == {"requests"} else None
    if type(items) is list and items:
        parsed = [_fast_request(item, max_rows) for item in items]
        if all(p is not None for p in parsed):
            return [p for p in parsed if p is not None]
    return [_from_model(item) for item in validate(BatchRequest, raw).requests]


def _body_dependency(
    parse: Callable[[bytes, int], Any],
) -> Callable[[Request], Awaitable[Any]]:
    async def dependency(request: Request) -> Any:
        raw = await read_json(request)
        max_rows = (await get_state(request)).settings.max_history_rows
        if len(raw) <= INLINE_BYTES:
            return parse(raw, max_rows)
        return await asyncio.to_thread(parse, raw, max_rows)

    return dependency


prediction_body: Callable[[Request], Awaitable[ClientRequest]] = _body_dependency(parse_prediction)
batch_body: Callable[[Request], Awaitable[list[ClientRequest]]] = _body_dependency(parse_batch)
