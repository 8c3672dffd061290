"""Hostile bodies: every one a small 4xx naming what is wrong, never a 500 or a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ServiceSettings
from tests.service.test_api import _mutate, history_rows

pytestmark = pytest.mark.slow

ROWS = history_rows(60, end="2018-06-29")


def _body(**changes: Any) -> dict[str, Any]:
    return {"ticker": "ACME", "history": _mutate(30, **changes)(list(ROWS))}


# (case, raw body, status, fragment the response must contain)
HOSTILE: list[tuple[str, bytes, int, str]] = [
    ("NaN ticker", b'{"ticker": NaN}', 422, "ticker"),
    ("Infinity ticker", b'{"ticker": Infinity}', 422, "ticker"),
    ("-Infinity extra field", b'{"ticker": "A", "x": -Infinity}', 422, "x"),
    ("NaN price", json.dumps(_body(close=float("nan"))).encode(), 422, '"history",30,"close"'),
    ("Infinity volume", json.dumps(_body(volume=float("inf"))).encode(), 422, '"history",30,"volume"'),
    ("number too large", json.dumps(_body(open=1.0)).replace("1.0", "1e400", 1).encode(), 422, "finite"),
    ("year 9999", json.dumps(_body(date="9999-12-31")).encode(), 422, "row 30: date 9999-12-31 is in the future"),
    ("year 1", json.dumps(_body(date="0001-01-01")).encode(), 422, "row 30: date 0001-01-01 is before 1900-01-01"),
    ("last row in year 9999", json.dumps({"ticker": "A", "history": [*ROWS[:-1], {**ROWS[-1], "date": "9999-12-31"}]}).encode(), 422, "in the future"),
    ("open above high", json.dumps(_body(open=ROWS[30]["high"] * 1.01)).encode(), 422, "row 30 (2018-05-18): open is outside [low, high]"),
    ("close below low", json.dumps(_body(close=ROWS[30]["low"] * 0.99)).encode(), 422, "row 30 (2018-05-18): close is outside [low, high]"),
    ("not JSON", b"{not json", 422, "Invalid JSON"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, 422, "recursion limit"),
    ("empty body", b"", 422, "a JSON body is required"),
    ("a JSON string", b'"^GSPC"', 422, "should be an object"),
    ("invalid UTF-8", b'{"ticker": "\xff\xfe"}', 422, "Invalid JSON"),
    ("null history row", b'{"ticker": "A", "history": [null]}', 422, '"history",0'),
    ("NaN in a batch", b'{"requests": [{"ticker": "A"}, {"ticker": NaN}]}', 422, '"requests",1,"ticker"'),
    ("year 9999 in a batch", json.dumps({"requests": [_body(date="9999-12-31")]}).encode(), 200, "is in the future"),
]  # fmt: skip


@pytest.fixture
def hostile_client(settings_for: Callable[..., ServiceSettings]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for()), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("case", "raw", "status", "fragment"), HOSTILE,
                         ids=[c[0] for c in HOSTILE])  # fmt: skip
def test_hostile_bodies_are_small_4xx_naming_the_problem(
    hostile_client: TestClient,
    caplog: pytest.LogCaptureFixture,
    case: str,
    raw: bytes,
    status: int,
    fragment: str,
) -> None:
    with caplog.at_level(logging.WARNING):
        path = "/v1/predictions/batch" if "batch" in case else "/v1/predictions"
        response = hostile_client.post(
            path, content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert len(response.content) < 2000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # The connection survives: the next request on it is answered normally.
    assert hostile_client.get("/healthz").status_code == 200


def test_many_invalid_rows_give_a_small_error(hostile_client: TestClient) -> None:
    rows = [{"date": "2018-01-02", "open": "x", "high": 1, "low": 1, "close": 1, "volume": 1}]
    # Over max_history_rows (5000): refused on the row count, before any row is validated.
    raw = json.dumps({"ticker": "A", "history": rows * 16_000}).encode()
    assert len(raw) > 1_000_000
    response = hostile_client.post(
        "/v1/predictions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("history has 16000 rows; send at most 5000 (the model needs ")
    # Within the limit: validation stops at the first bad row instead of reporting 5,000.
    raw = json.dumps({"ticker": "A", "history": rows * 5000}).encode()
    response = hostile_client.post(
        "/v1/predictions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "history", 0, "open"], "type": "float_parsing",
         "msg": "Input should be a valid number, unable to parse string as a number"}
    ]  # fmt: skip
    assert len(response.content) < 2000


def test_errors_are_capped_and_never_echo_the_input(hostile_client: TestClient) -> None:
    secret = "do-not-echo-" + "z" * 500
    raw = json.dumps({"ticker": secret, **{f"extra{i}": secret for i in range(30)}}).encode()
    response = hostile_client.post(
        "/v1/predictions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == 5
    assert body["errors_total"] == 31
    assert body["detail"][0]["loc"] == ["body", "ticker"]
    assert "do-not-echo" not in response.text


def test_chunked_body_over_the_limit_is_413(
    settings_for: Callable[..., ServiceSettings],
) -> None:
    def chunks(size: int) -> Iterator[bytes]:
        yield b'{"ticker": "A", "history": ['
        for _ in range(size // 1000):
            yield b" " * 1000
        yield b"]}"

    app = create_app(settings_for(max_body_bytes=20_000))
    with TestClient(app) as client:
        headers = {"content-type": "application/json"}
        big = client.post("/v1/predictions", content=chunks(30_000), headers=headers)
        assert big.status_code == 413, big.text
        assert "request body over 20000 bytes" in big.json()["detail"]
        # Under the limit, a chunked body is read and validated as usual.
        small = client.post("/v1/predictions", content=chunks(5_000), headers=headers)
        assert small.status_code == 422, small.text
        assert "at least 1 item" in small.text


def test_non_json_content_type_is_415(hostile_client: TestClient) -> None:
    response = hostile_client.post(
        "/v1/predictions", content=b'{"ticker": "^GSPC"}', headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_a_compressed_body_is_415_not_invalid_json(hostile_client: TestClient) -> None:
    import gzip

    response = hostile_client.post(
        "/v1/predictions",
        content=gzip.compress(b'{"ticker": "^GSPC"}'),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 415
    assert response.json() == {
        "detail": "content-encoding 'gzip' is not accepted; send the body uncompressed"
    }


def test_bodies_are_documented_in_openapi(hostile_client: TestClient) -> None:
    schema = hostile_client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predictions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictionRequest"
    }
    components = schema["components"]["schemas"]
    assert {"PredictionRequest", "BatchRequest", "HistoryRow"} <= set(components)
    assert "ticker" in components["PredictionRequest"]["properties"]
