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


def _mean_ratio(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Mean loss ratio, without numpy's divide-by-zero warning: inf when the baseline never
    errs and we do, nan when neither errs (a series that never moves)."""
    mine, base = float(np.mean(ours)), float(np.mean(theirs))
    if base > 0:
        return mine / base
    return math.inf if mine > 0 else math.nan


_NOTHING_TO_COMPARE = "; the baseline never erred, so there is nothing to compare"


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

    # No criterion passes on a ratio that is not finite.
    stat, p_better, _ = diebold_mariano(candidate.pinball, naive.pinball)
    ratio = _mean_ratio(candidate.pinball, naive.pinball)
    criteria.append(
        Criterion(
            "pinball_beats_naive",
            math.isfinite(ratio) and p_better < config.dm_alpha,
            f"pinball ratio vs naive {ratio:.4f}, DM {stat:+.2f}, one-sided p {_fmt(p_better)} "
            f"(needs < {config.dm_alpha})" + ("" if math.isfinite(ratio) else _NOTHING_TO_COMPARE),
        )
    )

    stat, _, p_worse = diebold_mariano(candidate.abs_error, naive.abs_error)
    mae_ratio = _mean_ratio(candidate.abs_error, naive.abs_error)
    # A NaN p (identical errors) cannot show the point forecast is worse.
    not_worse = math.isfinite(mae_ratio) and (math.isnan(p_worse) or p_worse >= config.dm_alpha)
    criteria.append(
        Criterion(
            "point_not_worse_than_persistence",
            not_worse,
            f"MAE ratio vs naive {mae_ratio:.4f}, one-sided p(worse) {_fmt(p_worse)} "
            f"(needs >= {config.dm_alpha})"
            + ("" if math.isfinite(mae_ratio) else _NOTHING_TO_COMPARE),
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


# --- per-ticker routing: which forecaster serves each ticker ---------------------------------

LSTM, GARCH_METHOD, NAIVE_METHOD = "lstm", "garch", "naive"
METHODS = (LSTM, GARCH_METHOD, NAIVE_METHOD)
TICKER_SCOPE, UNSEEN_SCOPE = "ticker", "unseen"


def _none_if_nan(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _ratio(ours: np.ndarray, theirs: np.ndarray) -> float | None:
    """Mean loss ratio; None when the baseline's loss is zero or either is not finite (a
    series that never moves has nothing to compare)."""
    mine, base = float(np.mean(ours)), float(np.mean(theirs))
    return mine / base if base > 0 and math.isfinite(mine) and math.isfinite(base) else None


@dataclass(frozen=True)
class Evidence:
    """What a served method rests on: the model against both baselines on the same days."""

    scope: str  # "ticker": the ticker's own test days; "unseen": tickers held out of training
    days: int
    pinball_ratio_vs_naive: float | None
    pinball_ratio_vs_garch: float | None
    p_model_not_better_than_naive: float | None  # one-sided Diebold-Mariano
    p_model_worse_than_garch: float | None  # one-sided Diebold-Mariano
    kupiec_pvalues: Mapping[str, float | None]  # the model's bands, by interval level


@dataclass(frozen=True)
class Route:
    """The method that serves a ticker, why, and the evidence."""

    method: str  # one of METHODS
    reason: str
    evidence: Evidence

    def to_dict(self) -> dict[str, object]:
        e = self.evidence
        return {
            "method": self.method,
            "reason": self.reason,
            "evidence": {
                "scope": e.scope,
                "days": e.days,
                "pinball_ratio_vs_naive": e.pinball_ratio_vs_naive,
                "pinball_ratio_vs_garch": e.pinball_ratio_vs_garch,
                "p_model_not_better_than_naive": e.p_model_not_better_than_naive,
                "p_model_worse_than_garch": e.p_model_worse_than_garch,
                "kupiec_pvalues": dict(e.kupiec_pvalues),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Route:
        e = data.get("evidence")
        if not isinstance(e, Mapping) or data.get("method") not in METHODS:
            raise ValueError(f"not a route: {data!r:.200}")

        def num(key: str) -> float | None:
            value = e.get(key)
            return None if value is None else float(value)

        return cls(
            method=str(data["method"]),
            reason=str(data.get("reason", "")),
            evidence=Evidence(
                scope=str(e["scope"]),
                days=int(e["days"]),
                pinball_ratio_vs_naive=num("pinball_ratio_vs_naive"),
                pinball_ratio_vs_garch=num("pinball_ratio_vs_garch"),
                p_model_not_better_than_naive=num("p_model_not_better_than_naive"),
                p_model_worse_than_garch=num("p_model_worse_than_garch"),
                kupiec_pvalues={
                    str(k): None if v is None else float(v)
                    for k, v in (e.get("kupiec_pvalues") or {}).items()
                },
            ),
        )


def route(
    model: DayScores,
    naive: DayScores,
    garch: DayScores,
    config: GateConfig = GateConfig(),
    scope: str = TICKER_SCOPE,
) -> Route:
    """Which forecaster serves a ticker, from scores on the same days (its own test days, or
    held-out tickers' for the unseen). The model serves only where it earned it:

    1. its pinball beats the empirical random walk: one-sided DM p < dm_alpha;
    2. it is not significantly worse than GARCH: one-sided DM p (worse) >= dm_alpha;
    3. every served interval passes Kupiec's test at kupiec_alpha;
    4. its median is not significantly worse than naive persistence (one-sided DM on absolute
       errors, p >= dm_alpha): the point forecast must never be significantly worse.

    Elsewhere the baseline with the lower mean pinball on those days serves.
    """
    n = len(model.pinball)
    if len(naive.pinball) != n or len(garch.pinball) != n:
        raise ValueError("model, naive and garch scores must cover the same days")
    _, p_better, _ = diebold_mariano(model.pinball, naive.pinball)
    _, _, p_worse = diebold_mariano(model.pinball, garch.pinball)
    vs_naive, vs_garch = _ratio(model.pinball, naive.pinball), _ratio(model.pinball, garch.pinball)
    kupiec = {
        f"{c:g}": _none_if_nan(kupiec_pvalue(hits, c))
        for c, hits in sorted(model.violations.items())
    }
    evidence = Evidence(scope, n, vs_naive, vs_garch, _none_if_nan(p_better),
                        _none_if_nan(p_worse), kupiec)  # fmt: skip
    failed = []
    if vs_naive is None or not p_better < config.dm_alpha:
        failed.append(f"the model does not beat the random walk (DM p {_fmt(p_better)})")
    if vs_garch is None or p_worse < config.dm_alpha:
        failed.append(f"the model is significantly worse than GARCH (DM p {_fmt(p_worse)})")
    _, _, p_point_worse = diebold_mariano(model.abs_error, naive.abs_error)
    if p_point_worse < config.dm_alpha:  # NaN (identical errors) cannot show it is worse
        failed.append(
            "the model's median is significantly worse than persistence "
            f"(DM p {_fmt(p_point_worse)})"
        )
    bad_bands = [k for k, p in kupiec.items() if p is None or not p >= config.kupiec_alpha]
    if bad_bands or not kupiec:
        failed.append(f"the model's bands fail Kupiec ({', '.join(bad_bands) or 'none scored'})")
    if not failed:
        return Route(LSTM, f"the model earned it on {n} {scope} days", evidence)
    garch_mean, naive_mean = float(np.mean(garch.pinball)), float(np.mean(naive.pinball))
    best = GARCH_METHOD if garch_mean < naive_mean else NAIVE_METHOD
    return Route(best, f"{'; '.join(failed)}; {best} had the lower pinball", evidence)
