"""The promotion gate as a pure function of scores: no MLflow, no training, no IO.

The registry only applies what `decide` returns, so every branch is tested with hand-made
arrays in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from forecaster.evaluation.scores import diebold_mariano, kupiec_pvalue, lowest
from forecaster.methods import CLASSIC, NETWORK, Garch, RandomWalk, names


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

TICKER_SCOPE, UNSEEN_SCOPE = "ticker", "unseen"
RANDOM_WALK = RandomWalk.name  # the comparator the model must significantly beat


def _none_if_nan(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _ratio(ours: np.ndarray, theirs: np.ndarray) -> float | None:
    """Mean loss ratio; None when the baseline's loss is zero or either is not finite (a
    series that never moves has nothing to compare)."""
    mine, base = float(np.mean(ours)), float(np.mean(theirs))
    return mine / base if base > 0 and math.isfinite(mine) and math.isfinite(base) else None


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Evidence:
    """What a served method rests on: the model against every comparator on the same days,
    each by its method name (forecaster.methods)."""

    scope: str  # "ticker": the ticker's own test days; "unseen": tickers held out of training
    days: int
    pinball_ratios: Mapping[str, float | None]  # the model's mean pinball over each comparator's
    p_model_worse: Mapping[str, float | None]  # one-sided DM p that the model is worse than each
    p_model_not_better_than_naive: float | None  # one-sided Diebold-Mariano vs the random walk
    kupiec_pvalues: Mapping[str, float | None]  # the model's bands, by interval level
    strongest: str | None = None  # the comparator with the lowest mean pinball on these days

    @property
    def pinball_ratio_vs_naive(self) -> float | None:
        return self.pinball_ratios.get(RANDOM_WALK)

    @property
    def pinball_ratio_vs_garch(self) -> float | None:
        return self.pinball_ratios.get(Garch.name)

    @property
    def p_model_worse_than_garch(self) -> float | None:
        return self.p_model_worse.get(Garch.name)

    @property
    def pinball_ratio_vs_strongest(self) -> float | None:
        return None if self.strongest is None else self.pinball_ratios.get(self.strongest)

    def to_dict(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "days": self.days,
            # The two-baseline keys every bundle since routing has, kept for their readers.
            "pinball_ratio_vs_naive": self.pinball_ratio_vs_naive,
            "pinball_ratio_vs_garch": self.pinball_ratio_vs_garch,
            "p_model_not_better_than_naive": self.p_model_not_better_than_naive,
            "p_model_worse_than_garch": self.p_model_worse_than_garch,
            "kupiec_pvalues": dict(self.kupiec_pvalues),
            "pinball_ratios": dict(self.pinball_ratios),
            "p_model_worse": dict(self.p_model_worse),
            "strongest": self.strongest,
        }

    @classmethod
    def from_dict(cls, e: Mapping[str, object]) -> Evidence:
        ratios = e.get("pinball_ratios")
        worse = e.get("p_model_worse")
        if not isinstance(ratios, Mapping):  # a bundle from before comparators were by name
            ratios = {RANDOM_WALK: e.get("pinball_ratio_vs_naive"),
                      Garch.name: e.get("pinball_ratio_vs_garch")}  # fmt: skip
            worse = {Garch.name: e.get("p_model_worse_than_garch")}
        kupiec = e.get("kupiec_pvalues")
        strongest = e.get("strongest")
        return cls(
            scope=str(e["scope"]),
            days=int(e["days"]),  # type: ignore[call-overload]
            pinball_ratios={str(k): _num(v) for k, v in ratios.items()},
            p_model_worse={
                str(k): _num(v) for k, v in (worse if isinstance(worse, Mapping) else {}).items()
            },
            p_model_not_better_than_naive=_num(e.get("p_model_not_better_than_naive")),
            kupiec_pvalues={
                str(k): _num(v) for k, v in (kupiec if isinstance(kupiec, Mapping) else {}).items()
            },
            strongest=None if strongest is None else str(strongest),
        )


NO_EVIDENCE = Evidence(UNSEEN_SCOPE, 0, {}, {}, None, {})


@dataclass(frozen=True)
class Route:
    """The method that serves a ticker, why, and the evidence."""

    method: str  # one of forecaster.methods.names()
    reason: str
    evidence: Evidence

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "reason": self.reason, "evidence": self.evidence.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Route:
        e = data.get("evidence")
        if not isinstance(e, Mapping) or data.get("method") not in names():
            raise ValueError(f"not a route: {data!r:.200}")
        return cls(str(data["method"]), str(data.get("reason", "")), Evidence.from_dict(e))


def route(
    model: DayScores,
    comparators: Mapping[str, DayScores],
    config: GateConfig = GateConfig(),
    scope: str = TICKER_SCOPE,
) -> Route:
    """Which forecaster serves a ticker, from scores on the same days (its own test days, or
    held-out tickers' for the unseen); `comparators` maps each classic method's name to its
    scores and must hold the random walk. The model serves only where it earned it:

    1. its pinball beats the empirical random walk: one-sided DM p < dm_alpha;
    2. it is not significantly worse than any comparator: one-sided DM p (worse) >= dm_alpha;
    3. every served interval passes Kupiec's test at kupiec_alpha;
    4. its median is not significantly worse than naive persistence (one-sided DM on absolute
       errors, p >= dm_alpha): the point forecast must never be significantly worse.

    Elsewhere the comparator with the lowest mean pinball on those days serves.
    """
    n = len(model.pinball)
    if RANDOM_WALK not in comparators:
        raise ValueError(f"routing needs the random walk ({RANDOM_WALK!r}) among the comparators")
    if any(len(c.pinball) != n for c in comparators.values()):
        raise ValueError("the model's and every comparator's scores must cover the same days")
    naive = comparators[RANDOM_WALK]
    _, p_better, _ = diebold_mariano(model.pinball, naive.pinball)
    ratios = {name: _ratio(model.pinball, c.pinball) for name, c in comparators.items()}
    p_worse = {
        name: _none_if_nan(diebold_mariano(model.pinball, c.pinball)[2])
        for name, c in comparators.items()
        if name != RANDOM_WALK
    }
    means = {name: float(np.mean(c.pinball)) for name, c in comparators.items()}
    strongest = lowest(means)
    kupiec = {
        f"{c:g}": _none_if_nan(kupiec_pvalue(hits, c))
        for c, hits in sorted(model.violations.items())
    }
    evidence = Evidence(scope, n, ratios, p_worse, _none_if_nan(p_better), kupiec, strongest)
    failed = []
    if ratios[RANDOM_WALK] is None or not p_better < config.dm_alpha:
        failed.append(f"the model does not beat the random walk (DM p {_fmt(p_better)})")
    for name, p in p_worse.items():
        if ratios[name] is None or (p is not None and p < config.dm_alpha):
            label = CLASSIC[name].label if name in CLASSIC else name
            shown = _fmt(math.nan if p is None else p)
            failed.append(f"the model is significantly worse than {label} (DM p {shown})")
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
        return Route(NETWORK, f"the model earned it on {n} {scope} days", evidence)
    best = strongest or RANDOM_WALK
    return Route(best, f"{'; '.join(failed)}; {best} had the lower pinball", evidence)
