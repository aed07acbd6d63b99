# One entry point for developers and CI. `make test` is the test command; `make help` lists all.
VENV ?= .venv
PY := $(VENV)/bin/python
# pip runs again only when the pins change: each stamp records an install from them.
PINS := requirements.lock pyproject.toml
RUNTIME := $(VENV)/.installed-runtime
EVERYTHING := $(VENV)/.installed-everything

.PHONY: help deps test test-busy test-named-stores test-ha test-cluster test-fresh lint stack stack-ha run lock docs

help: ## this list
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {name[++n] = $$1; text[n] = $$2; \
	  if (length($$1) > width) width = length($$1)} \
	  END {for (i = 1; i <= n; i++) printf "  make %-" width "s  %s\n", name[i], text[i]}' $(MAKEFILE_LIST)

run: $(RUNTIME) ## the gateway on 127.0.0.1:8080 (HOST to widen), starting the local stores no *_URL names (data in .run/)
	$(PY) -m devstack run

test: lint ## everything: lint, then the whole suite on throw-away stores
	$(PY) -m pytest

test-cluster: $(EVERYTHING) ## the cluster tier alone: 3 gateway hosts in namespaces, a fault each (root)
	$(PY) -m pytest tests/cluster -s

test-busy: $(EVERYTHING) ## the fault and end-to-end tiers while stress-ng keeps one core busy
	stress-ng --cpu 1 --timeout 3600 --quiet & trap 'kill $$!' EXIT; $(PY) -m pytest tests/faults tests/e2e

test-named-stores: $(EVERYTHING) ## the suite on stores named by *_URL, PostgreSQL asking for a password (the hosted CI's path)
	$(PY) -m devstack --password named-stores -- $(PY) -m pytest

test-ha: $(EVERYTHING) ## the integration and end-to-end tiers on the HA topology's stores
	$(PY) -m devstack --ha -- $(PY) -m pytest tests/integration tests/e2e

test-fresh: ## README's two commands in a chroot of a fresh Debian 12, timed (root; slow: not in test)
	command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
	python3 -m devstack.fresh_machine

lint: $(EVERYTHING) ## ruff, mypy, the deploy files' checks and pip-audit
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	scripts/check-deploy
	scripts/audit-deps

stack: $(RUNTIME) ## throw-away stores for running the service by hand; prints their URLs
	$(PY) -m devstack

stack-ha: $(EVERYTHING) ## the HA topology (etcd, Patroni x2, Redis + Sentinels, FerretDB); prints its URLs
	$(PY) -m devstack --ha

deps: ## install now: PostgreSQL + Redis (apt), FerretDB (Go, cached), the virtualenv with test tools
	scripts/install-deps
	touch $(EVERYTHING) $(RUNTIME)

docs: $(RUNTIME) ## write docs/CONFIGURATION.md and .env.example from Settings (a unit test checks them)
	$(PY) scripts/settings_doc.py

lock: ## re-pin the whole dependency tree after changing pyproject.toml
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q ".[test,dev]"
	{ echo "# The whole dependency tree, pinned: runtime, test and dev extras."; \
	  echo "# Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze --exclude coupon-service; } > requirements.lock
	rm -rf .lock-venv

# The service alone: no test or dev tools (a venv that has them already keeps them).
$(RUNTIME): $(PINS)
	scripts/install-deps --runtime
	touch $@

$(EVERYTHING): $(PINS)
	scripts/install-deps
	touch $@ $(RUNTIME)
