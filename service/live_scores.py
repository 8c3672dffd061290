"""The latest figures `forecaster monitor` stored in the prediction log's database, for
`/v1/performance` and the live Prometheus gauges. Read-only; cached for a few seconds so a
scrape or a burst of requests costs one small query."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from forecaster.errors import first_line
from forecaster.local_state import redact, shown_url
from forecaster.predlog import repository
from forecaster.predlog.repository import ALL, ScoreRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    computed_at: datetime | None
    rows: tuple[ScoreRow, ...]


class LiveScores:
    def __init__(self, url: str, ttl_seconds: float = 15.0) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None

    def _read(self) -> Snapshot:
        if self._engine is None:
            self._engine = create_engine(self.url)
        try:
            computed_at, rows = repository.latest_scores(self._engine)
        except SQLAlchemyError as exc:  # no log yet, or no monitor run yet: nothing to report
            logger.debug("no live scores readable from %s: %s", shown_url(self.url),
                         redact(first_line(exc), self.url))  # fmt: skip
            return Snapshot(None, ())
        return Snapshot(computed_at, tuple(rows))

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                self._cached = (now, self._read())
            return self._cached[1]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class LiveGauges(Collector):
    """forecaster_live_coverage{version,method,level}, forecaster_live_pinball{version,method}
    and forecaster_live_resolved{version,method}: the last monitor run, all tickers, its
    headline window (`monitoring.headline_window`, 250 by default), per serving method
    (method="*": all of them)."""

    def __init__(self, scores: LiveScores) -> None:
        self.scores = scores

    def collect(self) -> Iterator[GaugeMetricFamily]:
        coverage = GaugeMetricFamily("forecaster_live_coverage",
                                     "Live coverage of each served interval (headline window)",
                                     labels=["version", "method", "level"])  # fmt: skip
        pinball = GaugeMetricFamily("forecaster_live_pinball",
                                    "Live mean pinball loss (headline window)",
                                    labels=["version", "method"])  # fmt: skip
        resolved = GaugeMetricFamily("forecaster_live_resolved",
                                     "Served forecasts resolved against a realised close",
                                     labels=["version", "method"])  # fmt: skip
        for row in self.scores.snapshot().rows:
            if row.ticker != ALL or not row.headline:
                continue
            labels = [row.model_version, row.method]
            for level, value in row.figures.coverage.items():
                coverage.add_metric([*labels, level], value)
            if row.figures.pinball is not None:
                pinball.add_metric(labels, row.figures.pinball)
            resolved.add_metric(labels, row.figures.resolved)
        yield from (coverage, pinball, resolved)
