"""Exceptions the CLI and the service turn into one-line messages.

Each message says what is wrong and where (file, ticker, line or date) so a user can fix it
without reading a traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's `message` where it has one), else its
    type: what a one-line error shows of a library's multi-line or empty message."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ForecasterError(Exception):
    """Base class for every error a user can cause or fix."""


class ConfigError(ForecasterError):
    """A configuration file or override is invalid."""


class DataError(ForecasterError):
    """Market data could not be loaded or failed validation."""


class DataValidationError(DataError):
    """A frame broke the OHLCV contract (bad column, value, date or size)."""


class TickerNotFoundError(DataError):
    """No source knows the ticker, or it returned no rows for it."""


class SourceUnavailableError(DataError):
    """The data source could not be reached and no cached copy exists."""


class ModelMismatchError(ForecasterError):
    """A registered model contradicts the settings it would be served with."""


class ModelFormatError(ForecasterError):
    """A registered model is not this project's pyfunc, so the service will not load it."""


class NotFittedError(ForecasterError):
    """predict() was called before fit()."""


class TrackingError(ForecasterError):
    """The MLflow tracking server or registry could not be used."""


class StoreUnavailableError(TrackingError):
    """The tracking store did not answer (down, unreachable, or refusing connections)."""


class TrainingError(ForecasterError):
    """Training diverged or produced no usable model."""


class LockHeldError(ForecasterError):
    """Another process holds the lock."""


class RetrainError(ForecasterError):
    """A pipeline step failed; the champion was left as it was."""


class PredictionLogError(ForecasterError):
    """The prediction log's database cannot be opened, read or migrated."""


class ServiceRequestError(ForecasterError):
    """A running forecaster service could not be reached or refused a request."""


class TuningError(ForecasterError):
    """A tuning study could not be opened, joined or finished with a usable trial."""
