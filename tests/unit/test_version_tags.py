"""The registry tags of a version: written once at registration, read by the retraining
pipeline, the service and the monitor through one module."""

from __future__ import annotations

from datetime import date

import pandas as pd

from forecaster.registry import version_tags
from forecaster.registry.version_tags import VersionTags

TAGS = VersionTags(
    tickers=("^GSPC", "AAPL"),
    data_range=(date(2010, 1, 4), date(2018, 12, 31)),
    test_range=(date(2017, 9, 1), date(2018, 12, 31)),
    test_mae=12.3456789,
    naive_mae=12.5,
    mae_ratio_vs_naive=0.98765432,
    test_pinball=0.0012345678,
    pinball_ratio_vs_naive=0.93,
    pinball_ratio_vs_garch=None,  # GARCH scored 0: no ratio
    run_id="abc",
)


def test_tags_as_mlflow_stores_them() -> None:
    assert TAGS.to_tags() == {
        "tickers": "^GSPC,AAPL",
        "data_range": "2010-01-04..2018-12-31",
        "test_range": "2017-09-01..2018-12-31",
        "test_mae": "12.345679",
        "naive_mae": "12.500000",
        "mae_ratio_vs_naive": "0.987654",
        "test_pinball": "0.00123457",
        "pinball_ratio_vs_naive": "0.930000",
        "pinball_ratio_vs_garch": "n/a",
        "run_id": "abc",
    }


def test_readers_get_back_what_was_written() -> None:
    tags = TAGS.to_tags()
    assert version_tags.trained_on(tags) == version_tags.tickers_tag(["^GSPC", "AAPL"])
    assert version_tags.data_end(tags) == pd.Timestamp("2018-12-31")
    assert version_tags.data_range(tags) == "2010-01-04..2018-12-31"
    assert version_tags.reported_scores(tags) == {
        "test_model_mae": 12.345679,
        "test_naive_mae": 12.5,
        "test_mae_ratio_vs_naive": 0.987654,
        "test_model_pinball": 0.00123457,
        "test_pinball_ratio_vs_naive": 0.93,
    }  # "n/a" left out
    assert version_tags.data_end({}) is None
    assert version_tags.data_end({"data_range": "garbage"}) is None


def test_the_monitor_tags_sit_beside_them_under_their_prefix() -> None:
    live = version_tags.live_tags({"pinball": 0.00123456789, "resolved": 60.0}, "2024-01-02")
    assert live == {"live_pinball": "0.00123457", "live_resolved": "60",
                    "live_updated": "2024-01-02"}  # fmt: skip
