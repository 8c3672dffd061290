"""Every branch of the promotion gate, on hand-made per-day scores (no MLflow, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.evaluation.gate import ChampionScores, DayScores, decide

N = 750
RNG = np.random.default_rng(0)
NAIVE_PINBALL = np.abs(RNG.normal(1.0, 0.3, N))
NAIVE_ERRORS = np.abs(RNG.normal(10.0, 5.0, N))
# Day-to-day wobble that sums to exactly zero over the N (even) days: a candidate built as a
# multiple of the naive losses plus this has exactly that multiple's mean, so each verdict
# follows from its construction (factor 1.0: a DM statistic of 0, p = 0.5), not from a seed.
WOBBLE = 0.02 * np.where(np.arange(N) % 2 == 0, 1.0, -1.0)


def calibrated(coverage: float, rate: float | None = None) -> np.ndarray:
    """Violation flags: exactly the nominal rate unless `rate` says otherwise."""
    hits = np.zeros(N, dtype=bool)
    hits[:: max(1, round(1 / (rate if rate is not None else 1 - coverage)))] = True
    return hits


def scores(
    pinball_factor: float = 0.93, error_factor: float = 1.0, miscalibrated: float | None = None
) -> DayScores:
    violations = {c: calibrated(c) for c in (0.5, 0.8, 0.9)}
    if miscalibrated is not None:
        violations[miscalibrated] = calibrated(miscalibrated, rate=(1 - miscalibrated) * 2)
    return DayScores(
        pinball=NAIVE_PINBALL * pinball_factor + WOBBLE,
        abs_error=NAIVE_ERRORS * error_factor + WOBBLE,
        violations=violations,
    )


NAIVE = DayScores(NAIVE_PINBALL, NAIVE_ERRORS, {c: calibrated(c) for c in (0.5, 0.8, 0.9)})


def by_name(decision) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    return {c.name: c.passed for c in decision.criteria}


def test_a_first_model_that_earns_it_is_promoted() -> None:
    decision = decide(scores(), NAIVE, None)
    assert decision.promoted
    assert all(by_name(decision).values())
    assert decision.reason.startswith("promoted: ")


def test_no_significant_pinball_gain_over_naive_is_refused() -> None:
    decision = decide(scores(pinball_factor=1.0), NAIVE, None)
    assert "0.00, one-sided p 0.5 " in decision.criteria[0].detail  # DM 0 by construction
    assert not decision.promoted
    assert by_name(decision) == {
        "pinball_beats_naive": False,
        "point_not_worse_than_persistence": True,
        "intervals_calibrated": True,
        "beats_champion": True,
    }
    assert "pinball_beats_naive failed" in decision.reason


def test_a_point_forecast_significantly_worse_than_persistence_is_refused() -> None:
    decision = decide(scores(error_factor=1.05), NAIVE, None)
    assert not decision.promoted
    assert by_name(decision)["point_not_worse_than_persistence"] is False


def test_identical_point_errors_are_not_worse() -> None:
    candidate = scores()
    same = DayScores(candidate.pinball, NAIVE.abs_error, candidate.violations)
    assert by_name(decide(same, NAIVE, None))["point_not_worse_than_persistence"]


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9])
def test_any_miscalibrated_interval_is_refused(level: float) -> None:
    decision = decide(scores(miscalibrated=level), NAIVE, None)
    assert not decision.promoted
    assert by_name(decision)["intervals_calibrated"] is False
    assert f"{level:.0%}" in decision.reason


def test_the_champion_must_be_beaten_on_the_same_days() -> None:
    candidate = scores()
    worse_champion = ChampionScores("3", champion_pinball=candidate.pinball * 1.01,
                                    candidate_pinball=candidate.pinball)  # fmt: skip
    better_champion = ChampionScores("3", champion_pinball=candidate.pinball * 0.99,
                                     candidate_pinball=candidate.pinball)  # fmt: skip
    assert decide(candidate, NAIVE, worse_champion).promoted
    kept = decide(candidate, NAIVE, better_champion)
    assert not kept.promoted
    assert "champion v3" in kept.reason


def test_an_unscorable_champion_is_kept_unless_forced() -> None:
    broken = ChampionScores("2", error="its artifacts are gone")
    kept = decide(scores(), NAIVE, broken)
    assert not kept.promoted
    assert "could not be scored (its artifacts are gone)" in kept.reason
    assert "--force replaces it" in kept.reason
    forced = decide(scores(), NAIVE, broken, force=True)
    assert forced.promoted
    assert "replaced because of --force" in forced.reason


def test_scores_on_different_days_are_an_error() -> None:
    short = DayScores(NAIVE_PINBALL[:-1], NAIVE_ERRORS[:-1], {})
    with pytest.raises(ValueError, match="same days"):
        decide(short, NAIVE, None)


@pytest.mark.filterwarnings("error")  # no numpy warning may reach a user
def test_a_baseline_that_never_errs_passes_no_ratio_criterion() -> None:
    """A constant-price series: persistence is exact every day. Before, the MAE ratio was inf
    and point_not_worse_than_persistence passed (identical constant errors give no DM p)."""
    flat = DayScores(np.zeros(N), np.zeros(N), {c: calibrated(c) for c in (0.5, 0.8, 0.9)})
    constant_miss = DayScores(np.full(N, 0.01), np.full(N, 0.5), flat.violations)
    decision = decide(constant_miss, flat, None)
    passed = by_name(decision)
    assert passed["pinball_beats_naive"] is False
    assert passed["point_not_worse_than_persistence"] is False
    assert decision.promoted is False
    assert "MAE ratio vs naive inf" in decision.reason
    assert "the baseline never erred, so there is nothing to compare" in decision.reason
    # Neither errs at all: the ratios are nan, and still nothing passes on them.
    both = by_name(decide(flat, flat, None))
    assert both["pinball_beats_naive"] is False
    assert both["point_not_worse_than_persistence"] is False
