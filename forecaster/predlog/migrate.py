"""Bring a prediction log database to the latest schema (Alembic, run in-process).

The version table has its own name, so the log can share a database with MLflow, whose own
migrations use `alembic_version`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError

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


def _upgrade(engine: Engine, attempts: int) -> str:
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
    return current(engine) or ""
