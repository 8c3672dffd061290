"""User-supplied Yahoo-style daily CSV files, one per ticker."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from forecaster.data.sources.base import read_yahoo_csv
from forecaster.errors import TickerNotFoundError


class CsvSource:
    name = "csv"

    def __init__(
        self, files: Mapping[str, Path], *, auto_adjust: bool, date_format: str | None = None
    ) -> None:
        self._files = dict(files)
        self._auto_adjust = auto_adjust
        self._date_format = date_format

    def load(self, ticker: str) -> pd.DataFrame:
        path = self._files.get(ticker)
        if path is None:
            known = ", ".join(self._files) or "none"
            raise TickerNotFoundError(
                f"csv: no file configured for ticker '{ticker}' (configured: {known})"
            )
        return read_yahoo_csv(
            Path(path),
            ticker=ticker,
            source_name=self.name,
            origin=str(path),
            auto_adjust=self._auto_adjust,
            date_format=self._date_format,
        )
