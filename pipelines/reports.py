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


def metrics_table(summary: dict[str, Any]) -> list[str]:
    """Model vs naive vs linear on the same days, plus the honest headline numbers."""
    lines = [f"  {'':<7}{'MAE':>10}{'RMSE':>10}{'MAPE %':>9}{'dir.acc':>9}"]
    for name in ("model", "naive", "linear"):
        m = summary[name]
        # Naive predicts "no change": it has no direction to score.
        direction = "-" if name == "naive" else f"{100 * m['directional_accuracy']:.1f}%"
        lines.append(
            f"  {name:<7}{m['mae']:>10.3f}{m['rmse']:>10.3f}{m['mape']:>9.3f}{direction:>9}"
        )
    model = summary["model"]
    lo, hi = summary["directional_accuracy_ci95"]
    dm = summary["diebold_mariano"]
    if summary["mae_ratio_vs_naive"] >= 1:
        verdict = "the model does NOT beat naive"
    elif dm["pvalue"] < 0.05:
        verdict = "the model beats naive, significantly"
    else:
        verdict = "below naive, but not significantly (see Diebold-Mariano)"
    lines += [
        f"  MAE ratio vs naive: model {summary['mae_ratio_vs_naive']:.4f} "
        f"(linear {summary['linear_mae_ratio_vs_naive']:.4f}); {verdict}",
        f"  directional accuracy {100 * model['directional_accuracy']:.1f}% "
        f"(95% CI {100 * lo:.1f}..{100 * hi:.1f}) vs up-day share "
        f"{100 * summary['up_day_share']:.1f}% (always predicting 'up')",
        f"  {model['interval_level']:.0%} interval: coverage {100 * model['coverage']:.1f}%, "
        f"mean width {model['interval_width']:.3f}",
        f"  Diebold-Mariano vs naive (abs. error): statistic {dm['statistic']:+.3f}, "
        f"p = {dm['pvalue']:.3f} over {summary['n_days']} days",
    ]
    return lines


def ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri} --port 5000"


def train_text(result: Any) -> str:
    payload = result.to_dict()
    lines = [
        f"run {payload['run_id']} ({payload['epochs']} epochs, best {payload['best_epoch']})",
        f"test period: {payload['metrics']['n_days']} days",
        *metrics_table(payload["metrics"]),
        f"registered {payload['model_name']} version {payload['model_version']} (alias challenger)",
    ]
    if result.decision is not None:
        lines.append(result.decision.reason)
    lines.append(f"browse: {ui_command(payload['tracking_uri'])}")
    return "\n".join(lines)


def backtest_text(payload: dict[str, Any]) -> str:
    lines = [
        f"walk-forward backtest, {len(payload['folds'])} folds, {', '.join(payload['tickers'])}"
    ]
    for fold in payload["folds"]:
        lines.append(
            f"fold {fold['fold']}: {fold['test_start']}..{fold['test_end']} "
            f"({fold['n_days']} days, trained on {fold['train_windows']} windows): "
            f"MAE ratio vs naive {fold['mae_ratio_vs_naive']:.4f}, coverage "
            f"{100 * fold['model']['coverage']:.1f}%"
        )
    lines.append("all folds pooled:")
    lines += metrics_table(payload["aggregate"])
    return "\n".join(lines)
