# The two commands of the README:
#   make serve   # serve the embedded default (SQLite, CPU vLLM, bundled SmolLM2) on :8000
#   make test    # run the test suite (real vLLM on CPU, real PostgreSQL and Redis)
.PHONY: bootstrap serve test test-unit lint format services browser bench-gateway clean-data

VENV ?= .venv
PYTEST_ARGS ?=

bootstrap:
	@scripts/bootstrap.sh

serve: bootstrap
	$(VENV)/bin/perennial serve

services:
	@scripts/services.sh

test: bootstrap lint services browser
	$(VENV)/bin/python -m pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

# Debian's chromium, for the dashboard tests (tests/integration/test_dashboard.py); a no-op when installed.
browser:
	@scripts/chromium.sh

test-unit: bootstrap
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: bootstrap
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-gateway: bootstrap
	$(VENV)/bin/python bench/gateway.py

clean-data:
	rm -rf .perennial .data
