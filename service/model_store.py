"""Holds the served model and swaps in new registry versions without downtime.

Requests take a reference to `current` once and keep it, so a swap (one attribute assignment)
never changes the model under a request in flight. Every call to the tracking store runs in a
daemon thread: a store that hangs can neither stall the event loop nor keep a stopping
process alive.

Two reasons are kept for a missing or failed model: `last_error`, with the store's own words
(for the log and the keyed admin route), and `public_error`, short and free of URLs, paths
and driver messages (for /readyz and 503 details, which anyone can read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecaster.errors import (
    ModelFormatError,
    ModelMismatchError,
    StoreUnavailableError,
    first_line,
)
from forecaster.local_state import redact
from forecaster.methods.network.forward import Runtime
from forecaster.registry.loader import load_version, probe_store
from forecaster.registry.predictor import Forecaster

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """`fn()` in a daemon thread, awaited. Unlike asyncio.to_thread, a call stuck on a dead
    store neither delays the process's exit nor holds an executor worker; cancelling the
    await abandons the call."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task, which decides
            error: BaseException | None = exc

            def settle() -> None:
                if not future.done():
                    future.set_exception(error)  # type: ignore[arg-type]
        else:

            def settle() -> None:
                if not future.done():
                    future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed while the call ran
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name="model-store", daemon=True).start()
    return await future


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    alias: str
    run_id: str
    forecaster: Forecaster
    loaded_at: datetime
    tags: dict[str, str] = field(default_factory=dict)


class ModelStore:
    def __init__(
        self,
        tracking_uri: str,
        name: str,
        alias: str,
        retry_max_seconds: float = 60.0,
        on_event: Callable[[str], None] | None = None,
        fallback_alias: str | None = None,
        data_settings: tuple[str, bool] | None = None,
        store_timeout: float = 5.0,
        runtime: Runtime = "onnxruntime",
        threads: int | None = None,
    ) -> None:
        self.fallback_alias = fallback_alias
        # What runs the network's forward (forecaster.registry.predictor.Forecaster.load).
        self.runtime, self.threads = runtime, threads
        # (data_source, auto_adjust) the service reads history with; a bundle trained on
        # something else is refused.
        self.data_settings = data_settings
        self.conflict: str | None = None
        self.on_event = on_event or (lambda outcome: None)
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias
        self.retry_max_seconds = retry_max_seconds
        self.store_timeout = store_timeout
        self.current: LoadedModel | None = None
        self.last_error: str | None = "model not loaded yet"
        self.public_error: str | None = "model not loaded yet"
        self._logged: str | None = None  # the last state written to the log
        # Versions refused for what they are (not for a transient failure): not tried again.
        self._refused: dict[str, tuple[str, str]] = {}
        self._lock = asyncio.Lock()

    def _client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def alias_version(self) -> tuple[str, str, str]:
        """(version, run_id, alias) the alias points at now, else the fallback alias's;
        raises StoreUnavailableError if the store does not answer, MlflowException if neither
        alias exists."""
        probe_store(self.tracking_uri, self.store_timeout)
        client = self._client()
        try:
            found = client.get_model_version_by_alias(self.name, self.alias)
            return str(found.version), str(found.run_id), self.alias
        except MlflowException:
            if not self.fallback_alias:
                raise
        found = client.get_model_version_by_alias(self.name, self.fallback_alias)
        return str(found.version), str(found.run_id), self.fallback_alias

    def _load(self, version: str, run_id: str, alias: str) -> LoadedModel:
        """The version through the registry's one loader (which reads the bundle and weights
        as data and never runs code stored with a model), checked against the service's data
        settings."""
        loaded = load_version(self._client(), self.tracking_uri, self.name, version,
                              self.runtime, self.threads)  # fmt: skip
        forecaster = loaded.forecaster
        if self.data_settings is not None:
            conflict = forecaster.bundle.conflict(*self.data_settings)
            if conflict:
                raise ModelMismatchError(f"{self.name} v{version}: {conflict}")
        return LoadedModel(
            name=self.name,
            version=version,
            alias=alias,
            run_id=run_id,
            forecaster=forecaster,
            loaded_at=datetime.now(UTC),
            tags=loaded.tags,
        )

    async def refresh(self) -> bool:
        """Load the alias's version if it differs from the served one; True if swapped.

        A version that fails to load is logged and the old one keeps serving.
        """
        async with self._lock:
            try:
                version, run_id, alias = await in_daemon_thread(self.alias_version)
            except Exception as exc:  # whatever the store does, the service keeps running
                self._lookup_failed(exc)
                return False
            if self.current is not None and self.current.version == version:
                self._fine()
                return False
            if version in self._refused:
                self.last_error, self.public_error = self._refused[version]
                return False
            if alias != self.alias:
                logger.warning("%s@%s does not exist; serving fallback alias %s (v%s)",
                               self.name, self.alias, alias, version)  # fmt: skip
            try:
                loaded = await in_daemon_thread(lambda: self._load(version, run_id, alias))
            except Exception as exc:  # any failure to load must leave the old model serving
                self._load_failed(version, exc)
                return False
            previous = self.describe()
            self.current = loaded
            self._fine()
            self.conflict = None
            self.on_event("loaded")
            logger.info("now serving %s v%s (was %s)", self.name, version, previous)
            return True

    def _lookup_failed(self, exc: Exception) -> None:
        where = f"{self.name}@{self.alias} not available"
        detail = redact(first_line(exc), self.tracking_uri)
        if isinstance(exc, StoreUnavailableError):
            public = f"{where}: tracking store unreachable; retrying"
        elif isinstance(exc, MlflowException) and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            public = (f"{where}: no such registered model or alias; train and promote one "
                      "(forecaster train), the service picks it up")  # fmt: skip
        else:
            public = f"{where}: the tracking store failed to answer; the service log says why"
        self._failed(f"{where}: {detail}", public)

    def _load_failed(self, version: str, exc: Exception) -> None:
        self.conflict = str(exc) if isinstance(exc, ModelMismatchError) else None
        self.on_event("failed")
        where = f"loading {self.name} v{version} failed"
        detail = f"{where}: {redact(first_line(exc), self.tracking_uri)}"
        if isinstance(exc, ModelMismatchError):
            public = detail  # names the service's and the model's data settings, nothing secret
        elif isinstance(exc, ModelFormatError):
            public = (f"{where}: not a forecaster model, or its files are damaged; promote a "
                      "working version")  # fmt: skip
        else:
            public = f"{where}: its files could not be read; retrying"
        if isinstance(exc, ModelFormatError):
            self._refused[version] = (detail, public)
        self._failed(detail, public)

    def _failed(self, detail: str, public: str) -> None:
        """Record a failure; the log gets one line per change of state, not one per poll."""
        self.last_error, self.public_error = detail, public
        if detail != self._logged:
            self._logged = detail
            logger.error("%s; serving %s", detail, self.describe())

    def _fine(self) -> None:
        if self._logged is not None:
            logger.info("%s@%s available again; serving %s", self.name, self.alias,
                        self.describe())  # fmt: skip
        self.last_error = self.public_error = self._logged = None

    def describe(self) -> str:
        return f"v{self.current.version}" if self.current else "nothing"

    async def watch(self, interval: float) -> None:
        """Poll forever: retry with backoff until a model loads, then poll the alias every
        `interval` seconds. A model already loaded (start-up's own refresh) waits an interval
        first instead of asking the store again at once."""
        delay = 1.0
        while True:
            if self.current is not None:
                delay = 1.0
                await asyncio.sleep(interval)
                await self.refresh()
                continue
            await self.refresh()
            if self.current is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_seconds)
