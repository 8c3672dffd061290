"""The retraining pipeline: happy path, skip, lock, and every failure leaving the champion alone."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from forecaster.config import ForecasterConfig
from forecaster.errors import LockHeldError, RetrainError, SourceUnavailableError
from forecaster.evaluation.gate import Decision
from forecaster.registry.loader import CHALLENGER, CHAMPION, alias_version
from pipelines.cli import main
from pipelines.lock import exclusive_lock
from pipelines.retrain import STEPS, run_retrain
from pipelines.schedule import background_scheduler

pytestmark = pytest.mark.slow


def gate_says(monkeypatch: pytest.MonkeyPatch, promoted: bool) -> None:
    """Put the gate's outcome in a known state: the real criteria are computed and recorded,
    the verdict is the test's. Whether a tiny seeded model beats naive is nobody's test."""
    import pipelines.retrain as retrain_module

    real = retrain_module.decide

    def fixed(*args: Any, **kwargs: Any) -> Decision:
        decision = real(*args, **kwargs)
        return replace(decision, promoted=promoted, reason=f"test gate: {promoted}")

    monkeypatch.setattr(retrain_module, "decide", fixed)


def runs_of(config: ForecasterConfig, run_id: str) -> list[mlflow.entities.Run]:
    client = MlflowClient(config.tracking.tracking_uri)
    experiment = client.get_run(run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run_id}'")


@pytest.fixture
def trained_once(tiny: ForecasterConfig) -> tuple[ForecasterConfig, str]:
    """A store with one retrain done and a champion (aliased by hand if the gate refused)."""
    result = run_retrain(tiny)
    assert result.model_version is not None
    if alias_version("stock-lstm", CHAMPION) is None:
        MlflowClient().set_registered_model_alias("stock-lstm", CHAMPION, result.model_version)
    champion = alias_version("stock-lstm", CHAMPION)
    assert champion is not None
    return tiny, champion


@pytest.mark.parametrize("promoted", [True, False])
def test_happy_path_records_every_step(
    tiny: ForecasterConfig, promoted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate_says(monkeypatch, promoted)
    result = run_retrain(tiny)
    assert result.status == ("promoted" if promoted else "kept")
    assert result.model_version == "1"
    assert list(result.step_seconds or {}) == list(STEPS)
    client = MlflowClient(tiny.tracking.tracking_uri)
    parent = client.get_run(str(result.run_id))
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["pipeline.status"] == result.status
    assert parent.data.tags["pipeline.reason"] == result.reason
    assert parent.data.tags["data.last_date"] == "2018-12-31"
    assert parent.data.tags["data._GSPC.digest"]
    steps = {r.data.tags["pipeline.step"]: r for r in runs_of(tiny, str(result.run_id))}
    assert set(steps) == set(STEPS)
    assert all("duration_s" in r.data.metrics for r in steps.values())
    assert "test_model_mae" in steps["evaluate"].data.metrics
    assert "test_pinball_ratio_vs_garch" in steps["evaluate"].data.metrics
    assert alias_version("stock-lstm", CHAMPION) == ("1" if promoted else None)
    assert alias_version("stock-lstm", CHALLENGER) == "1"


def test_no_new_data_is_skipped_unless_forced(
    trained_once: tuple[ForecasterConfig, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _champion = trained_once
    gate_says(monkeypatch, True)
    skipped = run_retrain(config)
    assert skipped.status == "skipped"
    assert "no new trading day since the data of v1" in skipped.reason
    assert skipped.model_version is None
    forced = run_retrain(config, force=True)
    assert forced.status == "promoted"
    assert forced.model_version == "2"
    assert alias_version("stock-lstm", CHAMPION) == "2"


def test_unchanged_data_registers_nothing_even_without_a_champion(tiny: ForecasterConfig) -> None:
    first = run_retrain(tiny)
    assert first.model_version == "1"
    # Put the registry in the state where no version has earned champion.
    client = MlflowClient(tiny.tracking.tracking_uri)
    if alias_version("stock-lstm", CHAMPION) is not None:
        client.delete_registered_model_alias("stock-lstm", CHAMPION)
    second = run_retrain(tiny)
    assert second.status == "skipped"
    assert "v1" in second.reason
    assert len(client.search_model_versions("name='stock-lstm'")) == 1
    # Data that ends earlier than what v1 saw is not new either.
    earlier = tiny.model_copy(
        update={"data": tiny.data.model_copy(update={"end": pd.Timestamp("2018-11-30").date()})}
    )
    assert run_retrain(earlier).status == "skipped"
    assert len(client.search_model_versions("name='stock-lstm'")) == 1


@pytest.mark.parametrize("failure", ["source", "nan_loss"])
def test_failures_leave_the_champion_and_mark_the_run_failed(
    trained_once: tuple[ForecasterConfig, str], failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, champion = trained_once
    if failure == "source":

        def down(*args: object, **kwargs: object) -> None:
            raise SourceUnavailableError("could not download '^GSPC' from Yahoo Finance: offline")

        monkeypatch.setattr("pipelines.retrain.load_frames", down)
        step = "ingest"
    else:
        monkeypatch.setattr(
            "forecaster.methods.network.lit_module.pinball_loss",
            lambda pred, target, q: pred.sum() * torch.tensor(math.nan),
        )
        step = "train"
    with pytest.raises(RetrainError, match=rf"failed at step {step}: .*champion was not changed"):
        run_retrain(config, force=True)
    assert alias_version("stock-lstm", CHAMPION) == champion
    client = MlflowClient(config.tracking.tracking_uri)
    experiment = client.get_experiment_by_name("forecaster")
    failed = client.search_runs([experiment.experiment_id], "tags.`pipeline.status` = 'failed'")
    assert len(failed) == 1
    assert failed[0].info.status == "FAILED"
    assert failed[0].data.tags["pipeline.failed_step"] == step
    # Re-running after a failure needs no clean-up.
    monkeypatch.undo()
    gate_says(monkeypatch, True)
    again = run_retrain(config, force=True)
    assert again.status == "promoted"
    assert alias_version("stock-lstm", CHAMPION) == again.model_version != champion


def test_a_second_retrain_is_refused_while_one_runs(
    tiny: ForecasterConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = tiny.data.data_dir / "retrain.lock"
    with exclusive_lock(lock):
        # A scheduled retrain and `forecaster train` (the same flow, forced) alike: neither can
        # move `champion` while the other runs.
        for force, name in ((False, "retrain"), (True, "train")):
            with pytest.raises(LockHeldError, match=r"another retrain is running \(pid \d+ since"):
                run_retrain(tiny, force=force, name=name)
        args = ["-q", "train", "--data-dir", str(tiny.data.data_dir), "--set",
                f"tracking.tracking_uri={tiny.tracking.tracking_uri}"]  # fmt: skip
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("forecaster: error: another retrain is running (pid ")
        assert len(err.splitlines()) == 1
    assert not MlflowClient(tiny.tracking.tracking_uri).search_registered_models()
    # The lock is free again once its holder is done.
    with exclusive_lock(lock):
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path: Path) -> None:
    import subprocess
    import sys

    lock = tmp_path / "retrain.lock"
    code = (
        "import sys, time; from pathlib import Path; from pipelines.lock import exclusive_lock\n"
        f"with exclusive_lock(Path({str(lock)!r})):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockHeldError), exclusive_lock(lock):
        pass
    holder.kill()
    holder.wait()
    with exclusive_lock(lock):
        pass


def test_schedule_once_runs_one_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.integration.conftest import TINY

    data_dir = tmp_path / "data"
    sets = [arg for item in TINY for arg in ("--set", item)]
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    args = ["-q", "schedule", "--once", "--data-dir", str(data_dir), "--set",
            f"tracking.tracking_uri={uri}", *sets]  # fmt: skip
    assert main(args) == 0
    client = MlflowClient(uri)
    assert client.get_registered_model("stock-lstm").name == "stock-lstm"
    versions = client.search_model_versions("name='stock-lstm'")
    assert len(versions) == 1


def test_scheduler_fires_the_job_on_a_short_cron(tiny: ForecasterConfig) -> None:
    config = tiny.model_copy(
        update={"schedule": tiny.schedule.model_copy(update={"cron": "*/1 * * * * *"})}
    )
    fired = threading.Event()
    calls: list[float] = []

    def job() -> None:
        calls.append(time.monotonic())
        fired.set()

    scheduler = background_scheduler(config, job)
    scheduler.start()
    try:
        assert fired.wait(timeout=10), "the cron job never fired"
        job_info = scheduler.get_job("retrain")
        assert job_info.max_instances == 1
        assert job_info.coalesce is True
    finally:
        scheduler.shutdown(wait=True)
    assert len(calls) >= 1


def test_schedule_shuts_down_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    log = tmp_path / "schedule.log"
    command = [str(Path(sys.executable).parent / "forecaster"), "schedule", "--data-dir",
               str(tmp_path / "data"), "--set", "schedule.cron=0 0 1 1 *"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "scheduler.start" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "scheduler never started"
            time.sleep(0.2)
        assert '"next_run": "' in log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert '{"event": "scheduler.stop", "signal": "SIGTERM"}' in log.read_text()


def test_until_stops_after_a_step_without_registering(tiny: ForecasterConfig) -> None:
    result = run_retrain(tiny, until="features")
    assert result.status == "partial"
    assert result.reason == "stopped after step features"
    assert result.model_version is None
    client = MlflowClient(tiny.tracking.tracking_uri)
    assert client.search_registered_models() == []
    steps = {r.data.tags["pipeline.step"] for r in runs_of(tiny, str(result.run_id))}
    assert steps == {"ingest", "validate", "features"}
    with pytest.raises(RetrainError, match="unknown step 'deploy'"):
        run_retrain(tiny, until="deploy")


def test_runs_of_a_killed_pipeline_are_marked_killed_by_the_next(tiny: ForecasterConfig) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.integration.conftest import TINY

    uri = str(tiny.tracking.tracking_uri)
    sets = [arg for item in TINY for arg in ("--set", item)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    forecaster = Path(sys.executable).parent / "forecaster"
    args = [str(forecaster), "-q", "train", "--data-dir", str(tiny.data.data_dir), *sets,
            "--set", "training.max_epochs=200", "--set", "training.patience=200",
            "--set", f"tracking.tracking_uri={uri}"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = MlflowClient(uri)
    try:
        deadline = time.monotonic() + 120
        running: list[mlflow.entities.Run] = []
        while time.monotonic() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name("forecaster")
            if experiment is not None:
                running = client.search_runs(
                    [experiment.experiment_id], "attributes.status = 'RUNNING'"
                )
                if any(r.data.tags.get("pipeline.step") == "train" for r in running):
                    break
            time.sleep(0.3)
        assert any(r.data.tags.get("pipeline.step") == "train" for r in running), "never trained"
        assert {r.data.tags["pipeline.pid"] for r in running} == {str(proc.pid)}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stale = {r.info.run_id for r in running}
    assert len(stale) == 2  # the parent run and its train step

    run_retrain(tiny, until="validate")  # any next pipeline run on this host cleans up
    for run_id in stale:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["pipeline.status"] == "killed"
        assert f"pid {proc.pid} on " in run.data.tags["pipeline.reason"]
    experiment = client.get_experiment_by_name("forecaster")
    assert experiment is not None
    assert not client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")


def test_a_drifted_champion_is_retrained_without_new_data_and_the_run_says_why(
    trained_once: tuple[ForecasterConfig, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 resolved forecasts of the champion whose 80% band almost never held the close: the
    scheduled cycle retrains although no trading day is new, and records the reason."""
    import json as jsonlib
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, insert

    from forecaster.data.calendar import TradingCalendar
    from forecaster.data.sources import SampleSource
    from forecaster.predlog.migrate import upgrade
    from forecaster.predlog.schema import predictions
    from pipelines.monitor import default_log_url
    from pipelines.schedule import retrain_job

    config, champion = trained_once
    assert run_retrain(config).status == "skipped"  # no new data: nothing would run
    closes = SampleSource().load("^GSPC")["close"].loc["2018-09-01":"2018-12-28"]
    calendar = TradingCalendar()
    rows = []
    for day, last in list(closes.items())[-61:-1]:  # 60 as-of days whose next session is known
        tight = {
            "0.05": last * 0.9998,
            "0.1": last * 0.9999,
            "0.25": last * 0.99995,
            "0.5": last,
            "0.75": last * 1.00005,
            "0.9": last * 1.0001,
            "0.95": last * 1.0002,
        }
        rows.append({"created_at": datetime.now(UTC), "request_id": f"d{day.date()}",
                     "ticker": "^GSPC", "as_of": day.date(),
                     "target_date": calendar.next_session(day.date()), "model_name": "stock-lstm",
                     "model_version": champion, "predicted_close": last, "predicted_return": 0.0,
                     "lower": tight["0.1"], "upper": tight["0.9"], "interval_level": 0.8,
                     "last_close": last, "history_source": "client",
                     "quantiles": jsonlib.dumps(tight), "volatility": 1e-4})  # fmt: skip
    engine = create_engine(default_log_url(config))
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(predictions), rows)
    engine.dispose()

    gate_says(monkeypatch, False)
    result = retrain_job(config)
    assert result is not None
    assert result.status == "kept"  # trained, scored and registered; the gate kept the champion
    assert result.model_version == str(int(champion) + 1)
    client = MlflowClient(config.tracking.tracking_uri)
    trigger = client.get_run(str(result.run_id)).data.tags["pipeline.trigger"]
    assert trigger.startswith(f"drift: v{champion}'s 80% interval covered ")
    assert "of the last 60 resolved forecasts (Kupiec p" in trigger
