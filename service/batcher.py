"""Dynamic micro-batching of forward passes across concurrent requests.

The pattern of Triton's dynamic batcher and Ray Serve's `@serve.batch`, without a fixed delay:
a request whose window is ready joins the queue; when no forward is running, one starts at
once with everything queued (a lone request is not slowed), and the requests that arrive
during it form the next batch. `max_wait` lets a forward wait a few milliseconds for requests
that are known to be on their way (their windows are being built), never for ones that are not.
One forward runs at a time per process: with one torch thread per worker, two would only
compete for the same core.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from forecaster.registry.predictor import Forecaster

logger = logging.getLogger(__name__)


@dataclass
class _Item:
    forecaster: Forecaster
    window: np.ndarray  # (1, lookback, n_features) float32, scaled
    future: asyncio.Future[np.ndarray]


@dataclass
class ForwardBatcher:
    max_batch: int = 64
    max_wait: float = 0.002
    on_forward: Callable[[int], None] = lambda size: None
    _queue: list[_Item] = field(default_factory=list)
    _running: bool = False
    _coming: int = 0
    _arrived: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Mark a request that is building its window, so a forward may wait for it."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1

    async def forecast(self, forecaster: Forecaster, window: np.ndarray) -> np.ndarray:
        """Quantiles (n_quantiles,) for one scaled window, computed in a shared forward."""
        loop = asyncio.get_running_loop()
        item = _Item(forecaster, window, loop.create_future())
        self._queue.append(item)
        if self._arrived is not None:
            self._arrived.set()
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())
        return await item.future

    async def _gather(self) -> None:
        """Wait up to max_wait while requests that will join are still on their way."""
        deadline = time.monotonic() + self.max_wait
        while self._coming > 0 and len(self._queue) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived = asyncio.Event()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return
            finally:
                self._arrived = None

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self.max_wait > 0 and self._coming > 0:
                    await self._gather()
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                self._run(batch)
                # Let the requests that arrived meanwhile (and the answered ones) run.
                await asyncio.sleep(0)
        finally:
            self._running = False

    def _run(self, batch: list[_Item]) -> None:
        # A hot reload can leave requests for two model versions in one queue.
        groups: dict[int, list[_Item]] = {}
        for item in batch:
            groups.setdefault(id(item.forecaster), []).append(item)
        for items in groups.values():
            live = [item for item in items if not item.future.done()]
            if not live:
                continue
            try:
                x = np.concatenate([item.window for item in live])
                quantiles = live[0].forecaster.forecast_windows(x)
            except Exception as exc:  # every waiting request gets the error, none hangs
                for item in live:
                    item.future.set_exception(exc)
                continue
            self.on_forward(len(live))
            for item, q in zip(live, quantiles, strict=True):
                item.future.set_result(q)
