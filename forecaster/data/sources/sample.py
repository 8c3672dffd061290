"""Real daily OHLCV series that ship inside installed packages, so everything works offline.

Provenance (see the README's Data section):
- ^GSPC (S&P 500) 1999-2018: `arch/data/sp500/sp500.csv.gz` from the `arch` package (NCSA
  licence), copied verbatim into `forecaster/data/`.
- ^IXIC (NASDAQ Composite) 1999-2018: `arch/data/nasdaq/nasdaq.csv.gz`, read from the installed
  `arch` package.
- AAPL, GOOG, IBM, MSFT (2000-2013; GOOG from 2004) and FB (2012-2013): `stocks.csv.gz` of the
  `bokeh-sampledata` package (BSD-3-Clause package; the data is Quandl WIKI prices, which Quandl
  declared public domain). Open/high/low/close/volume are unadjusted; its Adj Close carries the
  split and dividend adjustment, which `auto_adjust` applies as for any Yahoo-style file.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

from forecaster.data.sources.base import read_yahoo_csv
from forecaster.errors import DataError, TickerNotFoundError

SAMPLE_TICKER = "^GSPC"


@dataclass(frozen=True)
class SampleSeries:
    package: str  # installed top-level package holding the file (found, never imported)
    path: str  # file inside it
    ticker_column: str | None = None  # files holding several tickers: the column naming them


SAMPLE_SERIES: dict[str, SampleSeries] = {
    "^GSPC": SampleSeries("forecaster", "data/sp500.csv.gz"),
    "^IXIC": SampleSeries("arch", "data/nasdaq/nasdaq.csv.gz"),
    **{
        ticker: SampleSeries("bokeh_sampledata", "_data/stocks.csv.gz", "Ticker")
        for ticker in ("AAPL", "GOOG", "IBM", "MSFT", "FB")
    },
}
# The default config trains on SAMPLE_UNIVERSE (forecaster.config). FB (196 days, 2012-2013) is
# loadable but left out: too short to train or test on, it is a ticker no model has seen.


def _package_file(series: SampleSeries) -> Path:
    """The file's path in its installed package, located without importing the package
    (importing arch costs seconds; a server loads the sample lazily, per ticker)."""
    spec = importlib.util.find_spec(series.package)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / series.path
        if path.is_file():
            return path
    raise DataError(
        f"sample: {series.path} of the package '{series.package}' is missing; reinstall "
        "forecaster (pip install -e .) to bring its dependencies back"
    )


class SampleSource:
    name = "sample"

    def __init__(self, *, auto_adjust: bool = True) -> None:
        self._auto_adjust = auto_adjust

    def load(self, ticker: str) -> pd.DataFrame:
        series = SAMPLE_SERIES.get(ticker)
        if series is None:
            raise TickerNotFoundError(
                f"sample: the bundled data holds only {', '.join(SAMPLE_SERIES)}, not "
                f"'{ticker}'; use --csv FILE or data.source=yahoo for other tickers"
            )
        origin = f"bundled sample {series.path.rsplit('/', 1)[-1]}"
        path = _package_file(series)
        if series.ticker_column is None:
            return self._read(path, ticker, origin)
        with gzip.open(path, "rt", encoding="utf-8") as text:
            header = text.readline()
            prefix = f"{ticker},"
            rows = [line for line in text if line.startswith(prefix)]
        # Drop the ticker column: what is left is a Yahoo-style file of one ticker.
        body = "".join(line.partition(",")[2] for line in [header, *rows])
        return self._read(io.BytesIO(body.encode("utf-8")), ticker, f"{origin} ({ticker})")

    def _read(self, source: Path | IO[bytes], ticker: str, origin: str) -> pd.DataFrame:
        return read_yahoo_csv(
            source,
            ticker=ticker,
            source_name=self.name,
            origin=origin,
            auto_adjust=self._auto_adjust,
        )
