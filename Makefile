# Developer and CI entry points. Each target installs what it needs into .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test lint bench clean

$(BIN)/veo-batch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/veo-batch  ## run the example batch against the built-in mock provider (offline)
	$(BIN)/veo-batch run jobs.example.yaml --mock --download videos
	$(BIN)/veo-batch status

test: $(BIN)/veo-batch  ## the test suite (needs PostgreSQL; see README)
	$(BIN)/pytest

lint: $(BIN)/veo-batch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/veo-batch  ## the three benchmarks: loading, submitting, following tasks
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/load.py
	$(BIN)/python bench/submit.py
	$(BIN)/python bench/poll.py

clean:
	rm -rf $(VENV) veo-batch.db veo-batch.db-wal veo-batch.db-shm jobs.example.results.csv
