"""Runs whose process died (SIGKILL, OOM, power loss) stay RUNNING in MLflow for ever.

Every pipeline run records the host, pid and process start time of its owner; the next
pipeline on the same host marks the ones whose owner is gone as KILLED. Runs owned by another
host are left alone: from here nobody can tell whether their process still lives.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)

HOST, PID, STARTED = "pipeline.host", "pipeline.pid", "pipeline.pid_started"


def _process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown.

    With the pid it names one process for good: a pid reused by a later process has a later
    start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # Field 22, counted after the command name, which may itself hold spaces and brackets.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), STARTED: _process_started(pid) or ""}


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _process_started(pid)
    return not (started and now is not None and now != started)


def close_orphaned_runs(tracking_uri: str, experiment_id: str) -> list[str]:
    """Mark RUNNING runs of this host whose owning process is gone as KILLED; returns their ids.

    Best effort: a tracking server that fails here fails the pipeline's own next call anyway.
    """
    client = MlflowClient(tracking_uri)
    host, me = socket.gethostname(), os.getpid()
    try:
        running = client.search_runs(
            [experiment_id],
            f"attributes.status = 'RUNNING' and tags.`{HOST}` = '{host}'",
            max_results=1000,
        )
    except MlflowException as exc:
        logger.warning("could not look for runs left RUNNING by dead processes: %s", exc.message)
        return []
    closed = []
    for run in running:
        tags = run.data.tags
        try:
            pid = int(tags.get(PID, ""))
        except ValueError:
            continue
        if pid == me or _alive(pid, tags.get(STARTED, "")):
            continue
        reason = f"its process (pid {pid} on {host}) ended without closing it"
        client.set_tag(run.info.run_id, "pipeline.status", "killed")
        client.set_tag(run.info.run_id, "pipeline.reason", reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        logger.warning("marked run %s (%s) KILLED: %s", run.info.run_id,
                       run.info.run_name, reason)  # fmt: skip
        closed.append(run.info.run_id)
    return closed
