# The two commands a user needs: `make dev` (run) and `make test` (test). Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here, not in pyproject.toml: a plain `torch` requirement pulls a multi-GB CUDA
# build on Linux. Override TORCH_SPEC / TORCH_PIP_ARGS to choose another build (for example a
# CPU-only index, or a CUDA build for a GPU machine).
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install dev lint test image test-image e2e bench-cluster cluster-up cluster-down cluster-load-image bench bench-quick bench-image clean

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
	$(BIN)/lint-imports --no-cache

# The chart tests render it with the helm that scripts/cluster/build.sh builds (once, cached).
test: lint
	HELM=$$(bash scripts/cluster/build.sh helm | tail -1)/helm $(BIN)/pytest

# The container image (Dockerfile): starts a Docker engine where none runs, makes the Debian base
# image unless BASE_IMAGE names another (python:3.12-slim where public images can be pulled).
IMAGE ?= codebase-mcp:dev
image:
	IMAGE='$(IMAGE)' bash scripts/image.sh

# Builds the image, then runs it for real: indexer and gateway containers against the embedded
# PostgreSQL, as non-root, read-only root filesystem, SIGTERM mid-run.
test-image: install
	docker_client=$$(IMAGE='$(IMAGE)' bash scripts/image.sh | sed -n 's/^DOCKER=//p') && \
	CODEBASE_MCP_IMAGE='$(IMAGE)' CODEBASE_MCP_DOCKER="$$docker_client" $(BIN)/pytest -m image tests/test_image.py

# A real single-node Kubernetes made of host processes (scripts/cluster/, needs root): binaries
# built from Go modules once per version and cached; `cluster-down` removes everything it made.
cluster-up:
	bash scripts/cluster/up.sh
cluster-down:
	bash scripts/cluster/down.sh
cluster-load-image:
	bash scripts/cluster/load-image.sh '$(IMAGE)'

# The end-to-end suite (tests/e2e/) on a real cluster: the one KUBECONFIG names, or the local one
# (brought up here, and the image loaded into it). On kind: `kind create cluster`, `kind load
# docker-image $(IMAGE)`, then `make e2e KUBECONFIG=...` (scripts/with-cluster.sh).
e2e: install image
	IMAGE='$(IMAGE)' bash scripts/with-cluster.sh $(BIN)/pytest -m e2e tests/e2e

# Dispatch, cancel and adoption latency of the operator on a real cluster (bench/cluster.py).
bench-cluster: install image
	IMAGE='$(IMAGE)' bash scripts/with-cluster.sh $(BIN)/python -m bench.cluster $(BENCH_ARGS)

# Benchmarks print tables and append them to docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench.indexing
	$(BIN)/python -m bench.dispatch
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.search --index-variants 50000
	$(BIN)/python -m bench.image

bench-quick: install
	$(BIN)/python -m bench.indexing --quick
	$(BIN)/python -m bench.dispatch --quick
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.search --sizes 10000 --queries 50

# Image size, cold build and source-only rebuild times (needs what `make image` needs).
bench-image: install
	$(BIN)/python -m bench.image

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
