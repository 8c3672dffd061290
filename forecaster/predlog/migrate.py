"""Bring a prediction log database to the latest schema (Alembic, run in-process).

The version table has its own name, so the log can share a database with MLflow, whose own
migrations use `alembic_version`.

All pending revisions run in one transaction, so a failure (a full disk, a lost connection)
leaves the schema where it was, never half-applied: PostgreSQL and SQLite both roll DDL back.
Python's sqlite3 driver would commit before each CREATE or ALTER, so SQLite migrations run on
a connection that the migration itself begins (BEGIN IMMEDIATE: the write lock from the start,
so two workers migrating at once queue instead of racing).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from forecaster.errors import PredictionLogError, first_line
from forecaster.local_state import shown_url

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "forecaster_predlog_version"
FIRST = "0001"  # the schema the log had before migrations existed


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    script = ScriptDirectory(str(MIGRATIONS))
    return str(script.get_current_head())


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def open_log(url: str) -> Engine:
    """An engine on the prediction log, migrated to head; one-line PredictionLogError if the
    URL, the database or its schema cannot be used."""
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise PredictionLogError(
            f"prediction log {shown_url(url)}: not a usable SQLAlchemy URL ({exc})"
        ) from exc
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade(engine: Engine, attempts: int = 3) -> str:
    """Migrate to head; returns the revision. Several workers starting at once race: the loser
    of a DDL race retries and finds the work done. Raises PredictionLogError, one line."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        return _upgrade(engine, attempts)
    except CommandError as exc:  # e.g. a log migrated by a newer forecaster
        raise PredictionLogError(
            f"prediction log {url}: {exc}; it was migrated by another version of forecaster "
            f"(this one knows up to revision {head()})"
        ) from exc
    except SQLAlchemyError as exc:
        raise PredictionLogError(f"prediction log {url}: {first_line(exc)}") from exc


def _transactional(engine: Engine) -> Engine:
    """An engine whose transactions cover DDL: for SQLite a separate one with the driver's own
    transaction handling off and an explicit BEGIN; other databases as they are."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    migrating = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(migrating, "connect")
    def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(migrating, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def _upgrade(engine: Engine, attempts: int) -> str:
    migrating = _transactional(engine)
    try:
        _upgrade_with(migrating, attempts)
    finally:
        if migrating is not engine:
            migrating.dispose()
    return current(engine) or ""


def _upgrade_with(engine: Engine, attempts: int) -> None:
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                config = _config(conn)
                tables = set(inspect(conn).get_table_names())
                if "predictions" in tables and VERSION_TABLE not in tables:
                    # Created by the service before migrations existed: that schema is 0001.
                    logger.info("prediction log predates migrations; stamping it %s", FIRST)
                    command.stamp(config, FIRST)
                command.upgrade(config, "head")
            break
        except (OperationalError, ProgrammingError) as exc:
            if attempt == attempts:
                raise
            # Most often the loser of a DDL race between workers starting at once.
            logger.warning("prediction log migration failed (%s); retrying",
                           first_line(exc))  # fmt: skip
            time.sleep(0.2 * attempt)
