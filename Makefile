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
DEPS313 := $(VENV313)/.dependencies
export PYTHONDONTWRITEBYTECODE := 1

TIERS := unit handlers infrastructure tools e2e faults hostile api
# pytest-xdist workers for the tiers (docs/testing.md): twice CI's 2 cores, because much of each worker's time is
# spent waiting on a subprocess, a socket or a schedule; `make pytest WORKERS=0` runs them in one process.
# --dist loadscope keeps a module's tests on one worker, so a module-scoped local runner starts once; modules are
# handed out in pyproject's testpaths order (slowest tiers first), not largest first.
WORKERS ?= 4
XDIST := -n $(WORKERS) --dist loadscope --no-loadscope-reorder
# The 3.13 run needs only what the unit and handler tiers import: not the linters, type checker, SAM CLI,
# Schemathesis or the mParticle SDK (their install time is measured in docs/testing.md).
DEV_ONLY := ruff radon mypy types-PyYAML mparticle aws-sam-cli schemathesis

.PHONY: venv run demo test test313 pytest lint typecheck $(TIERS) events openapi validate build bench oracle-tables clean format

venv: $(STAMP)

# Installs into a virtualenv ($(1)) with uv, pinned: the same pinned packages and bytecode as pip, in about a fifth of
# pip's time on a fresh clone (docs/testing.md), which every `.ci/run` starts from.
UV := uv==0.13.10
define uv_install
	$(1)/bin/pip install --disable-pip-version-check -q $(UV)
	$(1)/bin/uv pip install -q --python $(1)/bin/python $(2)
endef

# The dev dependencies, then the project itself (editable): the `flagbridge` command, both packages importable anywhere.
$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call uv_install,$(VENV),--compile-bytecode -r requirements-dev.txt)
	$(call uv_install,$(VENV),--no-deps -e .)
	touch $(STAMP)

## Start the whole bridge locally on moto server, replay the samples and run the demo once (docs/demo.md), then serve
## (Ctrl-C to stop); `make run ARGS=--verbose` shows every log line, `ARGS=--no-demo` skips the demo.
run: venv
	$(BIN)/python -m local.runner $(ARGS)

## The demo again, against the bridge `make run` is serving (PORT=3000): a sample service, a traffic plan, verdicts.
demo: venv
	$(BIN)/python -m local.demo $(ARGS)

## The demo's sample service alone (local/demo/service.py), for a hand-run `traffic run` (docs/traffic.md): on
## http://127.0.0.1:$SERVICE_PORT (8081), reporting to the bridge `make run` serves on $PORT (3000).
.PHONY: service
service: venv
	$(BIN)/python -m local.demo.service --bridge http://127.0.0.1:$${PORT:-3000} --port $${SERVICE_PORT:-8081}

## Everything CI checks (.ci/run): lint, types, every test tier (unit and handlers on 3.13 too), template lint
## and a Docker-free sam build.
# The checks that only read the checkout, and the .venv313 set-up (mostly waiting on pip and the disk), run beside
# the 3.11 tiers, whose workers leave the cores idle while they wait on runners and sockets; `sam build` writes
# .aws-sam, which tests/tools/test_bench_smoke.py reads when present, so it waits for the tiers; it runs beside
# the 3.13 tiers, which do not read .aws-sam (SAM builds from copies of the sources, not the egg-info they rewrite).
test: venv
	$(MAKE) --no-print-directory -j 5 lint typecheck validate pytest $(if $(PYTHON313),$(DEPS313))
	$(MAKE) --no-print-directory -j 2 test313 build

# Two steps: `make test` runs the first beside the 3.11 tiers; the editable install rewrites flagbridge.egg-info
# in the checkout (which the tiers' `flagbridge --version` reads), so it comes after them.
$(DEPS313): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	test -x $(VENV313)/bin/python || $(PYTHON313) -m venv $(VENV313)
	grep -v -E '^($(subst $(eval) ,|,$(DEV_ONLY)))(\[.*\])?==' requirements-dev.txt \
		| sed 's|^-r |-r $(CURDIR)/|' > $(VENV313)/requirements.txt
	$(call uv_install,$(VENV313),--compile-bytecode -r $(VENV313)/requirements.txt)
	touch $(DEPS313)

$(STAMP313): $(DEPS313)
	$(call uv_install,$(VENV313),--no-deps -e .)
	touch $(STAMP313)

## The unit and handler tiers again on CPython 3.13 (the runtime's version), in .venv313, when a 3.13 exists.
ifneq ($(PYTHON313),)
test313: $(STAMP313)
	$(VENV313)/bin/python -m pytest -q -p no:cacheprovider $(XDIST) tests/unit tests/handlers
else
test313:
	@echo "test313: SKIPPED, no CPython 3.13 found (python3.13 on PATH or pyenv 3.13.x); see docs/performance.md" >&2
endif

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m local.complexity

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	$(BIN)/mypy

## Every test tier (docs/testing.md).
pytest: venv
	$(BIN)/python -m pytest -q $(XDIST)

## One tier: make unit, make handlers, make infrastructure, make tools, make e2e, make faults, make hostile, make api.
$(TIERS): venv
	$(BIN)/python -m pytest -q $(XDIST) tests/$@

## Regenerate events/ from events/payloads/ (tests/tools/test_make_events.py fails when they are out of date).
events: venv
	PYTHONPATH="$(CURDIR)/layers/shared" $(BIN)/python -m local.make_events

## Regenerate docs/openapi.json from the code (local/openapi.py; tests/tools/test_openapi.py fails when it is out of date).
openapi: venv
	PYTHONPATH="$(CURDIR)/layers/shared" $(BIN)/python -m local.openapi

validate: venv
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/sam validate --lint

build: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --parallel

bench: venv
	$(BIN)/python -m local.bench

oracle-tables: venv
	PYTHONPATH=layers/shared $(BIN)/python -m tests.unit.oracle.exact

clean:
	rm -rf .aws-sam build .pytest_cache .ruff_cache .mypy_cache $(VENV313)
