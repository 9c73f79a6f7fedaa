# holocat: two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv (pinned) and run the whole workflow on the embedded synthetic default
#   make test   set up .venv (pinned) and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.holocat-deps
DEPS_HASH := $(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
export PATH := $(abspath $(BIN)):$(PATH)
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint report clean

setup:
	@if [ ! -x $(BIN)/python ]; then $(PYTHON) -m venv $(VENV); fi
	@if [ "$$(cat $(STAMP) 2>/dev/null)" != "$(DEPS_HASH)" ]; then \
	  echo "installing pinned dependencies into $(VENV) (requirements.lock)"; \
	  $(BIN)/python -m pip install --quiet --upgrade pip wheel setuptools && \
	  $(BIN)/python -m pip install --quiet torch==2.13.0 -c requirements.lock && \
	  $(BIN)/python -m pip install --quiet -c requirements.lock -e '.[all]' && \
	  echo $(DEPS_HASH) > $(STAMP); \
	else \
	  $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . ; \
	fi

demo: setup
	$(BIN)/snakemake --profile profiles/local
	$(BIN)/snakemake --profile profiles/local --report results/report.html
	@echo "demo finished: open results/report.html (and results/report/summary.html)"

# HOLOCAT_SLURM_TESTS=1 (.ci/run sets it) adds the `slurm` tests: they start a real single-node
# SLURM cluster (.ci/slurm-cluster.sh, needs root) and fail when it cannot start
TEST_MARKS := $(if $(filter 1,$(HOLOCAT_SLURM_TESTS)),-m 'not slow and not gpu',)

test: setup
	$(BIN)/python -m pytest $(TEST_MARKS) $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake
