"""Every forecasting method, found by name.

A classic method (forecaster.methods.base.Method) is one module and one line in `CLASSIC`: the
backtest scores it (forecaster.methods.windowed.ClassicForecaster), the gate and the routes
compare it by name, the bundle stores its settings and fitted parameters under that name, and
the service serves it through the same `path`. The network is named NETWORK in routes, the
bundle, responses and the prediction log; its training side (forecaster.methods.lstm) imports
Lightning and is never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forecaster.config import EvaluationConfig
from forecaster.methods.base import Fit, Method, Params, log_returns
from forecaster.methods.garch import Garch
from forecaster.methods.random_walk import RandomWalk

NETWORK = "lstm"
CLASSIC: dict[str, type[Method]] = {
    RandomWalk.name: RandomWalk,
    Garch.name: Garch,
}
# Answers wherever the method a route names cannot (a history too short to fit on).
FALLBACK = RandomWalk.name


def names() -> tuple[str, ...]:
    """Every method a route may name."""
    return (NETWORK, *CLASSIC)


def configured(evaluation: EvaluationConfig) -> dict[str, Method]:
    """Every classic method as the config sets it up, by name."""
    return {name: kind.from_config(evaluation) for name, kind in CLASSIC.items()}


def build(name: str, settings: Mapping[str, Any] | None = None) -> Method:
    """A classic method by name, with the settings its bundle or config gives."""
    try:
        kind = CLASSIC[name]
    except KeyError:
        known = ", ".join(CLASSIC)
        raise ValueError(f"no classic forecasting method named {name!r}; known: {known}") from None
    return kind(**dict(settings or {}))


__all__ = [
    "CLASSIC",
    "FALLBACK",
    "NETWORK",
    "Fit",
    "Garch",
    "Method",
    "Params",
    "RandomWalk",
    "build",
    "configured",
    "log_returns",
    "names",
]
