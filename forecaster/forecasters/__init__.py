"""One interface for every forecaster, the LSTM and the baselines (the darts lesson).

Each is fitted on a fold's training data (and validation data where it selects anything) and
predicts quantiles of the next-day log return for any windows, at the configured levels.
Evaluation and backtests take a mapping of named forecasters and score them all on exactly the
same days: a new baseline is one class here and nothing else.
"""

from forecaster.forecasters.base import QuantileForecaster
from forecaster.forecasters.garch import GarchForecaster
from forecaster.forecasters.linear import LinearQuantileForecaster
from forecaster.forecasters.naive import NaiveEmpiricalForecaster

__all__ = [
    "GarchForecaster",
    "LinearQuantileForecaster",
    "NaiveEmpiricalForecaster",
    "QuantileForecaster",
]
