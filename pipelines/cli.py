"""The `forecaster` command line: one subcommand per job, one-line errors, exit codes.

Exit codes: 0 success, 1 a user-fixable error (bad data, config, unreachable source), 2 bad
command-line usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from tqdm.contrib.logging import logging_redirect_tqdm

from forecaster import __version__
from forecaster.config import ForecasterConfig, load_config
from forecaster.errors import ConfigError, ForecasterError, first_line
from forecaster.local_state import shown_url
from forecaster.progress import interactive

logger = logging.getLogger("forecaster.cli")

Handler = Callable[[argparse.Namespace, Any], int]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data and configuration")
    group.add_argument("--config", type=Path, metavar="FILE", help="YAML config (see configs/)")
    group.add_argument("--ticker", action="append", metavar="T", help="ticker to load (repeatable)")
    group.add_argument(
        "--csv",
        action="append",
        type=Path,
        metavar="FILE",
        help="Yahoo-style daily CSV to use as the source (repeatable; ticker = --ticker or stem)",
    )
    group.add_argument(
        "--source", choices=["sample", "csv", "yahoo"], help="data source (default: sample)"
    )
    group.add_argument("--start", type=_date, metavar="YYYY-MM-DD", help="first date to use")
    group.add_argument("--end", type=_date, metavar="YYYY-MM-DD", help="last date to use")
    group.add_argument("--data-dir", type=Path, metavar="DIR", help="cache and local state")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override any config key, e.g. --set windows.lookback=20 (repeatable)",
    )
    group.add_argument("--json", action="store_true", help="print one JSON object")


def _config_from_args(args: argparse.Namespace) -> ForecasterConfig:
    values: dict[str, Any] = {}
    if args.csv:
        values["data.source"] = "csv"
        values["data.csv_files"] = [str(p) for p in args.csv]
    if args.source:
        values["data.source"] = args.source
    if args.ticker:
        values["data.tickers"] = list(args.ticker)
    # replay reads --start/--end as its range of as-of days, not as a clip of the data.
    dates = () if args.handler is cmd_replay else (("start", args.start), ("end", args.end))
    for key, value in (*dates, ("data_dir", args.data_dir)):
        if value is not None:
            values[f"data.{key}"] = str(value)
    if getattr(args, "folds", None) is not None:
        values["split.folds"] = args.folds
    return load_config(args.config, args.overrides, values)


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    out = getattr(args, "stdout", None) or sys.stdout
    print(json.dumps(payload, indent=2, default=str) if args.json else text, file=out)


def cmd_data(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.reports import data_report

    payload, text = data_report(config)
    _emit(args, payload, text)
    return 0


def cmd_windows(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.reports import windows_report

    payload, text = windows_report(config)
    _emit(args, payload, text)
    return 0


def _quiet_lightning(args: argparse.Namespace) -> None:
    """Lightning sets its loggers to INFO when imported; keep its banners out unless -v."""
    if not args.verbose:
        for name in (
            "lightning.pytorch",
            "lightning.fabric",
            "lightning.pytorch.utilities.rank_zero",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)


def _joined_as_ddp_worker(config: ForecasterConfig) -> bool:
    """In a training process of rank > 0, join the fits and nothing else (pipelines/ddp.py)."""
    from pipelines.ddp import train_as_worker, worker_rank

    if worker_rank() == 0:
        return False
    train_as_worker(config)
    return True


def cmd_train(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.reports import retrain_text
    from pipelines.retrain import run_retrain

    _quiet_lightning(args)
    if _joined_as_ddp_worker(config):
        return 0
    # The retraining pipeline forced: same steps, lock and run layout, trains even without
    # new data.
    result = run_retrain(config, force=True, replace_champion=args.force, name="train")
    _emit(args, result.to_dict(), retrain_text(result))
    return 0


def cmd_backtest(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from forecaster.evaluation.backtest import run_backtest
    from pipelines.reports import backtest_text

    _quiet_lightning(args)
    payload = run_backtest(config, predictions=args.predictions)
    _emit(args, payload, backtest_text(payload))
    if args.predictions is not None:
        print(f"forecaster: wrote every test day's quantiles to {args.predictions}",
              file=sys.stderr)  # fmt: skip
    return 0


def cmd_tune(args: argparse.Namespace, config: ForecasterConfig) -> int:
    import optuna

    from pipelines.tuning import run_tune, tune_text

    _quiet_lightning(args)
    # Optuna's own stderr handler bypasses -q; its records go through ours instead.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
    storage = args.storage or os.environ.get("FORECASTER_TUNING_STORAGE") or None
    payload = run_tune(config, args.trials, args.study, storage, args.timeout, args.best_config)
    _emit(args, payload, tune_text(payload))
    return 0


def cmd_monitor(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.monitor import monitor_text, run_monitor

    result = run_monitor(config, args.log_url)
    _emit(args, result.to_dict(), monitor_text(result))
    return 0


def cmd_replay(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.replay import replay_text, run_replay

    if args.start is None or args.end is None:
        raise ConfigError("replay needs --start and --end: the as-of days to forecast")
    if args.url is not None:  # the service writes its own log
        payload = run_replay(config, args.start, args.end, args.model_uri, args.log_url, args.url)
    else:
        payload = run_replay(config, args.start, args.end, args.model_uri, args.log_url)
    _emit(args, payload, replay_text(payload))
    return 0


def cmd_predict(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.predicting import predict_text, run_predict

    payload = run_predict(config, args.model_uri)
    _emit(args, payload, predict_text(payload))
    return 0


def cmd_retrain(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.reports import retrain_text
    from pipelines.retrain import run_retrain

    _quiet_lightning(args)
    if _joined_as_ddp_worker(config):
        return 0
    result = run_retrain(config, force=args.force, until=args.until)
    _emit(args, result.to_dict(), retrain_text(result))
    return 0


def cmd_schedule(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from pipelines.schedule import retrain_job, run_forever

    _quiet_lightning(args)
    if args.once:
        result = retrain_job(config, force=args.force)
        return 0 if result is not None else 1
    run_forever(config)
    return 0


def cmd_ui(args: argparse.Namespace, config: ForecasterConfig) -> int:
    from forecaster.registry.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(config)
    if uri.startswith(("http://", "https://")):
        print(f"the tracking server serves its own UI: open {uri}")
        return 0
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_bin), "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port)]  # fmt: skip
    print(f"MLflow UI on http://{args.host}:{args.port} ({uri})", flush=True)
    # Its own process group: MLflow's server starts worker processes, and stopping `forecaster
    # ui` (SIGTERM, Ctrl+C) must stop all of them and free the port.
    process = subprocess.Popen(command, start_new_session=True)
    terminated = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True
        _stop_group(process)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = process.wait()
        return 128 + signal.SIGTERM if terminated else code
    except KeyboardInterrupt:
        _stop_group(process)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's whole group, SIGKILL what is left after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                process.poll()
                return
            process.poll()  # reap the leader so it does not linger as a zombie
            time.sleep(0.1)


class _OneLineStartupFailure(logging.Filter):
    """uvicorn logs a failed application start-up as a whole traceback; show its last line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback"):
            last = message.strip().splitlines()[-1]
            record.msg, record.args = last.split(": ", 1)[-1], None
        return True


# Service settings that `serve` derives from --config/--data-dir/--set, by config key.
_SERVE_SETTINGS = {
    "data.data_dir": "FORECASTER_DATA_DIR",
    "tracking.tracking_uri": "FORECASTER_TRACKING_URI",
    "tracking.model_name": "FORECASTER_MODEL_NAME",
    "data.auto_adjust": "FORECASTER_AUTO_ADJUST",
    "data.source": "FORECASTER_DATA_SOURCE",
}


def _given_keys(args: argparse.Namespace) -> set[str]:
    """The dotted config keys this command line sets itself (flags, --set, --config)."""
    keys = {str(item).partition("=")[0].strip() for item in args.overrides or ()}
    if args.data_dir is not None:
        keys.add("data.data_dir")
    if args.config is not None:

        def walk(tree: object, prefix: str = "") -> None:
            if isinstance(tree, dict):
                for name, value in tree.items():
                    walk(value, f"{prefix}{name}.")
            elif prefix:
                keys.add(prefix.rstrip("."))

        walk(yaml.safe_load(Path(args.config).read_text(encoding="utf-8")))
    return keys


def _serve_environment(args: argparse.Namespace) -> dict[str, str]:
    """FORECASTER_* values for the app (and its workers), by one rule: a value this command
    line gives (flag, --set, --config) > the FORECASTER_* environment > the default. A value
    given on the command line that contradicts the environment is a ConfigError, not a silent
    choice of what to serve."""
    if args.config is None and args.data_dir is None and not args.overrides:
        return {}
    from forecaster.registry.tracking import resolve_tracking_uri

    values = {"data.data_dir": str(args.data_dir)} if args.data_dir else None
    config = load_config(args.config, args.overrides, values)
    given = _given_keys(args)
    derived = {
        "data.data_dir": str(config.data.data_dir),
        "tracking.tracking_uri": config.tracking.tracking_uri or "",
        "tracking.model_name": config.tracking.model_name,
        "data.auto_adjust": "true" if config.data.auto_adjust else "false",
        "data.source": config.data.source,
    }
    env: dict[str, str] = {}
    conflicts = []
    for key, name in _SERVE_SETTINGS.items():
        if key not in given or not derived[key]:
            continue
        if key == "data.source" and derived[key] not in ("sample", "yahoo"):
            continue  # a CSV-trained model serves client history; the service keeps its source
        names = (name, "MLFLOW_TRACKING_URI") if key == "tracking.tracking_uri" else (name,)
        for known in names:
            current = os.environ.get(known)
            if current and current != derived[key]:
                conflicts.append(
                    f"{key} {shown_url(derived[key])!r} but {known}={shown_url(current)!r}"
                )
        env[name] = derived[key]
    if conflicts:
        raise ConfigError(
            "serve: the command line and the environment disagree on what to serve ("
            + "; ".join(conflicts)
            + "); drop one of them"
        )
    has_store = any(os.environ.get(n) for n in ("FORECASTER_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    if "FORECASTER_TRACKING_URI" not in env and not has_store:
        env["FORECASTER_TRACKING_URI"] = resolve_tracking_uri(config)  # the data dir's store
    return env


def cmd_serve(args: argparse.Namespace, config: ForecasterConfig | None) -> int:
    import uvicorn

    os.environ.update(_serve_environment(args))

    logging.getLogger("uvicorn.error").addFilter(_OneLineStartupFailure())
    # Model files are fetched on every hot reload: no progress bars in a server's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # The service retries the store itself, with its own backoff: a call cut by an outage
    # should fail at once, not sit in MLflow's own retries (7, about 250 s) holding a reload.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # Several workers count in prometheus_client's multiprocess files, in a directory that
    # must start empty and is removed afterwards (unless the caller chose one).
    own_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="forecaster-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    # The app reads its settings from the environment (FORECASTER_*, MLFLOW_TRACKING_URI).
    try:
        uvicorn.run(
            "service.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning" if args.quiet else "info",
            access_log=args.access_log,
            # h11 with bounded request heads and a head deadline (FORECASTER_MAX_HEADER_BYTES,
            # FORECASTER_HEADER_TIMEOUT_SECONDS); httptools buffers headers without a limit.
            http="service.server:BoundedH11Protocol",
        )
    except SystemExit as exc:  # uvicorn exits 3 when the app refuses to start
        return 1 if exc.code else 0
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Next-trading-day stock forecasts from daily OHLCV data.",
    )
    parser.add_argument("--version", action="version", version=f"forecaster {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="load and validate a source, print a summary of each ticker")
    _add_config_options(data)
    data.set_defaults(handler=cmd_data)

    windows = sub.add_parser(
        "windows", help="run the feature/window pipeline and summarise the windows and splits"
    )
    _add_config_options(windows)
    windows.set_defaults(handler=cmd_windows)

    train = sub.add_parser(
        "train",
        help="the retraining pipeline forced: train the LSTM, score it against naive, GARCH "
        "and linear baselines, log to MLflow, register and gate promotion",
    )
    _add_config_options(train)
    train.add_argument(
        "--force", action="store_true", help="replace a champion that cannot be scored"
    )
    train.set_defaults(handler=cmd_train)

    backtest = sub.add_parser(
        "backtest", help="walk-forward backtest (expanding window, refit per fold); no registry"
    )
    _add_config_options(backtest)
    backtest.add_argument("--folds", type=int, metavar="N", help="number of folds (split.folds)")
    backtest.add_argument(
        "--predictions",
        type=Path,
        metavar="FILE.csv",
        help="write every test day's quantiles (price units) of every fold to this CSV",
    )
    backtest.set_defaults(handler=cmd_backtest)

    tune = sub.add_parser(
        "tune",
        help="hyper-parameter search (Optuna) on walk-forward folds before the test period; "
        "run it in several processes or machines to share one study",
    )
    _add_config_options(tune)
    tune.add_argument("--trials", type=int, required=True, metavar="N",
                      help="trials the study should hold, all workers together")  # fmt: skip
    tune.add_argument("--study", metavar="NAME", help="study name (default: tuning.study)")
    tune.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage (default: $FORECASTER_TUNING_STORAGE, else tuning.storage, else "
        "sqlite:///<data_dir>/optuna.db); postgresql://... lets workers anywhere join",
    )
    tune.add_argument("--timeout", type=float, metavar="S",
                      help="start no trial after S seconds")  # fmt: skip
    tune.add_argument(
        "--best-config",
        type=Path,
        metavar="FILE.yaml",
        help="write the best trial as a config for: forecaster retrain --config FILE.yaml",
    )
    tune.set_defaults(handler=cmd_tune)

    monitor = sub.add_parser(
        "monitor", help="score the served forecasts against the closes that followed"
    )
    _add_config_options(monitor)
    monitor.add_argument(
        "--log-url",
        metavar="URL",
        help="prediction log (default: $FORECASTER_PREDICTION_LOG_URL, else "
        "sqlite:///<data_dir>/predictions.db)",
    )
    monitor.set_defaults(handler=cmd_monitor)

    replay = sub.add_parser(
        "replay",
        help="log a registered model's forecasts as of each day from --start to --end, "
        "as the API would",
    )
    _add_config_options(replay)
    replay.add_argument("--model-uri", metavar="URI",
                        help="default: models:/<tracking.model_name>@champion")  # fmt: skip
    replay.add_argument("--log-url", metavar="URL",
                        help="prediction log (as for monitor)")  # fmt: skip
    replay.add_argument(
        "--url",
        metavar="URL",
        help="ask a running service (e.g. http://127.0.0.1:8000) instead of loading the model; "
        "the service logs the forecasts in its own prediction log",
    )
    replay.set_defaults(handler=cmd_replay)

    predict = sub.add_parser("predict", help="next-day forecast from a registered model")
    _add_config_options(predict)
    predict.add_argument(
        "--model-uri",
        metavar="URI",
        help="model to load (default: models:/<tracking.model_name>@champion)",
    )
    predict.set_defaults(handler=cmd_predict)

    retrain = sub.add_parser(
        "retrain",
        help="the retraining pipeline: ingest, validate, features, train, evaluate, register, "
        "promote (locked; skips when there is no new data)",
    )
    _add_config_options(retrain)
    retrain.add_argument(
        "--force",
        action="store_true",
        help="train even without new data, and replace a champion that cannot be scored",
    )
    retrain.add_argument(
        "--until",
        default="promote",
        choices=["ingest", "validate", "features", "train", "evaluate", "register", "promote"],
        help="stop after this step (for debugging a step)",
    )
    retrain.set_defaults(handler=cmd_retrain)

    schedule = sub.add_parser(
        "schedule", help="run retrain on the configured cron (schedule.cron, schedule.timezone)"
    )
    _add_config_options(schedule)
    schedule.add_argument("--once", action="store_true", help="run one cycle now and exit")
    schedule.add_argument("--force", action="store_true", help="with --once: train anyway")
    schedule.set_defaults(handler=cmd_schedule)

    ui = sub.add_parser("ui", help="the MLflow UI on this project's tracking store")
    _add_config_options(ui)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)

    serve = sub.add_parser(
        "serve",
        help="run the prediction API (settings from FORECASTER_* environment variables)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    group = serve.add_argument_group(
        "configuration",
        "the service reads FORECASTER_* variables; these flags set the ones they cover "
        "(data dir, tracking URI, model name, data source, auto_adjust) from a config",
    )
    group.add_argument("--config", type=Path, metavar="FILE", help="YAML config (see configs/)")
    group.add_argument("--data-dir", type=Path, metavar="DIR", help="stores, caches and logs")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       dest="overrides", help="override a config key (repeatable)")  # fmt: skip
    serve.set_defaults(handler=cmd_serve, needs_config=False)
    return parser


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not verbose:
        for noisy in ("yfinance", "urllib3", "peewee", "lightning.pytorch", "alembic", "mlflow",
                      "apscheduler", "optuna"):  # fmt: skip
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    # Progress bars for local artifact copies only clutter a terminal or a CI log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    # MLflow sets its own loggers' level when it is first imported (after this, lazily), from
    # this variable; our lines say what its INFO lines would.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if args.verbose else "WARNING")
    configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        config = _config_from_args(args) if getattr(args, "needs_config", True) else None
        # On a terminal, log lines are written above the progress bars, not through them.
        bars = logging_redirect_tqdm() if interactive() else contextlib.nullcontext()
        if getattr(args, "json", False):
            # Libraries print progress to stdout (MLflow's registry does); with --json the
            # only thing on stdout is the JSON object, everything else goes to stderr.
            args.stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr), bars:
                return handler(args, config)
        with bars:
            return handler(args, config)
    except ForecasterError as exc:
        print(f"forecaster: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"forecaster: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # MLflow's own errors (a bad URI, a refused request) are user-facing too: one line.
        if type(exc).__module__.startswith("mlflow."):
            print(f"forecaster: error: MLflow: {first_line(exc)}", file=sys.stderr)
            return 1
        if args.verbose:
            raise
        # A failure nobody anticipated still reaches the user as one line; -v shows where.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"forecaster: error: unexpected {type(exc).__name__}: {first[:500]} (run again "
              "with -v for the traceback, and please report it)", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("forecaster: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
