"""Which forecaster serves a ticker: every branch of the pure per-ticker rule, on hand-made
per-day scores (no training, no seed that has to beat a baseline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forecaster.gate import DayScores, GateConfig, Route, route
from tests.unit.test_gate import NAIVE, NAIVE_ERRORS, NAIVE_PINBALL, N, calibrated, scores


def garch(factor: float) -> DayScores:
    noise = np.random.default_rng(2).normal(0, 0.02, N)
    return DayScores(NAIVE_PINBALL * factor + noise, NAIVE_ERRORS, NAIVE.violations)


def test_the_model_serves_where_it_beats_both_and_is_calibrated() -> None:
    r = route(scores(0.90), NAIVE, garch(0.95))
    assert r.method == "lstm"
    assert r.evidence.scope == "ticker"
    assert r.evidence.days == N
    assert r.evidence.pinball_ratio_vs_naive == pytest.approx(0.90, abs=0.01)
    assert r.evidence.pinball_ratio_vs_garch == pytest.approx(0.90 / 0.95, abs=0.01)
    assert r.evidence.p_model_not_better_than_naive is not None
    assert r.evidence.p_model_not_better_than_naive < 0.05
    assert set(r.evidence.kupiec_pvalues) == {"0.5", "0.8", "0.9"}


def test_not_significantly_worse_than_garch_is_enough() -> None:
    """Equal to GARCH (within noise) but better than the random walk: the model serves."""
    assert route(scores(0.95), NAIVE, garch(0.95)).method == "lstm"


def test_significantly_worse_than_garch_falls_back_to_garch() -> None:
    r = route(scores(0.95), NAIVE, garch(0.85))
    assert r.method == "garch"
    assert "significantly worse than GARCH" in r.reason


def test_no_skill_over_the_random_walk_falls_back_to_the_better_baseline() -> None:
    assert route(scores(1.0), NAIVE, garch(1.05)).method == "naive"
    assert route(scores(1.0), NAIVE, garch(0.99)).method == "garch"
    assert "does not beat the random walk" in route(scores(1.0), NAIVE, garch(1.05)).reason


def test_miscalibrated_bands_lose_the_ticker_even_with_a_better_pinball() -> None:
    r = route(scores(0.90, miscalibrated=0.5), NAIVE, garch(0.95))
    assert r.method == "garch"
    assert "Kupiec (0.5)" in r.reason
    assert r.evidence.kupiec_pvalues["0.5"] is not None
    assert r.evidence.kupiec_pvalues["0.5"] < 0.01


def test_zero_loss_baselines_never_let_the_model_pass() -> None:
    """A series that never moves: the baselines' loss is 0, every ratio undefined."""
    flat = DayScores(np.zeros(N), np.zeros(N), {c: np.zeros(N, bool) for c in (0.5, 0.8, 0.9)})
    model = DayScores(np.full(N, 1e-6), np.zeros(N), {c: calibrated(c) for c in (0.5, 0.8, 0.9)})
    r = route(model, flat, flat)
    assert r.method != "lstm"
    assert r.evidence.pinball_ratio_vs_naive is None
    assert r.evidence.pinball_ratio_vs_garch is None


def test_thresholds_come_from_the_config() -> None:
    model = scores(0.97)
    assert route(model, NAIVE, garch(1.0), GateConfig(dm_alpha=0.05)).method == "lstm"
    assert route(model, NAIVE, garch(1.0), GateConfig(dm_alpha=1e-300)).method != "lstm"


def test_unseen_scope_and_length_checks() -> None:
    assert route(scores(0.9), NAIVE, garch(0.95), scope="unseen").evidence.scope == "unseen"
    short = DayScores(NAIVE_PINBALL[:10], NAIVE_ERRORS[:10], {})
    with pytest.raises(ValueError, match="same days"):
        route(scores(0.9), short, garch(0.95))


def test_a_route_survives_the_bundle_json() -> None:
    r = route(scores(0.90, miscalibrated=0.5), NAIVE, garch(0.95))
    again = Route.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r
    with pytest.raises(ValueError, match="not a route"):
        Route.from_dict({"method": "oracle", "evidence": {}})


def test_a_median_worse_than_persistence_loses_the_ticker() -> None:
    r = route(scores(0.90, error_factor=1.1), NAIVE, garch(0.95))
    assert r.method == "garch"
    assert "worse than persistence" in r.reason
