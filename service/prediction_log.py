"""Append-only log of served predictions, so realised accuracy can be computed later.

Writes go through a bounded queue to a background thread that inserts them in batches (up to
`MAX_BATCH` rows, gathered for `flush_seconds`): logging never blocks or fails a
response. A full queue or a database that refuses a batch costs those rows, counted in
/metrics; a clean shutdown writes everything still queued.

The same thread opens (and migrates) the log, and keeps trying with backoff while it cannot:
a database that is down, or a disk that was full, at start-up delays logging (rows wait in
the queue) instead of switching it off for the life of the process.

What the batched default can lose: rows still queued when the process dies without a clean
shutdown (a kill -9, an out-of-memory kill), at most about `flush_seconds` of answered
forecasts. In durable mode (`committed`) a row is in a committed transaction (SQLite:
synchronous=FULL) before its forecast is answered; the writer does not wait to gather rows, so
concurrent requests still share one commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from forecaster.errors import PredictionLogError
from forecaster.local_state import shown_url
from forecaster.predlog import repository
from forecaster.predlog.migrate import upgrade

logger = logging.getLogger(__name__)

_STOP = object()
MAX_BATCH = 1000
MAX_OPEN_BACKOFF = 60.0


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    def connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return connect


# A queued row, and the future a durable caller waits on (None: nobody waits).
_Pending = tuple[dict[str, Any], "Future[None] | None"]


@dataclass(frozen=True)
class Retention:
    """How much of the log to keep; 0 means no cap. Applied by the writer thread at start-up
    and then at most every `every_seconds`, so the log stops growing without a cron job."""

    max_age_days: int = 0
    max_rows: int = 0
    every_seconds: float = 60.0


class PredictionLog:
    def __init__(
        self,
        url: str,
        max_queue: int = 10_000,
        on_rows: Callable[[str, int], None] = lambda outcome, n: None,
        retention: Retention = Retention(),
        flush_seconds: float = 0.2,
        durable: bool = False,
    ) -> None:
        """`on_rows(outcome, n)` counts rows written, dropped (queue full), failed (the
        database refused them) or pruned (past retention): the service exports them.
        `durable`: callers use `committed`, and the writer commits without a gathering window
        (SQLite with synchronous=FULL)."""
        self.url = url
        self.durable = durable
        if durable:
            flush_seconds = 0.0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._on_rows = on_rows
        self.retention = retention
        self.flush_seconds = flush_seconds
        self._stopping = threading.Event()
        self._next_prune = 0.0
        self.dropped = 0
        self.ready = False  # migrated and taking rows
        self._first_try = threading.Event()
        self.error: str | None = None  # why not, while it is not

    def start(self, wait: float = 5.0) -> None:
        """Start the writer, which opens the log, and give its first try up to `wait` seconds
        (a local log is open before the first request). A URL that can never work (not
        SQLAlchemy, no driver) is logged and logging is off; anything else is retried."""
        try:
            self._engine = create_engine(self.url)
        except (ArgumentError, ValueError, ImportError) as exc:
            self.error = f"not a usable SQLAlchemy URL ({exc})"
            logger.error("prediction log %s: %s; predictions will not be logged",
                         shown_url(self.url), self.error)  # fmt: skip
            self._engine = None
            return
        if self._engine.dialect.name == "sqlite":
            # WAL + NORMAL sync: appends without an fsync per batch, readers never block; a
            # commit survives the process dying. FULL (durable): it survives the machine too.
            event.listen(self._engine, "connect",
                         _sqlite_pragmas("FULL" if self.durable else "NORMAL"))  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        self._first_try.wait(wait)

    def status(self) -> Literal["logging", "opening", "off"]:
        """logging, opening (retrying) or off (a URL that can never work), for /readyz."""
        if self.ready:
            return "logging"
        return "opening" if self._engine is not None else "off"

    def _open(self) -> bool:
        """Migrate the log to the current schema; False (logged once per distinct reason) if
        it cannot be done now."""
        assert self._engine is not None
        try:
            if self.url.startswith("sqlite:///"):
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            revision = upgrade(self._engine)  # Alembic, in one transaction
        except (OSError, SQLAlchemyError, PredictionLogError) as exc:
            reason = str(exc)
            if reason != self.error:
                logger.error("prediction log %s unusable, rows wait in the queue and opening is "
                             "retried: %s", shown_url(self.url), reason)  # fmt: skip
            self.error = reason
            return False
        if self.error is not None:
            logger.info("prediction log %s usable again", shown_url(self.url))
        logger.info("prediction log %s at schema revision %s", shown_url(self.url), revision)
        self.ready, self.error = True, None
        return True

    def _wait_until_open(self) -> bool:
        """Open the log, retrying with backoff; False if a stop came first (and the last try
        at stopping failed too)."""
        delay = 1.0
        opened = self._open()
        self._first_try.set()
        while not opened:
            if self._stopping.wait(delay):
                return self._open()
            delay = min(2 * delay, MAX_OPEN_BACKOFF)
            opened = self._open()
        return True

    def record(self, row: dict[str, Any]) -> None:
        if self._engine is None:
            return
        try:
            self._queue.put_nowait(({"created_at": datetime.now(UTC), **row}, None))
        except queue.Full:
            self.dropped += 1
            self._on_rows("dropped", 1)
            if self.dropped == 1 or self.dropped % 1000 == 0:  # not a line per request
                logger.warning("prediction log queue full; dropped a row (%d so far)",
                               self.dropped)  # fmt: skip

    async def committed(self, row: dict[str, Any], timeout: float) -> None:
        """Queue the row and return once the transaction holding it has committed; a
        PredictionLogError (what to do in its message) when logging is off, the queue is full,
        the database refuses it or `timeout` seconds pass (the row may still be written)."""
        if self._engine is None:
            # Not self.error: a URL's parse error may quote the URL, password and all.
            raise PredictionLogError("the prediction log is off (its URL can never work)")
        done: Future[None] = Future()
        try:
            self._queue.put_nowait(({"created_at": datetime.now(UTC), **row}, done))
        except queue.Full:
            self._on_rows("dropped", 1)
            raise PredictionLogError("the prediction log's queue is full") from None
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), timeout)
        except TimeoutError:
            opening = "" if self.ready else ", it is not open yet"
            raise PredictionLogError(
                f"the prediction log did not commit within {timeout:g} s{opening}"
            ) from None

    def prune(self) -> int:
        """Delete rows older than the age cap and all but the newest `max_rows`; returns how
        many went. A failure is logged, never raised: it is retried on the next round."""
        rules = self.retention
        if self._engine is None or not (rules.max_age_days or rules.max_rows):
            return 0
        try:
            with self._engine.begin() as conn:
                gone = repository.prune(conn, rules.max_age_days, rules.max_rows)
        except SQLAlchemyError as exc:
            logger.error("could not apply the prediction log's retention: %s", exc)
            return 0
        if gone:
            self._on_rows("pruned", gone)
            logger.info("prediction log: pruned %d row(s) past retention", gone)
        return gone

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + self.retention.every_seconds
            self.prune()

    def _batch(self) -> list[Any]:
        """The next rows to insert: the first one, and whatever else arrives within
        flush_seconds (fewer, larger transactions under load). The writer sleeps through the
        window instead of waking for every row, which would cost each request a thread switch;
        a stop cuts the window short."""
        rows = [self._queue.get()]
        if rows[0] is not _STOP and self.flush_seconds > 0:
            self._stopping.wait(self.flush_seconds)
        while len(rows) < MAX_BATCH and rows[-1] is not _STOP:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return rows

    def _run(self) -> None:
        if not self._wait_until_open():
            left: list[_Pending] = []
            with contextlib.suppress(queue.Empty):  # drained, so close() can queue its stop
                while True:
                    item = self._queue.get_nowait()
                    if item is not _STOP:
                        left.append(item)
            _settle(left, PredictionLogError("the prediction log never opened"))
            if lost := len(left):
                self._on_rows("failed", lost)
                logger.error("prediction log never opened; %d queued row(s) not written", lost)
            return
        self._maybe_prune()
        while True:
            batch = self._batch()
            stop = any(r is _STOP for r in batch)
            pending: list[_Pending] = [r for r in batch if r is not _STOP]
            if pending and self._engine is not None:
                rows = [row for row, _ in pending]
                try:
                    with self._engine.begin() as conn:
                        repository.append(conn, rows)
                except SQLAlchemyError as exc:
                    self._on_rows("failed", len(rows))
                    logger.error("could not write %d prediction log row(s): %s", len(rows), exc)
                    _settle(pending, PredictionLogError(
                        f"the prediction log refused the row ({type(exc).__name__})"))  # fmt: skip
                else:
                    self._on_rows("written", len(rows))
                    _settle(pending, None)
                self._maybe_prune()
            if stop:
                return

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop; gives up (and says how much is left) after
        `timeout` seconds of a database that does not take the rows."""
        if self._thread is not None:
            self._stopping.set()
            # A full queue behind a database that hangs must not hang the shutdown.
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("prediction log: %d row(s) still queued after %.0f s at shutdown; "
                             "not written", self._queue.qsize(), timeout)  # fmt: skip
                return  # the writer still holds the engine
        if self._engine is not None:
            self._engine.dispose()


def _settle(pending: list[_Pending], error: Exception | None) -> None:
    """Tell each durable caller how its row went. A caller that timed out has cancelled its
    future, possibly just now: that must not end the writer thread."""
    for _, done in pending:
        if done is None:
            continue
        with contextlib.suppress(InvalidStateError):
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)


def read_log(url: str) -> list[dict[str, Any]]:
    """All logged rows, oldest first (for analysis, notebooks and tests)."""
    engine = create_engine(url)
    try:
        return repository.logged(engine)
    finally:
        engine.dispose()
