# Two commands matter: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip reads pyproject.toml; reinstall when it changes.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint format bench ui clean

$(BIN)/python:
	@echo "creating $(VENV) and upgrading pip"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing forecaster and its dependencies into $(VENV) (a minute or two the first time)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing forecaster with the dev extra into $(VENV) (a minute or two the first time)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/forecaster train
	@echo
	@echo "Serving on http://127.0.0.1:8000 (OpenAPI docs at /docs; Ctrl+C stops). In another shell:"
	@echo "  curl -s -X POST http://127.0.0.1:8000/v1/predictions -H 'content-type: application/json' -d '{\"ticker\": \"^GSPC\"}'"
	@echo "  (any ticker of the offline universe: ^GSPC ^IXIC AAPL GOOG IBM MSFT; curl -s http://127.0.0.1:8000/v1/model lists it)"
	@echo "(It serves the stock-lstm champion; the gate lines above say whether this run earned it.)"
	$(BIN)/forecaster serve --port 8000

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(RUN_STAMP)
	$(BIN)/python benchmarks/bench_windows.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_backtest.py
	$(BIN)/python benchmarks/bench_request_path.py

ui: $(RUN_STAMP)
	$(BIN)/forecaster ui

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
