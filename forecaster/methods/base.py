"""The one interface of a classic forecasting method: fitted once, then filtered over any history.

A method (the random walk, the GARCH family, HAR on range-based variance, ...) works on a
history's daily bars. `fit` estimates its parameters from a ticker's training bars (or, for
a ticker no model has seen, from a request's own history); `path` runs those fixed
parameters over any history and gives the forecast made as of each close, with no refit. The
backtest scores `path` over a ticker's whole series and the service answers with its last
row, so what is scored is, to the last digit, what is served.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from forecaster.config import EvaluationConfig
from forecaster.errors import DataValidationError

Params = Mapping[str, float]


def _floats(values: Any) -> np.ndarray:
    out: np.ndarray = np.asarray(values, dtype=np.float64)
    return out


_COLUMNS = ("open", "high", "low", "close")  # forecaster.data.schemas' names


@dataclass(frozen=True, eq=False)
class Bars:
    """A history's daily open, high, low and close, oldest first, as float64 arrays: what a
    method reads (a validated frame or the API's arrays give them; a closes-only history has
    NaN for the rest, which a range-based method refuses)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @classmethod
    def of(cls, arrays: Any) -> Bars:
        """From arrays named open/high/low/close (the API's OHLCVArrays)."""
        return cls(*(_floats(getattr(arrays, c)) for c in _COLUMNS))

    @classmethod
    def of_frame(cls, frame: Any) -> Bars:
        """From a validated frame's open/high/low/close columns."""
        return cls(*(_floats(frame[c]) for c in _COLUMNS))

    @classmethod
    def of_closes(cls, closes: Any) -> Bars:
        close = _floats(closes)
        missing = np.full_like(close, np.nan)
        return cls(missing, missing, missing, close)

    def __len__(self) -> int:
        return int(self.close.shape[0])

    @cached_property
    def digest(self) -> bytes:
        """A 16-byte digest of the four columns: the same bars, the same digest (what a cache
        of fits on them is keyed by). Computed once per Bars."""
        digest = hashlib.blake2b(digest_size=16)
        for column in (self.open, self.high, self.low, self.close):
            digest.update(np.ascontiguousarray(column, dtype=np.float64).tobytes())
        return digest.digest()

    def head(self, n: int) -> Bars:
        """The first n bars (a history as it stood n closes in)."""
        return Bars(self.open[:n], self.high[:n], self.low[:n], self.close[:n])

    def tail(self, n: int) -> Bars:
        return Bars(self.open[-n:], self.high[-n:], self.low[-n:], self.close[-n:])

    def require_range(self, who: str) -> None:
        """Refuse a history without finite, positive open/high/low (a closes-only one)."""
        for name in ("open", "high", "low"):
            values = getattr(self, name)
            if not (np.isfinite(values).all() and (values > 0).all()):
                raise DataValidationError(
                    f"{who} needs open, high and low prices on every row; '{name}' has missing "
                    "or non-positive values"
                )


def log_returns(closes: np.ndarray) -> np.ndarray:
    """(n - 1,) daily log returns of n closes; return i runs from close i to close i + 1."""
    returns: np.ndarray = np.diff(np.log(np.asarray(closes, dtype=np.float64)))
    return returns


@dataclass(frozen=True)
class Fit:
    """A method's estimated parameters and, where the estimate is doubtful (the optimiser did
    not converge, a parameter is not finite), why: the backtest logs it and goes on, a request
    refuses the fit and the random walk answers."""

    params: dict[str, float] = field(default_factory=dict)
    problem: str | None = None


class Method(ABC):
    """Next-day log-return quantiles from a history's bars with fixed parameters.

    Capabilities the framework asks instead of special-casing a method by name:
    - `min_returns`: returns a history must hold for a forecast (the random walk's are all
      before the forecast's as-of close; GARCH starts from its backcast);
    - `earliest`: the first close (0-based) a forecast can be made as of;
    - `fit_min_returns`: returns a fit on a request's own history needs before it is trusted
      (0: the method has nothing to estimate).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    label: ClassVar[str]  # how a reason names it: "GARCH", "the random walk"
    min_returns: ClassVar[int]
    earliest: ClassVar[int]
    fit_min_returns: ClassVar[int] = 0
    # Built from other methods' forecasts (weights chosen on validation days), so not from the
    # config alone: the backtest makes it once its members are fitted.
    combines: ClassVar[bool] = False

    @classmethod
    def from_config(cls, evaluation: EvaluationConfig) -> Method:
        """The method as the config sets it up (the backtest's, and so the served one)."""
        return cls()

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments, stored in the bundle so the served method is built
        exactly as the backtest's was."""
        return {}

    @property
    def estimates(self) -> bool:
        """Whether it has parameters to estimate (a ticker without them needs a fit)."""
        return self.fit_min_returns > 0

    @abstractmethod
    def fit(self, bars: Bars, levels: Sequence[float]) -> Fit:
        """Parameters estimated on these bars (and, for a method whose quantiles are
        empirical, at these levels)."""

    @abstractmethod
    def path(self, bars: Bars, params: Params, levels: Sequence[float], first: int) -> np.ndarray:
        """(n - first, n_levels) log-return quantiles: row k is the forecast made as of close
        `first + k` (of the return to the close after it), from the closes up to it only; the
        last row is the next day's. Raises DataValidationError where the history is too short."""

    def next_day(self, bars: Bars, params: Params, levels: Sequence[float]) -> np.ndarray:
        """The forecast for the day after the history's last close."""
        last: np.ndarray = self.path(bars, params, levels, len(bars) - 1)[0]
        return last
