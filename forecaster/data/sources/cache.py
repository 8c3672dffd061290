"""On-disk parquet cache of downloaded OHLCV history, one file per ticker and adjustment mode."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from forecaster.data.schemas import validate_ohlcv
from forecaster.errors import DataValidationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedSeries:
    frame: pd.DataFrame
    fetched_at: datetime  # when the file was last written (UTC)

    @property
    def last_date(self) -> pd.Timestamp:
        return self.frame.index[-1]


class ParquetCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, ticker: str, *, adjusted: bool) -> Path:
        # Percent-encoding keeps '^GSPC' and '_GSPC' apart and any ticker a safe file name.
        mode = "adjusted" if adjusted else "raw"
        return self.root / f"{quote(ticker, safe='')}.{mode}.parquet"

    def read(self, ticker: str, *, adjusted: bool) -> CachedSeries | None:
        path = self.path(ticker, adjusted=adjusted)
        if not path.exists():
            return None
        try:
            frame = pd.read_parquet(path)
            frame = validate_ohlcv(frame, origin=f"cache {path}")
        except (OSError, ValueError, DataValidationError) as exc:
            logger.warning("ignoring unreadable cache file %s (%s); it will be rebuilt", path, exc)
            return None
        fetched_at = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        return CachedSeries(frame=frame, fetched_at=fetched_at)

    def write(self, ticker: str, frame: pd.DataFrame, *, adjusted: bool) -> Path:
        """Write atomically: a crash mid-write never leaves a half-written cache file."""
        path = self.path(ticker, adjusted=adjusted)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            pd.DataFrame(frame).to_parquet(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
