# outcall: every target that needs Python creates .venv from the pinned requirement files first.
SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist: tests in TEST_WORKERS processes, each file in one (its module's local stack started once);
# make test took 1,517 s in one process on 2 cores and 608-688 s in two (TEST_WORKERS=0: one process)
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.PHONY: run demo test test-fast lint lock bench build validate deploy tokens redrive clean

$(STAMP): requirements.txt requirements-dev.txt layers/outcall/requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==24.3.1
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

# checkov runs from its own environment: its pins (boto3/botocore 1.35, networkx 2.6, packaging 23)
# cannot live beside the project's (requirements-checkov.txt says so)
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

run: $(STAMP)  ## serve the whole system on 127.0.0.1
	$(BIN)/python -m local

demo: $(STAMP)  ## drive a running local stack over HTTP and tell what answered; exits 1 on an unexpected answer
	PYTHONPATH=layers/outcall $(BIN)/python -m local.demo

test: $(STAMP)  ## every test, slow suites and template checks included
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the quick loop: skips suites marked slow
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP) $(CHECKOV_STAMP)  ## ruff check, ruff format --check, mypy, checkov: what CI runs (pre-commit: all but checkov)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml  # accepted exceptions: .checkov.yaml

lock: $(STAMP)  ## re-pin the layer: layers/outcall/requirements.lock from its requirements.txt and the dev pins
	$(BIN)/python layers/outcall/lock.py

bench: $(STAMP)  ## benchmarks; results are written to bench/results/
	PYTHONPATH=layers/outcall $(BIN)/python -m bench

build: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/sam build --config-file samconfig.toml

validate: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/sam validate --lint --config-file samconfig.toml

deploy: build
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/sam deploy --config-file samconfig.toml --config-env $${ENV:-default}

tokens: $(STAMP)  ## e.g. make tokens ARGS="create --name ci"
	PYTHONPATH=layers/outcall $(BIN)/python -m outcall.tokens $(ARGS)

redrive: $(STAMP)  ## move a DLQ's messages back to its queue: make redrive QUEUE=results (or imports)
	PYTHONPATH=layers/outcall $(BIN)/python -m outcall.redrive $${QUEUE:-results} $(ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
