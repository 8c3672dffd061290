"""Summaries of the data and window pipelines, as a JSON-able dict and as text for a terminal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import prepare
from forecaster.data.features import warmup_rows
from forecaster.data.schemas import CLOSE, VOLUME, frame_meta
from forecaster.data.sources import load_frames
from forecaster.evaluation.metrics import summary_row
from forecaster.methods import CLASSIC

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


def _p(block: dict[str, Any]) -> str:
    return "n/a" if block["pvalue"] is None else f"{block['pvalue']:.3g}"


def metrics_table(summary: dict[str, Any]) -> list[str]:
    """Every forecaster on the same days: point metrics in price units, proper scores of the
    distribution in log-return units, then the honest headline."""
    levels = list(summary["model"]["coverage"])
    names = [n for n in ("model", "raw", *CLASSIC, "linear") if n in summary]
    width = max(7, *(len(n) + 1 for n in names))
    cov_head = "".join(f"{'cov' + k:>9}" for k in levels)
    lines = [f"  {'':<{width}}{'MAE':>9}{'dir.acc':>9}{'pinball':>10}{'CRPS':>10}{cov_head}"]
    for name in names:
        m = summary[name]
        acc = m["directional_accuracy"]
        direction = "-" if acc is None else f"{100 * acc:.1f}%"
        coverage = "".join(f"{100 * m['coverage'][k]:>8.1f}%" for k in levels)
        lines.append(
            f"  {name:<{width}}{m['mae']:>9.3f}{direction:>9}{1e4 * m['pinball']:>10.3f}"
            f"{1e4 * m['crps']:>10.3f}{coverage}"
        )
    lines.append(
        "  (pinball and CRPS in basis points of log return; coverage of central intervals)"
    )
    mae_ratio = summary["mae_ratio_vs_naive"]
    point_p = summary["dm_mae_worse_vs_naive"]
    lines.append(
        f"  point: MAE ratio vs naive persistence {mae_ratio:.4f} (one-sided p that it is "
        f"worse: {_p(point_p)}); "
        + ("no point skill, as expected on daily data" if mae_ratio >= 0.995 else
           "below naive" + (", significantly" if summary["diebold_mariano"]["pvalue"] is not None
                            and summary["diebold_mariano"]["pvalue"] < 0.05 else
                            ", not significantly"))
    )  # fmt: skip
    prefix = "pinball_ratio_vs_"
    compared = [k.removeprefix(prefix) for k in summary
                if k.startswith(prefix) and k != prefix + "strongest"]  # fmt: skip
    for vs in compared:
        ratio = summary[f"pinball_ratio_vs_{vs}"]
        if ratio is None or f"dm_pinball_vs_{vs}" not in summary:
            continue
        dm = summary[f"dm_pinball_vs_{vs}"]
        verdict = (
            "beats it, significantly"
            if dm["pvalue"] is not None and dm["pvalue"] < 0.05
            else "beats it, not significantly"
            if ratio < 1
            else "does NOT beat it"
        )
        lines.append(
            f"  distribution: pinball ratio vs {vs} {ratio:.4f} ({100 * (1 - ratio):+.1f}%), "
            f"one-sided DM p {_p(dm)}: the model {verdict}"
        )
    strongest = summary.get("strongest_comparator")
    if strongest is not None and summary.get("pinball_ratio_vs_strongest") is not None:
        lines.append(
            f"  strongest classic comparator on these days: {strongest} (the model's pinball "
            f"ratio vs it {summary['pinball_ratio_vs_strongest']:.4f})"
        )
    kupiec = ", ".join(
        f"{float(k):.0%} p {v:.3g}" for k, v in summary["model"]["kupiec_pvalue"].items()
    )
    lines.append(f"  Kupiec (coverage = nominal): {kupiec}")
    for flag in summary.get("red_flags", []):
        lines.append(f"  RED FLAG (probable look-ahead): {flag}")
    return lines


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def per_ticker_table(per_ticker: dict[str, Any]) -> list[str]:
    """One line per ticker on its own test days: the pooled figures can hide a ticker where
    the model loses."""
    if not per_ticker:
        return []
    first = summary_row(next(iter(per_ticker.values())))
    levels = [k.removeprefix("coverage_") for k in first if k.startswith("coverage_")]
    width = max(8, *(len(t) + 1 for t in per_ticker))
    cov_head = "".join(f"{'cov' + k:>9}" for k in levels)
    lines = [
        "per ticker (model vs baselines on each ticker's own test days; p: one-sided DM):",
        f"  {'':<{width}}{'days':>6}{'vs naive':>10}{'p':>10}{'vs garch':>10}{'p':>10}"
        f"{'strongest':>13}{'vs it':>8}{'p':>10}{'MAE ratio':>10}{cov_head}",
    ]
    for ticker, block in per_ticker.items():
        row = summary_row(block)
        coverage = "".join(f"{100 * row[f'coverage_{k}']:>8.1f}%" for k in levels)
        ratios = "".join(
            f"{_num(row['pinball_ratio_vs_' + vs], '.4f'):>10}"
            f"{_num(row['dm_p_vs_' + vs], '.3g'):>10}"
            for vs in ("naive", "garch")
        )
        strongest = (f"{row['strongest_comparator'] or 'n/a':>13}"
                     f"{_num(row['pinball_ratio_vs_strongest'], '.4f'):>8}"
                     f"{_num(row['dm_p_vs_strongest'], '.3g'):>10}")  # fmt: skip
        mae = _num(row["mae_ratio_vs_naive"], ".4f")
        lines.append(f"  {ticker:<{width}}{row['n_days']:>6}{ratios}{strongest}{mae:>10}{coverage}")
    return lines


def calibration_table(per_ticker: dict[str, Any]) -> list[str]:
    """Coverage per ticker before (the network's raw bands) and after recalibration."""
    blocks = {t: b for t, b in per_ticker.items() if "raw" in b}
    if not blocks:
        return []
    levels = list(next(iter(blocks.values()))["model"]["coverage"])
    width = max(8, *(len(t) + 1 for t in blocks))
    head = "".join(f"{'cov' + k:>18}" for k in levels)
    lines = ["bands recalibrated per ticker (coverage on the test days, raw -> served):",
             f"  {'':<{width}}{head}"]  # fmt: skip
    for ticker, block in blocks.items():
        raw, served = block["raw"]["coverage"], block["model"]["coverage"]
        cells = "".join(f"{100 * raw[k]:>10.1f}% ->{100 * served[k]:>5.1f}%" for k in levels)
        lines.append(f"  {ticker:<{width}}{cells}")
    return lines


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str | None:
    """Where people open the MLflow UI: the configured address, else the tracking server's
    own, else None (a local store: `forecaster ui` serves it)."""
    if ui_url:
        return ui_url.rstrip("/")
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else None


def run_url(
    tracking_uri: str, experiment_id: str, run_id: str, path: str = "", ui_url: str | None = None
) -> str:
    """The run's page in the MLflow UI (`forecaster ui`'s default address for a local
    store)."""
    base = ui_base(tracking_uri, ui_url) or "http://127.0.0.1:5000"
    page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{page}/artifactPath/{path}" if path else page


def model_url(tracking_uri: str, name: str, version: str, ui_url: str | None = None) -> str:
    """The registered version's page (tags, aliases, its run)."""
    base = ui_base(tracking_uri, ui_url) or "http://127.0.0.1:5000"
    return f"{base}/#/models/{name}/versions/{version}"


def ui_command(
    tracking_uri: str, ui_url: str | None = None, experiment_id: str | None = None
) -> str:
    """How to see the runs: MLflow 3 opens an experiment on its GenAI overview, so the link
    names the experiment's training-runs table."""
    base = ui_base(tracking_uri, ui_url)
    runs = f"/#/experiments/{experiment_id}/runs" if experiment_id else ""
    if base is not None:
        return f"open {base}{runs}"
    if runs:
        return (f"forecaster ui, then http://127.0.0.1:5000{runs} (or: mlflow ui "
                f"--backend-store-uri {tracking_uri} --port 5000)")  # fmt: skip
    return f"forecaster ui (or: mlflow ui --backend-store-uri {tracking_uri} --port 5000)"


def _epochs_text(members: list[dict[str, int]]) -> str:
    if not members:
        return ""
    if len(members) == 1:
        return f" ({members[0]['epochs']} epochs, best {members[0]['best_epoch']})"
    total = sum(m["epochs"] for m in members)
    best = ", ".join(str(m["best_epoch"]) for m in members)
    return f" ({len(members)} ensemble members, {total} epochs; best epochs {best})"


def retrain_text(result: Any) -> str:
    """What `forecaster train` and `forecaster retrain` print."""
    payload = result.to_dict()
    lines = [f"{result.status}: {result.reason}"] if result.status in ("skipped", "partial") else []
    if payload["run_id"]:
        epochs = _epochs_text(payload["members"] or [])
        lines.append(f"run {payload['run_id']}{epochs}")
    if result.step_seconds:
        lines.append("steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.step_seconds.items()))
    if payload["universe"]:
        lines.append(
            "universe: "
            + ", ".join(f"{t} {r['first']}..{r['last']}" for t, r in payload["universe"].items())
        )
    if payload["metrics"]:
        lines.append(f"test period: {payload['metrics']['n_days']} days, all tickers pooled")
        lines += metrics_table(payload["metrics"])
    if payload["per_ticker"] and len(payload["per_ticker"]) > 1:
        lines += per_ticker_table(payload["per_ticker"])
        lines += calibration_table(payload["per_ticker"])
    if payload["routes"]:
        lines.append(
            "served by (per ticker: the model only where it beat the random walk, was not "
            "significantly worse than any classic comparator and passed Kupiec on the ticker's "
            "own days; elsewhere the comparator with the lowest pinball there):"
        )
        for ticker, r in payload["routes"].items():
            lines.append(f"  {ticker}: {r['method']} ({r['reason']})")
    if payload["unseen"]:
        lines.append(f"  any other ticker: {payload['unseen']['method']} "
                     f"({payload['unseen']['reason']})")  # fmt: skip
    if payload["model_version"]:
        lines.append(
            f"registered {payload['model_name']} version {payload['model_version']} "
            "(alias challenger)"
        )
    if result.decision is not None:
        verdict = "PROMOTED to champion" if result.decision.promoted else "not promoted"
        lines.append(f"gate: v{payload['model_version']} {verdict}")
        for c in result.decision.criteria:
            lines.append(f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.detail}")
    evaluate_run = payload["step_runs"].get("evaluate")
    if evaluate_run and payload["experiment_id"]:
        url = run_url(payload["tracking_uri"], payload["experiment_id"], evaluate_run, "plots",
                      payload.get("ui_url"))  # fmt: skip
        lines.append(f"plots: {url}")
    if payload["tracking_uri"]:
        if payload["model_version"]:
            model = model_url(payload["tracking_uri"], payload["model_name"],
                              payload["model_version"], payload.get("ui_url"))  # fmt: skip
            lines.append(f"model: {model}")
        lines.append(
            "browse: "
            + ui_command(payload["tracking_uri"], payload.get("ui_url"), payload["experiment_id"])
        )
    return "\n".join(lines)


def backtest_text(payload: dict[str, Any]) -> str:
    lines = [
        f"walk-forward backtest, {len(payload['folds'])} folds, {', '.join(payload['tickers'])}"
    ]
    for fold in payload["folds"]:
        headline = str(fold["model"]["interval_level"])
        lines.append(
            f"fold {fold['fold']}: {fold['test_start']}..{fold['test_end']} "
            f"({fold['n_days']} days, trained on {fold['train_windows']} windows): "
            f"pinball ratio vs naive {fold['pinball_ratio_vs_naive']:.4f}, vs garch "
            f"{fold['pinball_ratio_vs_garch']:.4f}, MAE ratio {fold['mae_ratio_vs_naive']:.4f}, "
            f"{float(headline):.0%} coverage {100 * fold['model']['coverage'][headline]:.1f}%"
        )
    lines.append("all folds pooled:")
    lines += metrics_table(payload["aggregate"])
    if len(payload.get("per_ticker") or {}) > 1:
        lines += per_ticker_table(payload["per_ticker"])
        lines += calibration_table(payload["per_ticker"])
    return "\n".join(lines)
