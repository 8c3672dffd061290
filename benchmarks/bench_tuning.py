"""Tuning throughput with 1 and 2 worker processes, and what a search finds vs the default.

    python benchmarks/bench_tuning.py [--trials 8] [--search-trials 20] [--repeats 1]
                                      [--workers 1 2]

Throughput: `forecaster tune --trials N` on the default config and the bundled data, run by
1 worker and then by 2 workers sharing one study (SQLite storage, one torch thread per
worker, fresh study and MLflow store each time); trials per hour from the wall time.
Search: one worker, `--search-trials` trials of the default space; trial 0 is the default
config itself, so the best trial's validation pinball is compared with it in the same study.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FORECASTER = Path(sys.executable).parent / "forecaster"


def run_study(workers: int, trials: int, root: Path, seed: int | None = None) -> dict[str, Any]:
    data_dir = root / f"w{workers}-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    env["OMP_NUM_THREADS"] = "1"
    command = [str(FORECASTER), "-q", "tune", "--json", "--trials", str(trials),
               "--data-dir", str(data_dir), "--study", "bench"]  # fmt: skip
    if seed is not None:
        command += ["--set", f"tuning.seed={seed}"]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(workers)
    ]
    outputs = [p.communicate() for p in processes]
    wall = time.perf_counter() - started
    for process, (_, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"tune failed: {err[-2000:]}")
    payloads = [json.loads(out) for out, _ in outputs]
    last = max(payloads, key=lambda p: p["complete"] + p["pruned"] + p["failed"])
    return {"workers": workers, "trials": trials, "wall_s": round(wall, 1),
            "trials_per_hour": round(trials / wall * 3600, 1),
            "per_worker": [p["ran_here"] for p in payloads], "summary": last}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--search-trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                               f"Python {platform.python_version()}"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        root = Path(tmp)
        for workers in args.workers:
            runs = [run_study(workers, args.trials, root, args.seed) for _ in range(args.repeats)]
            results[f"{workers}_worker"] = {
                "median_trials_per_hour": statistics.median(r["trials_per_hour"] for r in runs),
                "runs": [{k: v for k, v in r.items() if k != "summary"} for r in runs],
                "states": {k: runs[-1]["summary"][k] for k in ("complete", "pruned", "failed")},
            }
            print(json.dumps(results[f"{workers}_worker"]), file=sys.stderr)
        if args.search_trials:
            search = run_study(1, args.search_trials, root, args.seed)["summary"]
            best, base = search["best"], search["baseline"]
            results["search"] = {
                "trials": search["trials"],
                "states": {k: search[k] for k in ("complete", "pruned", "failed")},
                "default_config_val_pinball": base and base["val_pinball"],
                "best_val_pinball": best["val_pinball"],
                "best_over_default": base and round(best["val_pinball"] / base["val_pinball"], 4),
                "best_trial": best["number"],
                "best_params": best["params"],
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
