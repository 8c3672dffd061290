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
from forecaster.methods.base import Bars, Fit, Method, Params, log_returns
from forecaster.methods.combination import Combination
from forecaster.methods.egarch import Egarch
from forecaster.methods.garch import Garch, GjrGarch
from forecaster.methods.har import HarRange
from forecaster.methods.random_walk import RandomWalk

NETWORK = "lstm"
CLASSIC: dict[str, type[Method]] = {
    RandomWalk.name: RandomWalk,
    Garch.name: Garch,
    GjrGarch.name: GjrGarch,
    Egarch.name: Egarch,
    HarRange.name: HarRange,
    Combination.name: Combination,
}
# Answers wherever the method a route names cannot (a history too short to fit on).
FALLBACK = RandomWalk.name


def names() -> tuple[str, ...]:
    """Every method a route may name."""
    return (NETWORK, *CLASSIC)


def configured(evaluation: EvaluationConfig) -> dict[str, Method]:
    """Every classic method the config alone sets up (all but combinations), by name."""
    return {name: kind.from_config(evaluation) for name, kind in CLASSIC.items()
            if not kind.combines}  # fmt: skip


def build(name: str, settings: Mapping[str, Any] | None = None) -> Method:
    """A classic method by name, with the settings its bundle or config gives (a
    combination's members built the same way, from theirs)."""
    try:
        kind = CLASSIC[name]
    except KeyError:
        known = ", ".join(CLASSIC)
        raise ValueError(f"no classic forecasting method named {name!r}; known: {known}") from None
    given = dict(settings or {})
    if kind.combines:
        members = {m: build(m, s) for m, s in dict(given.get("members", {})).items()}
        return Combination(given.get("weights", {}), members)
    return kind(**given)


__all__ = [
    "CLASSIC",
    "FALLBACK",
    "NETWORK",
    "Bars",
    "Combination",
    "Egarch",
    "Fit",
    "Garch",
    "GjrGarch",
    "HarRange",
    "Method",
    "Params",
    "RandomWalk",
    "build",
    "configured",
    "log_returns",
    "names",
]
