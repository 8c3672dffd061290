"""The tags a registered model version carries: the one place their names and formats live.

Training writes them when it registers a version (what data it saw, how it scored on its test
days); the retraining pipeline reads them back to skip unchanged data, the service reports
them in `/v1/model`, and the monitor adds its `live_*` figures beside them. The MLflow UI
shows them on the version's page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import pandas as pd

LIVE_PREFIX = "live_"  # the monitor's tags: live_<figure>, and live_updated
LIVE_UPDATED = "live_updated"
NOT_AVAILABLE = "n/a"  # a ratio whose baseline scored 0 (prices that never move)

# Test-day scores: tag -> the name /v1/model reports it under.
SCORE_TAGS = {
    "test_mae": "test_model_mae",
    "naive_mae": "test_naive_mae",
    "mae_ratio_vs_naive": "test_mae_ratio_vs_naive",
    "test_pinball": "test_model_pinball",
    "pinball_ratio_vs_naive": "test_pinball_ratio_vs_naive",
    "pinball_ratio_vs_garch": "test_pinball_ratio_vs_garch",
}


def _day_range(first: date, last: date) -> str:
    return f"{first}..{last}"


def _ratio(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.6f}"


@dataclass(frozen=True)
class VersionTags:
    """What a version saw and how it scored, as written at registration."""

    tickers: tuple[str, ...]
    data_range: tuple[date, date]  # first and last trading day of the training data
    test_range: tuple[date, date]  # first and last test target day
    test_mae: float
    naive_mae: float
    mae_ratio_vs_naive: float | None
    test_pinball: float
    pinball_ratio_vs_naive: float | None
    pinball_ratio_vs_garch: float | None
    run_id: str

    def to_tags(self) -> dict[str, str]:
        return {
            "tickers": tickers_tag(self.tickers),
            "data_range": _day_range(*self.data_range),
            "test_range": _day_range(*self.test_range),
            "test_mae": f"{self.test_mae:.6f}",
            "naive_mae": f"{self.naive_mae:.6f}",
            "mae_ratio_vs_naive": _ratio(self.mae_ratio_vs_naive),
            "test_pinball": f"{self.test_pinball:.8f}",
            "pinball_ratio_vs_naive": _ratio(self.pinball_ratio_vs_naive),
            "pinball_ratio_vs_garch": _ratio(self.pinball_ratio_vs_garch),
            "run_id": self.run_id,
        }


def tickers_tag(tickers: tuple[str, ...] | list[str]) -> str:
    """The universe as the `tickers` tag spells it (comma-joined, in training order)."""
    return ",".join(tickers)


def trained_on(tags: Mapping[str, str]) -> str | None:
    """A version's `tickers` tag (None: registered without one)."""
    return tags.get("tickers")


def data_range(tags: Mapping[str, str]) -> str | None:
    return tags.get("data_range")


def test_range(tags: Mapping[str, str]) -> str | None:
    return tags.get("test_range")


def data_end(tags: Mapping[str, str]) -> pd.Timestamp | None:
    """The last trading day a version was trained on (None: no or malformed `data_range`)."""
    found = data_range(tags) or ""
    return pd.Timestamp(found.split("..")[1]) if ".." in found else None


def reported_scores(tags: Mapping[str, str]) -> dict[str, float]:
    """The test-day scores a version was registered with, under their reported names; a tag
    that is missing or "n/a" is left out."""
    out = {}
    for tag, name in SCORE_TAGS.items():
        try:
            out[name] = float(tags[tag])
        except (KeyError, ValueError):
            continue
    return out


def live_tags(figures: Mapping[str, float], updated: str) -> dict[str, str]:
    """The monitor's figures for a version, as tags beside the registration ones."""
    tags = {f"{LIVE_PREFIX}{k}": f"{v:.6g}" for k, v in figures.items()}
    tags[LIVE_UPDATED] = updated
    return tags
