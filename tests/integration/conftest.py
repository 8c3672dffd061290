"""A tiny but real training setup: bundled data slice, small LSTM, temporary SQLite MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.config import ForecasterConfig, load_config

TINY = [
    "data.tickers=[^GSPC]",
    "data.start=2014-01-01",
    "windows.lookback=10",
    "features.volume_window=10",
    "features.volatility_window=10",
    "model.hidden_size=8",
    "model.num_layers=1",
    "training.max_epochs=3",
    "training.patience=2",
    "training.batch_size=128",
    "model.ensemble_size=1",
    # The network serves every ticker: tests that need a routing table set one by hand.
    "evaluation.route_per_ticker=false",
]


def tiny_config(data_dir: Path, *extra: str) -> ForecasterConfig:
    return load_config(
        None,
        [*TINY, *extra],
        values={
            "data.data_dir": str(data_dir),
            "tracking.tracking_uri": f"sqlite:///{data_dir / 'mlflow.db'}",
        },
    )


@pytest.fixture
def tiny(tmp_path: Path) -> ForecasterConfig:
    return tiny_config(tmp_path / "data")
