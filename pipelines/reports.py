"""Summaries of the data and window pipelines, as a JSON-able dict and as text for a terminal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.dataset import prepare
from forecaster.features import warmup_rows
from forecaster.schemas import CLOSE, VOLUME, frame_meta
from forecaster.sources import load_frames

Report = tuple[dict[str, Any], str]


def _day(value: Any) -> str:
    return str(pd.Timestamp(value).date())


def data_report(config: ForecasterConfig) -> Report:
    frames = load_frames(config.data)
    tickers = []
    lines = []
    for ticker, frame in frames.items():
        meta = frame_meta(frame)
        entry = {
            "ticker": ticker,
            "source": meta.source,
            "origin": meta.origin,
            "adjustment": meta.adjustment,
            "rows": len(frame),
            "first_date": _day(frame.index[0]),
            "last_date": _day(frame.index[-1]),
            "last_close": float(frame[CLOSE].iloc[-1]),
            "close_min": float(frame[CLOSE].min()),
            "close_max": float(frame[CLOSE].max()),
            "median_volume": float(frame[VOLUME].median()),
        }
        tickers.append(entry)
        lines.append(
            f"{ticker}: {entry['rows']} trading days {entry['first_date']} .. "
            f"{entry['last_date']} from {meta.source} ({meta.origin}), prices {meta.adjustment}\n"
            f"  last close {entry['last_close']:.2f}, close range "
            f"{entry['close_min']:.2f} .. {entry['close_max']:.2f}, "
            f"median volume {entry['median_volume']:,.0f}\n"
            "  validation passed: sorted unique dates, no NaN/inf, positive prices, "
            "high >= low, volume >= 0"
        )
    return {"tickers": tickers}, "\n".join(lines)


def windows_report(config: ForecasterConfig) -> Report:
    frames = load_frames(config.data)
    data = prepare(frames, config)
    windows, split = data.windows, data.split
    parts: dict[str, dict[str, Any]] = {}
    for name, index in (("train", split.train), ("val", split.val), ("test", split.test)):
        y = windows.y[index]
        parts[name] = {
            "windows": len(index),
            "first_target": _day(windows.target_dates[index].min()),
            "last_target": _day(windows.target_dates[index].max()),
            "target_mean": float(np.mean(y)),
            "target_std": float(np.std(y)),
            "up_day_share": float(np.mean(y > 0)),
        }
    payload = {
        "tickers": list(frames),
        "features": list(windows.feature_names),
        "lookback": config.windows.lookback,
        "warmup_rows": warmup_rows(config.features),
        "x_shape": list(windows.x.shape),
        "x_dtype": str(windows.x.dtype),
        "gap": config.split.gap,
        "splits": parts,
        "scaler": data.scaler.to_dict(),
    }
    lines = [
        f"tickers: {', '.join(frames)} ({config.data.source})",
        f"features ({len(windows.feature_names)}): {', '.join(windows.feature_names)}",
        f"windows: {len(windows)} x lookback {config.windows.lookback} x "
        f"{len(windows.feature_names)} features ({windows.x.dtype}, "
        f"{windows.x.nbytes / 2**20:.1f} MiB); target = next-day log return of close",
    ]
    for name, part in parts.items():
        lines.append(
            f"  {name:<5} {part['windows']:>6} windows, targets {part['first_target']} .. "
            f"{part['last_target']}, mean {part['target_mean']:+.5f}, std "
            f"{part['target_std']:.5f}, up days {100 * part['up_day_share']:.1f}%"
        )
    lines.append(
        f"scaler: {data.scaler.method}, fitted on feature rows up to "
        f"{_day(windows.end_dates[split.train].max())} (training dates only)"
    )
    return payload, "\n".join(lines)
