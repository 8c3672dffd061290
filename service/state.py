"""Everything the app holds for its lifetime, built in the lifespan, reached via dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from forecaster.data.calendar import TradingCalendar
from service.batcher import ForwardBatcher
from service.history import HistoryStore
from service.live_scores import LiveScores
from service.metrics import ServiceMetrics
from service.model_store import ModelStore
from service.prediction_log import PredictionLog
from service.settings import ServiceSettings


@dataclass
class ServiceState:
    settings: ServiceSettings
    models: ModelStore
    history: HistoryStore
    calendar: TradingCalendar
    metrics: ServiceMetrics
    prediction_log: PredictionLog
    live_scores: LiveScores
    batcher: ForwardBatcher
