"""Which forecaster serves a ticker: every branch of the pure per-ticker rule, on hand-made
per-day scores (no training, no seed that has to beat a baseline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forecaster.evaluation.gate import DayScores, GateConfig, Route, route
from tests.unit.test_gate import (
    NAIVE,
    NAIVE_ERRORS,
    NAIVE_PINBALL,
    WOBBLE,
    N,
    calibrated,
    scores,
)


def garch(factor: float) -> DayScores:
    """GARCH's losses: a multiple of the random walk's, wobbling against the model's (WOBBLE),
    so a model of the same factor differs from it by a mean of exactly zero."""
    return DayScores(NAIVE_PINBALL * factor - WOBBLE, NAIVE_ERRORS, NAIVE.violations)


def both(garch_factor: float) -> dict[str, DayScores]:
    return {"naive": NAIVE, "garch": garch(garch_factor)}


def test_the_model_serves_where_it_beats_both_and_is_calibrated() -> None:
    r = route(scores(0.90), both(0.95))
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
    assert route(scores(0.95), both(0.95)).method == "lstm"


def test_significantly_worse_than_garch_falls_back_to_garch() -> None:
    r = route(scores(0.95), both(0.85))
    assert r.method == "garch"
    assert "significantly worse than GARCH" in r.reason


def test_no_skill_over_the_random_walk_falls_back_to_the_better_baseline() -> None:
    assert route(scores(1.0), both(1.05)).method == "naive"
    assert route(scores(1.0), both(0.99)).method == "garch"
    assert "does not beat the random walk" in route(scores(1.0), both(1.05)).reason


def test_miscalibrated_bands_lose_the_ticker_even_with_a_better_pinball() -> None:
    r = route(scores(0.90, miscalibrated=0.5), both(0.95))
    assert r.method == "garch"
    assert "Kupiec (0.5)" in r.reason
    assert r.evidence.kupiec_pvalues["0.5"] is not None
    assert r.evidence.kupiec_pvalues["0.5"] < 0.01


def test_zero_loss_baselines_never_let_the_model_pass() -> None:
    """A series that never moves: the baselines' loss is 0, every ratio undefined."""
    flat = DayScores(np.zeros(N), np.zeros(N), {c: np.zeros(N, bool) for c in (0.5, 0.8, 0.9)})
    model = DayScores(np.full(N, 1e-6), np.zeros(N), {c: calibrated(c) for c in (0.5, 0.8, 0.9)})
    r = route(model, {"naive": flat, "garch": flat})
    assert r.method != "lstm"
    assert r.evidence.pinball_ratio_vs_naive is None
    assert r.evidence.pinball_ratio_vs_garch is None


def test_thresholds_come_from_the_config() -> None:
    model = scores(0.99)  # one-sided p about 1e-150 against the random walk
    assert route(model, both(1.0), GateConfig(dm_alpha=0.05)).method == "lstm"
    assert route(model, both(1.0), GateConfig(dm_alpha=1e-200)).method != "lstm"


def test_unseen_scope_and_length_checks() -> None:
    assert route(scores(0.9), both(0.95), scope="unseen").evidence.scope == "unseen"
    short = DayScores(NAIVE_PINBALL[:10], NAIVE_ERRORS[:10], {})
    with pytest.raises(ValueError, match="same days"):
        route(scores(0.9), {"naive": short, "garch": garch(0.95)})


def test_a_route_survives_the_bundle_json() -> None:
    r = route(scores(0.90, miscalibrated=0.5), both(0.95))
    again = Route.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r
    with pytest.raises(ValueError, match="not a route"):
        Route.from_dict({"method": "oracle", "evidence": {}})


def test_a_median_worse_than_persistence_loses_the_ticker() -> None:
    r = route(scores(0.90, error_factor=1.1), both(0.95))
    assert r.method == "garch"
    assert "worse than persistence" in r.reason


def test_every_comparator_counts_by_name_and_the_strongest_serves() -> None:
    """A third comparator needs no new field: the model must not be significantly worse than
    it either, the evidence names the strongest, and that one serves where the model fails."""
    third = DayScores(NAIVE_PINBALL * 0.85, NAIVE_ERRORS, NAIVE.violations)
    r = route(scores(0.95), {**both(0.97), "egarch": third})
    assert r.method == "egarch"
    assert "significantly worse than EGARCH" in r.reason
    assert r.evidence.strongest == "egarch"
    assert set(r.evidence.pinball_ratios) == {"naive", "garch", "egarch"}
    assert r.evidence.pinball_ratio_vs_strongest == pytest.approx(0.95 / 0.85, abs=0.01)
    assert set(r.evidence.p_model_worse) == {"garch", "egarch"}
    # Without it, the same model serves: its pinball is not significantly worse than GARCH's.
    assert route(scores(0.95), both(0.97)).method == "lstm"
    with pytest.raises(ValueError, match="needs the random walk"):
        route(scores(0.95), {"garch": garch(0.97)})


def test_evidence_from_a_bundle_before_comparators_by_name_still_reads() -> None:
    old = {"method": "garch", "reason": "r", "evidence": {
        "scope": "ticker", "days": 10, "pinball_ratio_vs_naive": 0.99,
        "pinball_ratio_vs_garch": 1.02, "p_model_not_better_than_naive": 0.2,
        "p_model_worse_than_garch": 0.04, "kupiec_pvalues": {"0.8": 0.5}}}  # fmt: skip
    e = Route.from_dict(old).evidence
    assert e.pinball_ratios == {"naive": 0.99, "garch": 1.02}
    assert e.p_model_worse_than_garch == 0.04
    assert e.to_dict()["pinball_ratio_vs_garch"] == 1.02
