"""Window-building throughput next to a plain numpy copy of the same output size, same run.

    python benchmarks/bench_windows.py [--rows 1000000] [--features 8] [--lookback 60] [--repeats 5]

The baseline is `np.copy` of a float32 array the size of the windows (a fresh output buffer,
as windowing has): the least work any materialised windowing can do. One untimed warm-up run of
each; reports medians. Record them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from forecaster.data.windows import sliding_windows


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--lookback", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    values64 = rng.normal(size=(args.rows, args.features))
    values32 = values64.astype(np.float32)
    n_windows = args.rows - args.lookback + 1
    shape = (n_windows, args.lookback, args.features)
    src = np.ones(shape, dtype=np.float32)
    gib = src.nbytes / 2**30

    # One untimed run of each, so first-touch page faults of the allocator do not count.
    src.copy()
    sliding_windows(values32, args.lookback)
    sliding_windows(values64, args.lookback)

    dst = src.copy()  # pre-faulted target for the copyto row
    results = {
        "numpy copy (baseline)": timed(lambda: src.copy(), args.repeats),
        "numpy copyto, reused buffer": timed(lambda: np.copyto(dst, src), args.repeats),
        "windows float32 -> float32": timed(
            lambda: sliding_windows(values32, args.lookback), args.repeats
        ),
        "windows float64 -> float32": timed(
            lambda: sliding_windows(values64, args.lookback), args.repeats
        ),
    }
    base = statistics.median(results["numpy copy (baseline)"])
    print(
        f"{args.rows:,} rows x {args.features} features, lookback {args.lookback} -> "
        f"{n_windows:,} windows, {gib:.2f} GiB float32 output"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    summary = {}
    for name, times in results.items():
        median = statistics.median(times)
        summary[name] = {"median_s": median, "runs_s": times, "ratio_vs_copy": median / base}
        print(
            f"{name:<28} median {median:7.3f} s  ({gib / median:5.2f} GiB/s)  "
            f"x{median / base:4.2f} of copy   runs: {', '.join(f'{t:.3f}' for t in times)}"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
