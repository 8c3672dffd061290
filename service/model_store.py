"""Holds the served model and swaps in new registry versions without downtime.

Requests take a reference to `current` once and keep it, so a swap (one attribute assignment)
never changes the model under a request in flight. Loading happens in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecaster.errors import ModelFormatError, ModelMismatchError, first_line
from forecaster.inference import Forecaster
from forecaster.local_state import redact
from forecaster.registry import load_version

logger = logging.getLogger(__name__)


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
    ) -> None:
        self.fallback_alias = fallback_alias
        # (data_source, auto_adjust) the service reads history with; a bundle trained on
        # something else is refused.
        self.data_settings = data_settings
        self.conflict: str | None = None
        self.on_event = on_event or (lambda outcome: None)
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias
        self.retry_max_seconds = retry_max_seconds
        self.current: LoadedModel | None = None
        self.last_error: str | None = "model not loaded yet"
        # Versions refused for what they are (not for a transient failure): not tried again.
        self._refused: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def _client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def alias_version(self) -> tuple[str, str, str]:
        """(version, run_id, alias) the alias points at now, else the fallback alias's;
        raises MlflowException if neither exists."""
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
        loaded = load_version(self._client(), self.tracking_uri, self.name, version)
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
                version, run_id, alias = await asyncio.to_thread(self.alias_version)
            except (MlflowException, OSError) as exc:
                reason = redact(first_line(exc), self.tracking_uri)
                self.last_error = f"{self.name}@{self.alias} not available: {reason}"
                if self.current is None:
                    logger.warning("%s", self.last_error)
                return False
            if self.current is not None and self.current.version == version:
                self.last_error = None
                return False
            if version in self._refused:
                self.last_error = self._refused[version]
                return False
            if alias != self.alias:
                logger.warning("%s@%s does not exist; serving fallback alias %s (v%s)",
                               self.name, self.alias, alias, version)  # fmt: skip
            try:
                loaded = await asyncio.to_thread(self._load, version, run_id, alias)
            except Exception as exc:  # any failure to load must leave the old model serving
                self.conflict = str(exc) if isinstance(exc, ModelMismatchError) else None
                self.on_event("failed")
                reason = redact(first_line(exc), self.tracking_uri)
                self.last_error = f"loading {self.name} v{version} failed: {reason}"
                if isinstance(exc, ModelFormatError):
                    self._refused[version] = self.last_error
                logger.error("%s; still serving %s", self.last_error, self.describe())
                return False
            previous = self.describe()
            self.current = loaded
            self.last_error = None
            self.conflict = None
            self.on_event("loaded")
            logger.info("now serving %s v%s (was %s)", self.name, version, previous)
            return True

    def describe(self) -> str:
        return f"v{self.current.version}" if self.current else "nothing"

    async def watch(self, interval: float) -> None:
        """Poll forever: retry with backoff until a model loads, then poll the alias."""
        delay = 1.0
        while True:
            await self.refresh()
            if self.current is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_seconds)
            else:
                delay = 1.0
                await asyncio.sleep(interval)
