"""Shared fixtures: slices of the real bundled sample and seeded synthetic random walks."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.data.schemas import FrameMeta, with_meta
from forecaster.data.sources import SampleSource


def free_port() -> int:
    """A free TCP port on loopback, for servers the tests start."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _temp_files_stay_in_pytest_basetemp(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """What the code under test and its subprocesses put in the temp dir (MLflow's lock files,
    checkpoints of killed trainings, the notebooks' stores) lands in pytest's basetemp, which
    pytest prunes, not in /tmp for ever."""
    path = str(tmp_path_factory.mktemp("tmp"))
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", path)
    patch.setattr(tempfile, "tempdir", path)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def sample_frame() -> pd.DataFrame:
    """The full bundled ^GSPC series (validated)."""
    return SampleSource().load("^GSPC")


def random_walk(
    n: int = 300, *, seed: int = 0, ticker: str = "WALK", start: str = "2020-01-01"
) -> pd.DataFrame:
    """A validated-looking OHLCV frame: geometric random walk on business days."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n, name="date")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    volume = rng.integers(1_000_000, 5_000_000, n).astype("float64")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=dates
    )
    return with_meta(
        frame, FrameMeta(ticker=ticker, source="test", adjustment="raw", origin=ticker)
    )


@pytest.fixture
def walk() -> Callable[..., pd.DataFrame]:
    return random_walk


CSV_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def csv_rows(n: int = 80, start: str = "2021-01-04") -> list[str]:
    """Well-formed Yahoo-style CSV data lines (no header)."""
    frame = random_walk(n, seed=1, start=start)
    return [
        f"{d.date()},{r.open:.4f},{r.high:.4f},{r.low:.4f},{r.close:.4f},{r.close:.4f},{int(r.volume)}"
        for d, r in frame.iterrows()
    ]


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    def write(lines: list[str], name: str = "ACME.csv", header: str = CSV_HEADER) -> Path:
        path = tmp_path / name
        path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
        return path

    return write
