"""The API's fast path for client history: the same outcome as the pydantic models for any
body, one forward pass for concurrent requests, and a lone request never kept waiting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from forecaster.registry.predictor import Forecaster
from service.batcher import ForwardBatcher
from service.body import validate
from service.main import create_app
from service.requests import ClientRequest, RequestHistory, parse_batch, parse_prediction
from service.schemas import BatchRequest, PredictionRequest
from tests.service.test_api import history_rows

pytestmark = pytest.mark.slow

ROWS = history_rows(30)


def _row(i: int, **changes: Any) -> list[dict[str, Any]]:
    rows = [dict(r) for r in ROWS]
    rows[i].update(changes)
    return rows


def _outcome(parse: Callable[[], ClientRequest | list[ClientRequest]]) -> Any:
    try:
        result = parse()
    except RequestValidationError as exc:
        return ("422", exc.errors())
    items = result if isinstance(result, list) else [result]
    return [(item.ticker, _arrays(item.history)) for item in items]


def _arrays(history: RequestHistory | None) -> Any:
    if history is None:
        return None
    columns = history.prices.columns()
    return [history.days.tolist(), *(columns[name].tolist() for name in sorted(columns))]


def _pydantic(raw: bytes) -> ClientRequest:
    body = validate(PredictionRequest, raw)
    rows = body.history
    return ClientRequest(body.ticker, None if rows is None else RequestHistory.of_rows(rows))


BODIES: list[Any] = [
    {"ticker": "^GSPC"},
    {"ticker": "^GSPC", "history": None},
    {"ticker": "A", "history": ROWS},
    {"ticker": "A", "history": [{**r, "volume": int(r["volume"])} for r in ROWS]},
    {"ticker": "A", "history": _row(3, open="12.5")},  # a number in a string: pydantic's call
    {"ticker": "A", "history": _row(3, open=True)},
    {"ticker": "A", "history": _row(3, open=None)},
    {"ticker": "A", "history": _row(3, open=[1.0])},
    {"ticker": "A", "history": _row(3, close=-1.0)},
    {"ticker": "A", "history": _row(3, close=0)},
    {"ticker": "A", "history": _row(3, volume=-1)},
    {"ticker": "A", "history": _row(3, volume=0)},
    {"ticker": "A", "history": _row(3, high=1e400)},
    {"ticker": "A", "history": _row(3, high=10**30)},
    {"ticker": "A", "history": _row(3, extra=1)},
    {"ticker": "A", "history": [{k: v for k, v in r.items() if k != "low"} for r in ROWS]},
    {"ticker": "A", "history": _row(3, date="2018-02-30")},
    {"ticker": "A", "history": _row(3, date="2018-1-02")},
    {"ticker": "A", "history": _row(3, date="2018-01-02T00:00:00")},
    {"ticker": "A", "history": _row(3, date="20180102")},
    {"ticker": "A", "history": _row(3, date=1514851200)},
    {"ticker": "A", "history": _row(3, date="+2018-01-0")},
    {"ticker": "A", "history": []},
    {"ticker": "A", "history": {}},
    {"ticker": "A", "history": ROWS, "more": 1},
    {"ticker": "A\n", "history": ROWS},
    {"ticker": "", "history": ROWS},
    {"ticker": 5, "history": ROWS},
    {"history": ROWS},
    [],
    "A",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_fast_path_decides_every_body_as_the_models_do(body: Any) -> None:
    raw = json.dumps(body).encode()
    assert _outcome(lambda: parse_prediction(raw, 5000)) == _outcome(lambda: _pydantic(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ticker": NaN}',
        b'{"ticker": "A", "history": [{"date"',
        b"\xff",
        b'{"ticker": "A", "history": [' + b"9" * 30 + b"]}",
    ],
)
def test_malformed_json_gets_the_models_errors(raw: bytes) -> None:
    assert _outcome(lambda: parse_prediction(raw, 5000)) == _outcome(lambda: _pydantic(raw))


def test_a_batch_takes_the_fast_path_only_when_every_item_can() -> None:
    good = {"ticker": "A", "history": ROWS}
    for items in ([good, {"ticker": "B"}], [good, {"ticker": "A", "history": _row(1, low="1")}]):
        raw = json.dumps({"requests": items}).encode()

        def models(raw: bytes = raw) -> list[ClientRequest]:
            return [_pydantic(json.dumps(item.model_dump(mode="json")).encode())
                    for item in validate(BatchRequest, raw).requests]  # fmt: skip

        assert _outcome(lambda raw=raw: parse_batch(raw, 5000)) == _outcome(models)


def test_histories_over_the_limit_are_refused_before_their_rows_are_read() -> None:
    rows = [{"date": "x"}] * 101  # never looked at: pydantic would refuse every one
    request = parse_prediction(json.dumps({"ticker": "A", "history": rows}).encode(), 100)
    assert request == ClientRequest("A", None, refused_rows=101)


def test_an_over_long_history_in_a_batch_refuses_the_batch_naming_the_item(
    settings_for: Callable[..., Any],
) -> None:
    """The schema's maxItems holds inside a batch too: a body that breaks it is refused whole,
    as one with any other malformed item is, and the detail says which item."""
    with TestClient(create_app(settings_for(max_history_rows=100))) as client:
        items = [{"ticker": "OK", "history": history_rows(60)},
                 {"ticker": "LONG", "history": history_rows(150)}]  # fmt: skip
        response = client.post("/v1/predictions/batch", json={"requests": items})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("requests[1]: history has 150 rows; send ")
    with TestClient(create_app(settings_for())) as client:
        items[1]["history"] = history_rows(3)
        response = client.post("/v1/predictions/batch", json={"requests": items})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("requests[1]: history has 3 rows; send ")


class CountingForecaster(Forecaster):
    """The served model, recording the size of every forward pass it runs."""

    def __init__(self, real: Forecaster) -> None:
        super().__init__(real.bundle, real.network, real.forward)
        self.batches: list[int] = []

    def forecast_windows(self, windows: np.ndarray) -> np.ndarray:
        self.batches.append(len(windows))
        return super().forecast_windows(windows)


@pytest.fixture
def model(client: TestClient) -> CountingForecaster:
    return CountingForecaster(client.app.state.service.models.current.forecaster)  # type: ignore[attr-defined]


def _windows(model: Forecaster, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (1, model.bundle.lookback, model.bundle.n_features)
    return [rng.normal(size=shape).astype(np.float32) for _ in range(n)]


def test_concurrent_requests_share_one_forward_with_the_single_results(
    model: CountingForecaster,
) -> None:
    windows = _windows(model, 20)

    async def run() -> list[np.ndarray]:
        batcher = ForwardBatcher(max_batch=64, max_wait=0.0)
        return await asyncio.gather(*(batcher.forecast(model, w) for w in windows))

    results = asyncio.run(run())
    assert model.batches == [20]
    for window, result in zip(windows, results, strict=True):
        np.testing.assert_allclose(result, model.forecast_window(window), rtol=0, atol=1e-6)


def test_batches_are_capped_and_a_lone_request_does_not_wait(model: CountingForecaster) -> None:
    async def run() -> None:
        batcher = ForwardBatcher(max_batch=8, max_wait=600.0)  # a wait would time out below
        await asyncio.wait_for(batcher.forecast(model, _windows(model, 1)[0]), 30)
        await asyncio.wait_for(
            asyncio.gather(*(batcher.forecast(model, w) for w in _windows(model, 20))), 30
        )

    asyncio.run(run())
    assert model.batches == [1, 8, 8, 4]


def test_a_forward_waits_for_requests_known_to_be_coming(model: CountingForecaster) -> None:
    first, second = _windows(model, 2)

    async def late(batcher: ForwardBatcher) -> np.ndarray:
        with batcher.coming():
            await asyncio.sleep(0.05)  # building its window
            task = asyncio.ensure_future(batcher.forecast(model, second))
            await asyncio.sleep(0)
        return await task

    async def run() -> None:
        batcher = ForwardBatcher(max_batch=64, max_wait=30.0)
        waiting = asyncio.ensure_future(late(batcher))
        await asyncio.sleep(0)  # `late` has registered as coming
        await asyncio.wait_for(asyncio.gather(batcher.forecast(model, first), waiting), 30)

    asyncio.run(run())
    assert model.batches == [2]


def test_a_failing_forward_fails_its_requests_and_the_next_batch_runs(
    model: CountingForecaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        batcher = ForwardBatcher(max_batch=64, max_wait=0.0)
        with monkeypatch.context() as patch:
            patch.setattr(model, "forward", lambda x: (_ for _ in ()).throw(RuntimeError("oom")))
            outcomes = await asyncio.gather(
                *(batcher.forecast(model, w) for w in _windows(model, 3)), return_exceptions=True
            )
        assert [str(o) for o in outcomes] == ["oom"] * 3
        assert (await batcher.forecast(model, _windows(model, 1)[0])).shape == (7,)

    asyncio.run(run())


def test_a_batch_call_runs_one_forward_for_all_its_client_histories(client: TestClient) -> None:
    items = [{"ticker": f"T{i}", "history": history_rows(40, end=f"2018-0{1 + i % 9}-25")}
             for i in range(12)]  # fmt: skip
    response = client.post(
        "/v1/predictions/batch", json={"requests": [*items, {"ticker": "^GSPC"}]}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["prediction"] for r in results)
    metrics = client.get("/metrics").text
    assert "forecaster_forward_batch_size_count 1.0" in metrics
    assert "forecaster_forward_batch_size_sum 12.0" in metrics
    # Each item's forecast is the one it gets alone.
    alone = client.post("/v1/predictions", json=items[5]).json()
    for key in ("predicted_close", "volatility"):
        assert results[5]["prediction"][key] == pytest.approx(alone[key], rel=1e-6)
