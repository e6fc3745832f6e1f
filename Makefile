# evalterritoire — `make` alone lists the targets (from the ## comments below).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
STAMP := $(VENV)/.installed
WAVES := 2023 2024 2025
PYTEST_WORKERS ?= 2

.PHONY: help env report test test-slow bench lint format lock clean demo-data

help: ## Show this help
	@echo "evalterritoire — targets:"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36mmake %-10s\033[0m %s\n", $$1, $$2}'

$(UV):
	@echo "uv not found: bootstrapping it with pip (user install)"
	$(PYTHON) -m pip install --user --quiet uv

$(STAMP): requirements.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --require-hashes --compile-bytecode --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --no-deps --python $(BIN)/python -e .
	@# bytecode compiled once: every step, worker and kernel starts without compiling its imports
	$(BIN)/python -m compileall -q -j 0 src
	@touch $(STAMP)

env: $(STAMP) ## Create .venv from the hashed lock file (requirements.lock) and install the package

report: $(STAMP) ## Build the demo study (all waves): ingest, estimates, maturity, models, reports
	$(BIN)/evalterritoire study surveys/2025/study.toml --all-waves

test: $(STAMP) ## Run the test suite (fast; slow checks live in `make test-slow` and `make bench`)
	$(BIN)/python -m pytest -q -m "not slow" -n $(PYTEST_WORKERS) -p no:cacheprovider

test-slow: $(STAMP) ## Run the slow statistical checks (coverage over seeds, large fixtures)
	$(BIN)/python -m pytest -q -m slow -p no:cacheprovider

bench: $(STAMP) ## Run the benchmarks under bench/ (print ratios against in-run baselines)
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

lint: $(STAMP) ## Lint and check formatting with ruff
	$(BIN)/ruff check src tests bench r scripts
	$(BIN)/ruff format --check src tests bench r scripts

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format src tests bench r scripts
	$(BIN)/ruff check --fix src tests bench r scripts

lock: | $(UV) ## Re-compile requirements.lock from pyproject.toml (hashed, no index URLs)
	$(UV) pip compile pyproject.toml --extra pdf --extra dask --extra dev --generate-hashes \
	  --no-emit-index-url --no-emit-find-links --python-version 3.11 --no-header --no-annotate \
	  -o requirements.lock

demo-data: $(STAMP) ## Regenerate the synthetic demo waves under surveys/ (seeded)
	$(BIN)/evalterritoire simulate --territories 60 --respondents 3000 --waves 2023,2024,2025 --seed 2025 --out surveys

clean: ## Remove derived artefacts (build/, reports/ outputs, caches); keeps .venv
	rm -rf build reports/*/ .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
