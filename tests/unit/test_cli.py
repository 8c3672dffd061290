"""The `forecaster` CLI contract: summaries, JSON, one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from tests.conftest import csv_rows

FORECASTER = Path(sys.executable).parent / "forecaster"


def test_data_summarises_the_bundled_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "data", "--ticker", "^GSPC"]) == 0
    out = capsys.readouterr().out
    assert "^GSPC: 5031 trading days 1999-01-04 .. 2018-12-31 from sample" in out


def test_data_json_for_a_user_csv(
    write_csv: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(csv_rows(60), name="acme.csv")
    assert main(["-q", "data", "--csv", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (entry,) = payload["tickers"]
    assert entry["ticker"] == "acme"
    assert entry["rows"] == 60
    assert entry["source"] == "csv"
    assert entry["adjustment"] == "adjusted"


def test_windows_json_reports_shapes_and_splits(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-q", "windows", "--json", "--start", "2015-01-01", "--set", "windows.lookback=20"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    n_features = len(payload["features"])
    assert payload["x_shape"][1:] == [20, n_features]
    sizes = [payload["splits"][p]["windows"] for p in ("train", "val", "test")]
    assert sum(sizes) == payload["x_shape"][0]
    assert payload["splits"]["train"]["last_target"] < payload["splits"]["val"]["first_target"]
    assert payload["splits"]["val"]["last_target"] < payload["splits"]["test"]["first_target"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["data", "--ticker", "TSLA"], "bundled data holds only ^GSPC, ^IXIC, "),
        (["windows", "--set", "windows.lookbak=5"], "windows.lookbak: unknown key"),
        (["windows", "--end", "1999-02-01"], "rows, need at least"),
        (["data", "--csv", "/nonexistent/x.csv"], "/nonexistent/x.csv: file not found"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-q", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("forecaster: error: ")
    assert fragment in err
    assert "\n" not in err


def test_console_script_bad_csv_has_no_traceback(write_csv: Callable[..., Path]) -> None:
    lines = csv_rows(40)
    lines[9] = lines[9].replace(lines[9].split(",")[4], "oops", 1)
    path = write_csv(lines)
    result = subprocess.run(
        [str(FORECASTER), "data", "--csv", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"forecaster: error: {path}: line 11 ({lines[9][:10]}): close is not a number ('oops')"
    )


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["windows", "--start", "yesterday"])
    assert info.value.code == 2
    assert "not a YYYY-MM-DD date" in capsys.readouterr().err


@pytest.fixture
def hostile_files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    flat = tmp_path / "FLAT.csv"  # 300 trading days at one price: nothing to learn
    days = pd.bdate_range("2020-01-01", periods=300)
    flat.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n"
                    + "".join(f"{d.date()},10,10,10,10,10,1000\n" for d in days))  # fmt: skip
    return {"binary": binary, "dir": tmp_path, "data": tmp_path / "data", "flat": flat}


# Invocations a user can get wrong. Each must end in one `forecaster: error:` line (exit 1) or a
# usage message (exit 2), never a traceback. {binary}, {dir}, {data} and {flat} are made per test.
HOSTILE_CLI = [
    (["data", "--source", "yahoo", "--ticker", ""], 1, "'' is not a ticker symbol"),
    (["data", "--source", "yahoo", "--ticker", "../../etc/passwd"], 1, "is not a ticker symbol"),
    (["data", "--config", "{binary}"], 1, "not a text (UTF-8) YAML file"),
    (["data", "--config", "{dir}"], 1, "is a directory, not a YAML config file"),
    (["data", "--csv", "{binary}"], 1, "not a readable CSV file"),
    (["data", "--csv", "{dir}"], 1, "is a directory, not a CSV file"),
    (["windows", "--set", "windows.lookback=abc"], 1, "windows.lookback: Input should be a valid integer"),
    (["windows", "--set", "nonsense"], 1, "KEY=VALUE"),
    (["backtest", "--folds", "0"], 1, "split.folds"),
    (["predict", "--data-dir", "{data}", "--model-uri", "http://127.0.0.1:1/x"], 1, "cannot load model http://127.0.0.1:1/x"),
    (["predict", "--data-dir", "{data}", "--model-uri", "models:/nope/1"], 1, "cannot load model models:/nope/1"),
    (["train", "--data-dir", "{data}", "--set", "training.accelerator=gpu"], 1, "the champion was not changed"),
    (["train", "--data-dir", "{data}", "--csv", "{flat}"], 1, "FLAT: the close's daily log returns never vary over its 300 rows"),
    (["serve", "--config", "{binary}"], 1, "not a text (UTF-8) YAML file"),
    (["monitor", "--data-dir", "{data}", "--log-url", "nonsense"], 1, "prediction log nonsense: not a usable SQLAlchemy URL"),
    (["monitor", "--data-dir", "{data}", "--log-url", "sqlite:///{binary}"], 1, "file is not a database"),
    (["monitor", "--data-dir", "{data}", "--log-url", "postgresql://u:secret@127.0.0.1:1/x"], 1, "prediction log postgresql://u:***@127.0.0.1:1/x: "),
    (["serve", "--port", "abc"], 2, "invalid int value"),
    (["windows", "--start", "2018-13-01"], 2, "not a YYYY-MM-DD date"),
    (["nosuchcommand"], 2, "invalid choice"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), HOSTILE_CLI, ids=[" ".join(c[0]) for c in HOSTILE_CLI]
)
def test_hostile_invocations_never_show_a_traceback(
    argv: list[str], code: int, fragment: str, hostile_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the store under --data-dir
    argv = [a.format(**{k: str(v) for k, v in hostile_files.items()}) for a in argv]
    try:
        returned = main(["-q", *argv])
    except SystemExit as exc:  # argparse's usage errors
        returned = exc.code
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert returned == code, output
    assert "Traceback" not in output
    assert fragment in output, output
    if code == 1:
        assert captured.err.strip().splitlines()[-1].startswith("forecaster: error: ")
