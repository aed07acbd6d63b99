# One entry point for developers and CI. `make test` is the test command.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: deps test lint stack run lock

deps: ## PostgreSQL + Redis (apt), FerretDB v1.24.2 (Go, cached), the virtualenv
	scripts/install-deps

lint: deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	scripts/check-deploy
	scripts/audit-deps

test: lint ## everything: lint, then the whole suite on throw-away stores
	$(PY) -m pytest

stack: deps ## throw-away stores for running the service locally; prints their URLs
	$(PY) -m devstack

run: deps ## the gateway, with the settings in the environment (see README)
	$(VENV)/bin/coupon-service

lock: ## re-pin the whole dependency tree after changing pyproject.toml
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q ".[test,dev]"
	{ echo "# The whole dependency tree, pinned: runtime, test and dev extras."; \
	  echo "# Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze --exclude coupon-service; } > requirements.lock
	rm -rf .lock-venv
