"""The prediction log's writer counts what became of every row, for /metrics."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from concurrent.futures import Future
from datetime import date
from pathlib import Path

import pytest

from forecaster.errors import PredictionLogError
from service.prediction_log import PredictionLog, _settle, read_log

ROW = {
    "request_id": "r1", "ticker": "^GSPC", "as_of": date(2018, 12, 31),
    "target_date": date(2019, 1, 2), "model_name": "stock-lstm", "model_version": "1",
    "predicted_close": 2507.0, "predicted_return": 0.0001, "lower": 2450.0, "upper": 2560.0,
    "interval_level": 0.8, "last_close": 2506.85, "history_source": "server",
}  # fmt: skip


def wait_for(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_rows_written_dropped_and_failed_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "predictions.db"
    counts: Counter[str] = Counter()
    # flush_seconds=0: each batch is what is queued when the writer looks, so the test knows
    # which rows share a batch.
    log = PredictionLog(f"sqlite:///{path}", max_queue=2, flush_seconds=0,
                        on_rows=lambda outcome, n: counts.update({outcome: n}))  # fmt: skip
    log.start()
    log.record(ROW)
    wait_for(lambda: counts["written"] == 1)

    # Another process holds the database: the writer waits on its lock (SQLite's 5 s busy
    # timeout) while requests keep coming; the bounded queue drops what does not fit.
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    log.record(ROW)  # the writer takes it and waits for the lock
    wait_for(lambda: log._queue.empty())
    log.record(ROW)
    log.record(ROW)  # queue full (2)
    log.record(ROW)  # dropped
    assert counts["dropped"] == 1
    wait_for(lambda: counts["failed"] == 1)  # the busy timeout ran out: that batch failed
    holder.rollback()
    holder.close()
    log.close()  # flushes what is queued
    assert counts == {"written": 3, "dropped": 1, "failed": 1}
    assert len(read_log(f"sqlite:///{path}")) == 3


def test_retention_caps_the_log_by_age_and_by_rows(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine, insert

    from forecaster.predlog.schema import predictions
    from service.prediction_log import Retention

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    counts: Counter[str] = Counter()
    log = PredictionLog(url, on_rows=lambda outcome, n: counts.update({outcome: n}),
                        retention=Retention(max_age_days=30, max_rows=5))  # fmt: skip
    log.start()
    log.close()  # the table exists; start-up pruning found nothing
    now = datetime.now(UTC)
    ages = [400, 40, 31, 29, 10, 5, 3, 2, 1, 0]  # days; 3 rows are past 30 days
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(predictions),
                     [{**ROW, "request_id": f"d{d}", "created_at": now - timedelta(days=d)}
                      for d in ages])  # fmt: skip
    engine.dispose()
    assert log.prune() == 3 + 2  # 3 by age, then the oldest 2 of the 7 left by the row cap
    kept = [r["request_id"] for r in read_log(url)]
    assert kept == ["d5", "d3", "d2", "d1", "d0"]
    assert counts["pruned"] == 5
    assert log.prune() == 0


def test_the_writer_applies_retention_as_it_writes(tmp_path: Path) -> None:
    from service.prediction_log import Retention

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    log = PredictionLog(url, retention=Retention(max_rows=3, every_seconds=0))
    log.start()
    for i in range(10):
        log.record({**ROW, "request_id": f"r{i}"})
    log.close()
    assert [r["request_id"] for r in read_log(url)] == ["r7", "r8", "r9"]


def _first_shipped_schema(url: str, rows: int) -> None:
    """A log as the service created it before migrations: create_all of the old table."""
    from datetime import UTC, datetime

    from sqlalchemy import (
        Column,
        Date,
        DateTime,
        Float,
        Integer,
        MetaData,
        String,
        Table,
        create_engine,  # fmt: skip
        insert,
    )

    old = Table(
        "predictions", MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("request_id", String(64), nullable=False),
        Column("ticker", String(32), nullable=False),
        Column("as_of", Date, nullable=False),
        Column("target_date", Date, nullable=False),
        Column("model_name", String(128), nullable=False),
        Column("model_version", String(32), nullable=False),
        Column("predicted_close", Float, nullable=False),
        Column("predicted_return", Float, nullable=False),
        Column("lower", Float, nullable=False),
        Column("upper", Float, nullable=False),
        Column("interval_level", Float, nullable=False),
        Column("last_close", Float, nullable=False),
        Column("history_source", String(16), nullable=False),
    )  # fmt: skip
    engine = create_engine(url)
    old.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(old), [{**ROW, "request_id": f"old{i}",
                                    "created_at": datetime.now(UTC)} for i in range(rows)])  # fmt: skip
    engine.dispose()


def test_a_log_from_before_migrations_is_migrated_without_losing_rows(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from forecaster.predlog.migrate import current, head

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    _first_shipped_schema(url, rows=3)
    with create_engine(url).connect() as conn:
        before = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM predictions"))]
    log = PredictionLog(url)
    log.start()  # migrates: stamps the old schema 0001, then upgrades to head
    log.record({**ROW, "request_id": "new", "quantiles": '{"0.5": 2507.0}', "volatility": 0.01})
    log.close()
    rows = read_log(url)
    assert [r["request_id"] for r in rows] == ["old0", "old1", "old2", "new"]
    for old, migrated in zip(before, rows, strict=False):  # the raw SQL row reads as text
        assert {k: str(migrated[k]) for k in old} == {k: str(v) for k, v in old.items()}
        assert migrated["quantiles"] is None
    assert rows[-1]["quantiles"] == {"0.5": 2507.0}
    assert rows[-1]["volatility"] == 0.01
    engine = create_engine(url)
    assert current(engine) == head()
    engine.dispose()


def test_migrating_twice_or_from_nothing_ends_at_the_same_schema(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    from forecaster.predlog.migrate import head, upgrade

    fresh = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert upgrade(fresh) == head()
    assert upgrade(fresh) == head()  # nothing to do the second time
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    _first_shipped_schema(old_url, rows=1)
    migrated = create_engine(old_url)
    upgrade(migrated)

    def shape(engine):  # type: ignore[no-untyped-def]
        inspector = inspect(engine)
        columns = {
            c["name"]: (str(c["type"]), c["nullable"]) for c in inspector.get_columns("predictions")
        }
        indexes = {i["name"] for i in inspector.get_indexes("predictions")}
        return columns, indexes

    assert shape(fresh) == shape(migrated)
    assert "ix_predictions_target_date" in shape(fresh)[1]
    fresh.dispose()
    migrated.dispose()


def test_a_log_from_a_newer_forecaster_is_refused_in_one_line_and_never_stops_the_service(
    tmp_path: Path,
) -> None:
    import pytest
    from sqlalchemy import create_engine, text

    from forecaster.errors import PredictionLogError
    from forecaster.predlog.migrate import VERSION_TABLE, head, upgrade

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = create_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    with pytest.raises(PredictionLogError, match=rf"Can't locate revision identified by '0099'; "
                       rf".*knows up to revision {head()}"):  # fmt: skip
        upgrade(engine)
    engine.dispose()
    log = PredictionLog(url)
    log.start()  # logs the reason; the service runs on without logging predictions
    log.record(ROW)
    log.close()
    assert read_log(url) == []


def test_rows_are_written_in_batches_and_close_flushes_the_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    batches: list[int] = []
    log = PredictionLog(url, flush_seconds=0.5, on_rows=lambda outcome, n: batches.append(n))
    log.start()
    for i in range(3):
        log.record({**ROW, "request_id": f"a{i}"})
    wait_for(lambda: sum(batches) == 3)
    assert batches == [3]  # the rows of one flush window share a transaction
    log.flush_seconds = 3600  # now nothing is written until the log closes
    for i in range(1500):
        log.record({**ROW, "request_id": f"r{i}"})
    time.sleep(0.6)
    assert batches == [3]
    log.close()
    assert batches == [3, 1000, 500]
    ids = [r["request_id"] for r in read_log(url)]
    assert ids == [f"a{i}" for i in range(3)] + [f"r{i}" for i in range(1500)]


# Runs the first migration of a fresh log with the file size capped, as a full disk would stop
# it: SQLite's journal and database writes fail part-way through the revisions.
_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
from sqlalchemy import create_engine
from forecaster.errors import PredictionLogError
from forecaster.predlog.migrate import upgrade
try:
    upgrade(create_engine(sys.argv[1]))
except PredictionLogError as exc:
    print("failed:", exc)
else:
    print("migrated")
"""


def test_a_migration_cut_by_a_full_disk_leaves_nothing_half_applied(tmp_path: Path) -> None:
    """Before: the tables created before the disk filled stayed, and every later start failed
    with "table predictions already exists", so nothing was ever logged again."""
    import subprocess
    import sys

    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    cut = subprocess.run([sys.executable, "-c", _FULL_DISK, url], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert cut.stdout.startswith("failed: "), cut.stdout + cut.stderr[-2000:]
    engine = create_engine(url)
    assert inspect(engine).get_table_names() == []  # rolled back, whatever it had reached
    engine.dispose()
    # Space is back: the service starts and logs every prediction.
    log = PredictionLog(url)
    log.start()
    rows = [{**ROW, "request_id": f"r{i}"} for i in range(5)]
    for row in rows:
        log.record(row)
    log.close()
    assert [r["request_id"] for r in read_log(url)] == [r["request_id"] for r in rows]


def test_a_log_that_cannot_open_yet_keeps_its_rows_and_opens_later(tmp_path: Path) -> None:
    """The log's directory cannot be created at start-up (a file is in the way, as a volume
    not mounted yet might be): rows wait in the queue, opening is retried, and once the way
    is clear every row is written."""
    blocker = tmp_path / "logs"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker / 'predictions.db'}"
    log = PredictionLog(url)
    log.start()
    for i in range(3):
        log.record({**ROW, "request_id": f"r{i}"})
    wait_for(lambda: log.error is not None)
    assert log.status() == "opening"
    blocker.unlink()
    wait_for(lambda: log.ready)
    assert log.status() == "logging"
    log.close()
    assert [r["request_id"] for r in read_log(url)] == ["r0", "r1", "r2"]


def test_a_url_that_can_never_work_turns_logging_off_in_one_line(tmp_path: Path) -> None:
    log = PredictionLog("nosuchdialect://x")
    log.start()
    log.record(ROW)
    assert log.status() == "off"
    assert log.error is not None
    assert log.error.startswith("not a usable SQLAlchemy URL")
    log.close()


def test_durable_rows_are_committed_before_the_caller_goes_on(tmp_path: Path) -> None:
    """`committed` returns only once the row's transaction has committed: another connection
    reads it while the log is still open (no close, no flush window)."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    log = PredictionLog(url, flush_seconds=3600, durable=True)  # the window is not used
    log.start()

    async def three() -> None:
        await asyncio.gather(*(log.committed({**ROW, "request_id": f"d{i}"}, timeout=10)
                               for i in range(3)))  # fmt: skip
        assert sorted(r["request_id"] for r in read_log(url)) == ["d0", "d1", "d2"]

    asyncio.run(three())
    with sqlite3.connect(tmp_path / "predictions.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    log.close()


def test_a_durable_row_the_log_cannot_take_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    off = PredictionLog("nosuchdialect://x", durable=True)
    off.start()
    with pytest.raises(PredictionLogError, match="the prediction log is off"):
        asyncio.run(off.committed(ROW, timeout=1))
    # A database held by another process: the commit does not happen in time.
    path = tmp_path / "predictions.db"
    log = PredictionLog(f"sqlite:///{path}", durable=True)
    log.start()
    asyncio.run(log.committed(ROW, timeout=10))
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(PredictionLogError, match=r"did not commit within 0\.5 s"):
        asyncio.run(log.committed(ROW, timeout=0.5))
    # ... and the busy timeout runs out: the database refused it, said so to whoever waits.
    with pytest.raises(PredictionLogError, match="refused the row"):
        asyncio.run(log.committed(ROW, timeout=30))
    holder.rollback()
    holder.close()
    log.close()


def test_settling_a_caller_that_gave_up_leaves_the_writer_running() -> None:
    """A durable caller that timed out cancels its future, possibly while the writer settles
    it: the writer must not die of InvalidStateError (logging would stop for good)."""
    gave_up: Future[None] = Future()
    gave_up.cancel()
    waiting: Future[None] = Future()
    _settle([(ROW, gave_up), (ROW, None), (ROW, waiting)], None)
    assert waiting.result(timeout=0) is None
    failed: Future[None] = Future()
    _settle([(ROW, gave_up), (ROW, failed)], PredictionLogError("refused"))
    with pytest.raises(PredictionLogError, match="refused"):
        failed.result(timeout=0)
