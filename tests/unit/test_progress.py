"""Bars with an ETA on a terminal; nothing at all in logs and CI output."""

from __future__ import annotations

import io
import re
import sys

import pytest

from forecaster.progress import bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_shows_progress_and_eta_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    folds = bar(5, "backtest folds", "fold")
    folds.update(2)
    folds.refresh()  # tqdm redraws at most every 0.1 s on its own
    folds.close()
    shown = screen.getvalue()
    assert "backtest folds" in shown
    assert "2/5" in shown
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", shown), shown  # elapsed<remaining


def test_bar_is_silent_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    folds = bar(5, "backtest folds", "fold")
    folds.update(5)
    folds.close()
    assert log.getvalue() == ""
