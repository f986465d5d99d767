# One command each: `make test` and `make demo` do all of their own set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Every Prefect client here talks to the lab's Prefect server (runs show in its UI).
export PREFECT_API_URL ?= http://127.0.0.1:4200/api
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: bootstrap lab-up lab-down lint test test-unit demo

bootstrap:
	./lab/bootstrap.sh

lab-up: bootstrap
	$(BIN)/mailu-flows lab up

lab-down:
	$(BIN)/mailu-flows lab down

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/lint-imports  # the layer contracts in pyproject.toml ([tool.importlinter])

# No lab, no daemon, no network: the tests that need Prefect's API start a throwaway server of their
# own (tests/conftest.py); any other Prefect client is pointed at a port nothing listens on, so a unit
# test that talks to a server without saying so fails instead of using the lab's.
test-unit: bootstrap
	PREFECT_API_URL=http://127.0.0.1:9/api $(BIN)/pytest -m "not lab" -q

test: lint lab-up
	$(BIN)/pytest -q

demo: lab-up
	$(BIN)/mailu-flows config check --config .lab/stack.yaml
	$(BIN)/mailu-flows plan --local --config .lab/stack.yaml > .lab/plan.md
	@echo "plan written to .lab/plan.md"
	$(BIN)/python -m lab.demo
