"""The bundled real S&P 500 (^GSPC) daily series, 1999-2018, so everything works offline.

Provenance: `arch/data/sp500/sp500.csv.gz` from the `arch` package on PyPI (NCSA licence),
copied verbatim; see the README.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from forecaster.errors import TickerNotFoundError
from forecaster.sources.base import read_yahoo_csv

SAMPLE_TICKER = "^GSPC"
SAMPLE_FILE = "sp500.csv.gz"


class SampleSource:
    name = "sample"

    def __init__(self, *, auto_adjust: bool = True) -> None:
        self._auto_adjust = auto_adjust

    def load(self, ticker: str) -> pd.DataFrame:
        if ticker != SAMPLE_TICKER:
            raise TickerNotFoundError(
                f"sample: the bundled data holds only {SAMPLE_TICKER}, not '{ticker}'; "
                "use --csv FILE or data.source=yahoo for other tickers"
            )
        resource = resources.files("forecaster") / "data" / SAMPLE_FILE
        with resources.as_file(resource) as path:
            return read_yahoo_csv(
                path,
                ticker=ticker,
                source_name=self.name,
                origin=f"bundled sample {SAMPLE_FILE}",
                auto_adjust=self._auto_adjust,
            )
