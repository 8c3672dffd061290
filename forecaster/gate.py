"""The promotion gate as a pure function of scores: no MLflow, no training, no IO.

The registry only applies what `decide` returns, so every branch is tested with hand-made
arrays in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from forecaster.scores import diebold_mariano, kupiec_pvalue


@dataclass(frozen=True)
class DayScores:
    """One forecaster's per-day losses on the evaluation days."""

    pinball: np.ndarray  # mean pinball loss over the quantile levels
    abs_error: np.ndarray  # |median price forecast - realised close|
    violations: Mapping[float, np.ndarray]  # per served interval: realised value outside it


@dataclass(frozen=True)
class ChampionScores:
    """The current champion re-scored on the candidate's days, or why it could not be.

    Both pinball arrays cover the quantile levels the two models share, so models trained with
    different levels are compared on equal terms.
    """

    version: str
    champion_pinball: np.ndarray | None = None
    candidate_pinball: np.ndarray | None = None
    error: str | None = None


@dataclass(frozen=True)
class GateConfig:
    dm_alpha: float = 0.05
    kupiec_alpha: float = 0.01


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    promoted: bool
    criteria: tuple[Criterion, ...]
    reason: str


def _fmt(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def decide(
    candidate: DayScores,
    naive: DayScores,
    champion: ChampionScores | None,
    config: GateConfig = GateConfig(),
    *,
    force: bool = False,
) -> Decision:
    """Promote only when every criterion passes:

    1. pinball beats naive: one-sided Diebold-Mariano p < dm_alpha;
    2. point not worse than persistence: one-sided DM p (worse) >= dm_alpha;
    3. every served interval passes Kupiec's test at kupiec_alpha;
    4. pinball below the champion's on the same days (no champion: passes). A champion that
       cannot be scored fails this, and is replaced only with `force`.
    """
    n = len(candidate.pinball)
    if len(naive.pinball) != n or len(candidate.abs_error) != n or len(naive.abs_error) != n:
        raise ValueError("candidate and naive scores must cover the same days")
    criteria = []

    stat, p_better, _ = diebold_mariano(candidate.pinball, naive.pinball)
    ratio = float(np.mean(candidate.pinball) / np.mean(naive.pinball))
    criteria.append(
        Criterion(
            "pinball_beats_naive",
            p_better < config.dm_alpha,
            f"pinball ratio vs naive {ratio:.4f}, DM {stat:+.2f}, one-sided p {_fmt(p_better)} "
            f"(needs < {config.dm_alpha})",
        )
    )

    stat, _, p_worse = diebold_mariano(candidate.abs_error, naive.abs_error)
    mae_ratio = float(np.mean(candidate.abs_error) / np.mean(naive.abs_error))
    # A NaN p (identical errors) cannot show the point forecast is worse.
    not_worse = math.isnan(p_worse) or p_worse >= config.dm_alpha
    criteria.append(
        Criterion(
            "point_not_worse_than_persistence",
            not_worse,
            f"MAE ratio vs naive {mae_ratio:.4f}, one-sided p(worse) {_fmt(p_worse)} "
            f"(needs >= {config.dm_alpha})",
        )
    )

    failing = []
    parts = []
    for coverage, hits in sorted(candidate.violations.items()):
        p = kupiec_pvalue(hits, coverage)
        parts.append(f"{coverage:.0%}: coverage {1 - hits.mean():.3f}, p {_fmt(p)}")
        if not p >= config.kupiec_alpha:
            failing.append(f"{coverage:.0%}")
    criteria.append(
        Criterion(
            "intervals_calibrated",
            not failing and bool(parts),
            "Kupiec " + "; ".join(parts) + f" (each needs p >= {config.kupiec_alpha})",
        )
    )

    if champion is None:
        criteria.append(Criterion("beats_champion", True, "no champion yet"))
    elif champion.error is not None or champion.champion_pinball is None:
        why = champion.error or "no scores"
        criteria.append(
            Criterion(
                "beats_champion",
                force,
                f"champion v{champion.version} could not be scored ({why}); "
                + ("replaced because of --force" if force else "kept; --force replaces it"),
            )
        )
    else:
        ours = champion.candidate_pinball
        if ours is None or len(ours) != len(champion.champion_pinball):
            raise ValueError("champion scores need the candidate's pinball on the same days")
        mine, theirs = float(np.mean(ours)), float(np.mean(champion.champion_pinball))
        criteria.append(
            Criterion(
                "beats_champion",
                mine < theirs,
                f"pinball {mine:.6g} vs champion v{champion.version}'s {theirs:.6g} on the same "
                f"{len(champion.champion_pinball)} days",
            )
        )

    promoted = all(c.passed for c in criteria)
    failed = [c for c in criteria if not c.passed]
    if promoted:
        reason = "promoted: " + "; ".join(c.detail for c in criteria)
    else:
        reason = "not promoted: " + "; ".join(f"{c.name} failed ({c.detail})" for c in failed)
    return Decision(promoted=promoted, criteria=tuple(criteria), reason=reason)
