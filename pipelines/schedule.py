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
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from forecaster.config import ForecasterConfig, ScheduleConfig
from forecaster.errors import ForecasterError
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


def retrain_job(config: ForecasterConfig, force: bool = False) -> RetrainResult | None:
    """One scheduled cycle; failures are logged, never raised into the scheduler."""
    start = time.perf_counter()
    _event("retrain.start")
    try:
        result = run_retrain(config, force=force)
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
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    now = datetime.now(ZoneInfo(config.schedule.timezone))
    next_run = cron_trigger(config.schedule).get_next_fire_time(None, now)
    _event("scheduler.start", cron=config.schedule.cron, timezone=config.schedule.timezone,
           next_run=next_run)  # fmt: skip
    scheduler.start()
