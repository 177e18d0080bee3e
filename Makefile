# flagbridge developer commands. `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPython 3.13, the Lambda runtime's version: compiles the layer's bytecode and runs the tests a second time.
PYTHON313 := $(shell layers/shared/find-python3.13)
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv run test test313 lint typecheck unit validate build bench bench-smoke soak clean format

venv: $(STAMP)

$(STAMP): requirements-dev.txt layers/shared/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

## Start the whole bridge locally on moto server (Ctrl-C to stop).
run: venv
	$(BIN)/python -m local.runner

## Everything CI checks: lint, types, tests (also on 3.13), template lint and a Docker-free sam build.
test: venv lint typecheck unit test313 validate build

$(STAMP313): requirements-dev.txt layers/shared/requirements.txt
	test -x $(VENV313)/bin/python || $(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP313)

## The unit and handler tiers again on CPython 3.13 (the runtime's version), in .venv313, when a 3.13 exists.
ifneq ($(PYTHON313),)
test313: $(STAMP313)
	$(VENV313)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/handlers
else
test313:
	@echo "test313: SKIPPED, no CPython 3.13 found (python3.13 on PATH or pyenv 3.13.x); see docs/performance.md" >&2
endif

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/python -m pytest -q

validate: venv
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/sam validate --lint

build: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --parallel

bench: venv
	$(BIN)/python -m local.bench

clean:
	rm -rf .aws-sam build .pytest_cache .ruff_cache .mypy_cache $(VENV313)
