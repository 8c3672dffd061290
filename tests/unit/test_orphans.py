"""Which run owners count as gone: dead pids, and live pids that now name another process."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.orphans import _alive, _process_started, owner_tags


def test_own_process_is_alive_and_a_reused_pid_is_not() -> None:
    tags = owner_tags()
    assert tags["pipeline.pid"] == str(os.getpid())
    started = tags["pipeline.pid_started"]
    assert started == _process_started(os.getpid())
    assert _alive(os.getpid(), started)
    # Same pid, different start time: the owner died and its pid went to a later process.
    assert not _alive(os.getpid(), str(int(started) + 1))
    assert _alive(os.getpid(), "")  # no start time recorded: the pid alone decides


def test_a_finished_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not _alive(child.pid, "")
