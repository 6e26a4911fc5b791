# Developer and CI entry points. Each target installs what it needs into .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test lint bench lock clean

# The versions CI tested (requirements/ci.txt, made by pip-compile from pyproject.toml), then
# veo-batch itself: a fresh install is the tested one.
$(BIN)/veo-batch: pyproject.toml requirements/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/ci.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# ci.txt: everything CI installs (the test extra too). runtime.txt: what the image installs,
# the dependencies alone, held to ci.txt's versions (-c) so the image runs what CI tested.
lock:  ## pin the dependencies again after changing them in pyproject.toml
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra test --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements/ci.txt pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url \
		--no-emit-find-links -c requirements/ci.txt \
		-o requirements/runtime.txt pyproject.toml

demo: $(BIN)/veo-batch  ## run the example batch against the built-in mock provider (offline)
	$(BIN)/veo-batch run jobs.example.yaml --mock --download videos
	$(BIN)/veo-batch status

# Most tests wait on processes and sockets, not on the CPU: three at once (pytest-xdist), each
# with its own Redis database, take a quarter of the time of one after the other, even on 2 cores.
# The few that count what pacing allows (requests per window, tasks at once) run after them,
# alone: beside others on two cores, a thread held up a quarter of a second overfills a window.
TEST_WORKERS ?= 3

test: $(BIN)/veo-batch  ## the test suite (needs PostgreSQL; see README)
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not timing"
	$(BIN)/pytest -m timing

lint: $(BIN)/veo-batch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/veo-batch  ## the benchmarks: loading, submitting, following tasks, local images, budgets
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/load.py
	$(BIN)/python bench/submit.py
	$(BIN)/python bench/poll.py
	$(BIN)/python bench/images.py
	$(BIN)/python bench/claims.py

clean:
	rm -rf $(VENV) veo-batch-data veo-batch.db veo-batch.db-wal veo-batch.db-shm veo-batch.db.lock jobs.example.results.csv
