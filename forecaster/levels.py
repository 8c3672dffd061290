"""Quantile levels: the one place that finds a level, the median or an interval's two columns
among a model's levels.

Levels travel as floats through YAML, JSON bundles and MLflow tags, so 0.1 may come back as
0.1000000000000001; they are matched within TOLERANCE here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

TOLERANCE = 1e-9


def find(levels: Sequence[float], level: float) -> int | None:
    """Position of `level` among `levels`, or None."""
    for i, candidate in enumerate(levels):
        if abs(float(candidate) - level) < TOLERANCE:
            return i
    return None


def has(levels: Sequence[float], level: float) -> bool:
    return find(levels, level) is not None


def interval_tails(coverage: float) -> tuple[float, float]:
    """The levels bounding a central interval: 0.8 -> (0.1, 0.9)."""
    tail = round((1.0 - coverage) / 2.0, 9)
    return tail, round(1.0 - tail, 9)


def median_index(levels: Sequence[float]) -> int:
    found = find(levels, 0.5)
    if found is None:
        raise ValueError(f"levels {[float(t) for t in levels]} have no median 0.5")
    return found


def interval_columns(levels: Sequence[float], coverage: float) -> tuple[int, int]:
    """Positions of the central interval's lower and upper quantile among `levels`."""
    tail, top = interval_tails(coverage)
    lo, hi = find(levels, tail), find(levels, top)
    if lo is None or hi is None:
        raise ValueError(
            f"a {coverage:.0%} interval needs the levels {tail:g} and {top:g}; "
            f"levels are {[float(t) for t in levels]}"
        )
    return lo, hi


def symmetric_pairs(levels: Sequence[float]) -> list[tuple[int, int]]:
    """(lower, upper) positions of every level below the median whose mirror is present."""
    pairs = []
    for i, level in enumerate(levels):
        mirror = find(levels, 1.0 - float(level))
        if float(level) < 0.5 and mirror is not None:
            pairs.append((i, mirror))
    return pairs


def shared(ours: Sequence[float], theirs: Sequence[float]) -> tuple[list[int], list[int]]:
    """Positions in each of the levels both have, in `ours`'s order."""
    pairs = [(i, find(theirs, float(level))) for i, level in enumerate(ours)]
    matched = [(i, j) for i, j in pairs if j is not None]
    return [i for i, _ in matched], [j for _, j in matched]
