# The two commands a user needs: `make dev` (run) and `make test` (test). Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here, not in pyproject.toml: a plain `torch` requirement pulls a multi-GB CUDA
# build on Linux. Override TORCH_SPEC / TORCH_PIP_ARGS to choose another build (for example a
# CPU-only index, or a CUDA build for a GPU machine).
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install dev lint test bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job on the embedded default: PostgreSQL with pgvector, migrations, the MCP gateway on
# 127.0.0.1:8000 and a local executor; prints the URL, the token and client configuration.
dev: install
	$(BIN)/codebase-mcp dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Benchmarks print tables and append them to docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench.indexing

bench-quick: install
	$(BIN)/python -m bench.indexing --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
