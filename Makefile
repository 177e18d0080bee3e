# flagbridge developer commands. `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv run test lint typecheck unit validate build bench bench-smoke soak clean format

venv: $(STAMP)

# Then the project itself, editable: the `flagbridge` command, and both packages importable from anywhere.
$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

## Start the whole bridge locally on moto server (Ctrl-C to stop).
run: venv
	$(BIN)/python -m local.runner

## Everything CI checks: lint, types, tests, template lint and a Docker-free sam build.
test: venv lint typecheck unit validate build

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
	rm -rf .aws-sam build .pytest_cache .ruff_cache .mypy_cache
