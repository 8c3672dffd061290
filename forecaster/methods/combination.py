"""A combination of classic forecasters: the weighted average of their quantiles, level by
level, with weights chosen on validation days.

Quantile averaging keeps quantiles ordered (a positive combination of increasing rows is
increasing) and is the combination that forecast-combination studies find hard to beat. The
weights minimise the pooled pinball loss on the validation days over the simplex, exactly: the
problem is a linear programme (`combination_weights`). Each member keeps its own parameters per
ticker (stored under "member.key"), so serving the combination is its members' paths, weighted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forecaster.methods.base import Bars, Fit, Method, Params

# Weights below this are dropped (and the rest renormalised): a member that adds nothing
# costs a fit and a path on every request for a digit in the tenth decimal.
_NEGLIGIBLE = 1e-4


def combination_weights(
    forecasts: Mapping[str, np.ndarray], y: np.ndarray, levels: Sequence[float]
) -> dict[str, float]:
    """Non-negative weights summing to one that minimise the mean pinball loss of the
    weighted average of (n, n_levels) quantile forecasts against the outcomes y.

    The linear programme: min sum_{i,l} tau_l u_il + (1 - tau_l) v_il subject to
    y_i - sum_m w_m q_mil = u_il - v_il, u, v >= 0, sum w = 1, w >= 0 (HiGHS). Days where a
    member has no finite forecast are left out."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity

    names = list(forecasts)
    q = np.stack([np.asarray(forecasts[m], dtype=np.float64) for m in names])  # (M, n, L)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(q).all(axis=(0, 2)) & np.isfinite(y)
    q, y = q[:, keep], y[keep]
    tau = np.asarray(levels, dtype=np.float64)
    n_members, n, n_levels = q.shape
    if n == 0:
        raise ValueError("no validation days with every member's forecast to weigh them on")
    rows = n * n_levels
    members = csr_matrix(q.reshape(n_members, rows).T)  # (rows, M)
    eye = identity(rows, format="csr")
    equality = hstack([members, eye, -eye], format="csr")  # q w + u - v = y
    simplex = csr_matrix(np.concatenate([np.ones(n_members), np.zeros(2 * rows)])[None, :])
    cost = np.concatenate([np.zeros(n_members), np.tile(tau, n), np.tile(1.0 - tau, n)]) / n
    result = linprog(cost, A_eq=_stack(equality, simplex),
                     b_eq=np.concatenate([np.repeat(y, n_levels), [1.0]]),
                     bounds=(0, None), method="highs")  # fmt: skip
    if not result.success:
        raise ValueError(f"the combination's weights did not solve: {result.message}")
    weights = np.clip(result.x[:n_members], 0.0, None)
    weights[weights < _NEGLIGIBLE] = 0.0
    weights /= weights.sum()
    return {name: float(w) for name, w in zip(names, weights, strict=True) if w > 0}


def _stack(*blocks: Any) -> Any:
    from scipy.sparse import vstack

    return vstack(blocks, format="csr")


class Combination(Method):
    """The weighted average of member methods' quantiles (members built by the registry)."""

    name = "combination"
    description = "a combination of the classic forecasters"
    label = "the combination of classic forecasters"
    combines = True

    def __init__(self, weights: Mapping[str, float], members: Mapping[str, Method]) -> None:
        if not weights or set(weights) - set(members):
            raise ValueError(f"a combination needs weights over its members: {dict(weights)}")
        self.weights = {str(k): float(v) for k, v in weights.items()}
        self.members = {name: members[name] for name in self.weights}
        self.min_returns = max(m.min_returns for m in self.members.values())  # type: ignore[misc]
        self.earliest = max(m.earliest for m in self.members.values())  # type: ignore[misc]
        self.fit_min_returns = max(m.fit_min_returns for m in self.members.values())  # type: ignore[misc]

    def settings(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "members": {name: m.settings() for name, m in self.members.items()},
        }

    @staticmethod
    def merge(params: Mapping[str, Params]) -> dict[str, float]:
        """Members' parameters as one mapping, "member.key" (how the bundle stores them)."""
        return {f"{m}.{k}": float(v) for m, p in params.items() for k, v in p.items()}

    def _split(self, params: Params) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {name: {} for name in self.members}
        for key, value in params.items():
            member, _, inner = key.partition(".")
            if member in out:
                out[member][inner] = value
        return out

    def fit(self, bars: Bars, levels: Sequence[float]) -> Fit:
        fits = {name: m.fit(bars, levels) for name, m in self.members.items()}
        problems = [f"{name}: {f.problem}" for name, f in fits.items() if f.problem is not None]
        return Fit(self.merge({n: f.params for n, f in fits.items()}),
                   "; ".join(problems) or None)  # fmt: skip

    def path(self, bars: Bars, params: Params, levels: Sequence[float], first: int) -> np.ndarray:
        split = self._split(params)
        out = np.zeros((len(bars) - first, len(levels)))
        for name, member in self.members.items():
            out += self.weights[name] * member.path(bars, split[name], levels, first)
        return out
