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
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

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


def upgrade(engine: Engine, attempts: int = 3) -> str:
    """Migrate to head; returns the revision. Several workers starting at once race: the loser
    of a DDL race retries and finds the work done."""
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
            logger.warning("prediction log migration raced another process (%s); retrying",
                           str(exc).splitlines()[0])  # fmt: skip
            time.sleep(0.2 * attempt)
    return current(engine) or ""
