"""`forecaster schedule`: the retrain pipeline on a cron line, one run at a time.

Missed runs are coalesced into one, runs never overlap (a retrain still going when the next
fire time comes makes that fire a no-op), every start/finish/failure is one structured log
line, and SIGTERM/SIGINT shut the scheduler down after the running job.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import mlflow
from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from forecaster.config import ForecasterConfig, ScheduleConfig
from forecaster.errors import ForecasterError, first_line
from forecaster.registry.loader import CHAMPION, alias_version
from forecaster.registry.tracking import resolve_tracking_uri
from pipelines.monitor import default_log_url, run_monitor
from pipelines.retrain import RetrainResult, run_retrain

logger = logging.getLogger(__name__)

JOB_ID = "retrain"


def cron_trigger(schedule: ScheduleConfig) -> CronTrigger:
    fields = schedule.cron.split()
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                           day_of_week=day_of_week, timezone=schedule.timezone)  # fmt: skip
    return CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)


def _event(kind: str, **fields: Any) -> None:
    logger.info("%s", json.dumps({"event": kind, **fields}, default=str))


def drift_check(config: ForecasterConfig) -> str | None:
    """Run the monitor on the prediction log (when there is one) and say why the champion's
    live record calls for a retrain, or None. A monitor failure never stops the retrain."""
    url = default_log_url(config)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # nothing served yet
    try:
        result = run_monitor(config, url)
        mlflow.set_tracking_uri(resolve_tracking_uri(config))
        champion = alias_version(config.tracking.model_name, CHAMPION)
    except (ForecasterError, SQLAlchemyError, MlflowException) as exc:
        _event("monitor.failed", error=first_line(exc))
        return None
    _event("monitor.finish", resolved_total=result.resolved_total,
           newly_resolved=result.newly_resolved, champion=champion)  # fmt: skip
    return result.drift_reason(champion) if champion is not None else None


def retrain_job(config: ForecasterConfig, force: bool = False) -> RetrainResult | None:
    """One scheduled cycle: the monitor first, then the retrain, forced when the champion's
    live record has drifted (and saying so). Failures are logged, never raised."""
    start = time.perf_counter()
    drift = drift_check(config)
    trigger = ""
    if drift is not None:
        trigger = f"drift: {drift}"
        _event("retrain.drift", reason=drift)
        force = True
    _event("retrain.start", trigger=trigger or "schedule")
    try:
        result = run_retrain(config, force=force, trigger=trigger)
    except ForecasterError as exc:
        _event("retrain.failed", error=str(exc), seconds=round(time.perf_counter() - start, 2))
        return None
    _event("retrain.finish", status=result.status, reason=result.reason, run_id=result.run_id,
           version=result.model_version, seconds=round(time.perf_counter() - start, 2))  # fmt: skip
    return result


def add_retrain_job(
    scheduler: BaseScheduler, config: ForecasterConfig, job: Callable[[], Any]
) -> None:
    scheduler.add_job(
        job,
        trigger=cron_trigger(config.schedule),
        id=JOB_ID,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=config.schedule.misfire_grace_seconds,
        replace_existing=True,
    )


def background_scheduler(config: ForecasterConfig, job: Callable[[], Any]) -> BackgroundScheduler:
    """For embedding and tests: the same job and trigger on a background thread."""
    scheduler = BackgroundScheduler(timezone=config.schedule.timezone)
    add_retrain_job(scheduler, config, job)
    return scheduler


def run_forever(config: ForecasterConfig) -> None:
    scheduler = BlockingScheduler(timezone=config.schedule.timezone)
    add_retrain_job(scheduler, config, lambda: retrain_job(config))

    def stop(signum: int, _frame: FrameType | None) -> None:
        _event("scheduler.stop", signal=signal.Signals(signum).name)
        if scheduler.state == STATE_STOPPED:  # a signal before start() finished: nothing runs
            raise SystemExit(0)
        scheduler.shutdown(wait=True)

    def started(_: SchedulerEvent) -> None:
        # Said once the scheduler runs (a stop from here on is a clean shutdown), not before.
        now = datetime.now(ZoneInfo(config.schedule.timezone))
        next_run = cron_trigger(config.schedule).get_next_fire_time(None, now)
        _event("scheduler.start", cron=config.schedule.cron, timezone=config.schedule.timezone,
               next_run=next_run)  # fmt: skip

    scheduler.add_listener(started, EVENT_SCHEDULER_STARTED)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
