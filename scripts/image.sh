#!/usr/bin/env bash
# Builds the container image (`make image`): starts a Docker engine if none answers (installing
# Debian's docker.io where it is missing), makes the Debian base image when BASE_IMAGE names the
# local one, then builds the Dockerfile with BuildKit.
#
#   IMAGE        tag to build (default codebase-mcp:dev)
#   BASE_IMAGE   base (default local/debian-python:bookworm, made here with debootstrap);
#                python:3.12-slim on a machine that can pull public images
#   TORCH_SPEC, TORCH_PIP_ARGS   passed to the Dockerfile's build arguments of the same names
#   BUILD_FLAGS  more `docker build` flags, e.g. --no-cache (bench/image.py's cold build)
#   BUILD_CACHE_KEEP  when set (e.g. 10GB, as .ci/run does), trims the engine's build cache to that
#                size after the build, least recently used first: a machine that builds every
#                version keeps the layers of the last ones only (this touches every project's cache)
#
# Prints the docker command that works here on its last line (`DOCKER=...`), for `make test-image`.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-codebase-mcp:dev}
BASE_IMAGE=${BASE_IMAGE:-local/debian-python:bookworm}
LOCAL_BASE=local/debian-python:bookworm
log() { printf '[image] %s\n' "$*" >&2; }

# A docker client that can build with BuildKit: one with the buildx plugin, or an engine-bundled
# client older than 23 (BuildKit built in, enabled by DOCKER_BUILDKIT=1).
pick_client() {
    local candidate major
    for candidate in docker /usr/bin/docker; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" buildx version >/dev/null 2>&1; then echo "$candidate"; return 0; fi
        major=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || true
        if [[ "$major" =~ ^[0-9]+$ ]] && ((major < 23)); then echo "$candidate"; return 0; fi
    done
    return 1
}

ensure_engine() {
    if docker info >/dev/null 2>&1; then return 0; fi
    if ! command -v dockerd >/dev/null 2>&1; then
        log "no Docker engine: installing Debian's docker.io"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
        log "starting dockerd (log: /tmp/dockerd.log)"
        nohup dockerd >/tmp/dockerd.log 2>&1 &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && return 0
            sleep 1
        done
        log "dockerd did not start; see /tmp/dockerd.log"
        return 1
    fi
}

# The base made from Debian's packages (no registry needed): Python 3.11, venv, CA certificates.
ensure_local_base() {
    if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then return 0; fi
    command -v debootstrap >/dev/null 2>&1 || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    local rootfs
    rootfs=$(mktemp -d /tmp/codebase-mcp-rootfs.XXXXXX)
    log "making $LOCAL_BASE with debootstrap (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >/tmp/debootstrap.log 2>&1 \
        || { log "debootstrap failed; see /tmp/debootstrap.log"; return 1; }
    tar -C "$rootfs" -c . | docker import - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
}

# torch wheels from pip's local find-links directories: a machine that keeps one on disk (and may
# not reach the torch index) builds with it. With such a wheel and no TORCH_PIP_ARGS, torch's own
# dependencies come from the default index and the local +cpu build outranks the index's torch.
collect_wheels() {
    local dir found=0
    IFS=' ' read -r -a dirs <<<"${PIP_FIND_LINKS:-}"
    for dir in "${dirs[@]}"; do
        [[ -d "$dir" ]] || continue
        for wheel in "$dir"/torch-*.whl; do
            [[ -f "$wheel" ]] || continue
            [[ -f ".wheels/$(basename "$wheel")" ]] || cp "$wheel" .wheels/
            found=1
        done
    done
    if ((found)) && [[ -z "${TORCH_PIP_ARGS+set}" ]]; then TORCH_PIP_ARGS=""; fi
}

# The Dockerfile's default takes torch from the CPU-only index (small image). Where that index
# cannot be reached and no local wheel was found, PyPI's torch (a CUDA build that runs on the CPU;
# several GB larger) is downloaded once per version into the cache directory and linked into
# .wheels, so a fresh clone on the same machine downloads nothing.
torch_source() {
    [[ -n "${TORCH_PIP_ARGS+set}" ]] && return 0
    local default_args spec cache
    spec=${TORCH_SPEC:-$(sed -n 's/^ARG TORCH_SPEC=//p' Dockerfile)}
    default_args=$(sed -n 's/^ARG TORCH_PIP_ARGS="\(.*\)"$/\1/p' Dockerfile)
    # shellcheck disable=SC2086  # the Dockerfile's pip arguments, split on purpose
    if python3 -m pip index versions torch $default_args --retries 0 --timeout 15 >/dev/null 2>&1; then
        return 0
    fi
    log "the CPU-only torch index cannot be reached: using PyPI's $spec (a CUDA build; it runs on CPUs)"
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/codebase-mcp/wheels/${spec//[^A-Za-z0-9.=_-]/_}"
    if [[ ! -f "$cache/.complete" ]]; then
        rm -rf "$cache" && mkdir -p "$cache"
        python3 -m pip download --quiet --dest "$cache" "$spec" || { log "could not download $spec from PyPI either"; return 1; }
        touch "$cache/.complete"
    fi
    # Hard links where the cache and the clone share a file system: no second copy of 3 GB.
    cp -l -n "$cache"/*.whl .wheels/ 2>/dev/null || cp -n "$cache"/*.whl .wheels/
    TORCH_PIP_ARGS=""
}

# Each build that replaces the tag leaves the previous image untagged, several GB each: remove
# those of this project (known by the CODEBASE_MCP_HOME its Dockerfile sets) that no container uses.
prune_previous() {
    local id
    for id in $("$CLIENT" images --quiet --filter dangling=true); do
        if "$CLIENT" image inspect "$id" --format '{{range .Config.Env}}{{println .}}{{end}}' 2>/dev/null \
            | grep -q '^CODEBASE_MCP_HOME='; then
            "$CLIENT" image rm "$id" >/dev/null 2>&1 || true
        fi
    done
}

ensure_engine
CLIENT=$(pick_client) || { log "no docker client here can build with BuildKit (install the buildx plugin)"; exit 1; }
if [[ "$BASE_IMAGE" == "$LOCAL_BASE" ]]; then ensure_local_base; fi
collect_wheels
torch_source

args=(--network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE")
# shellcheck disable=SC2206  # BUILD_FLAGS is a list of flags, split on purpose
[[ -n "${BUILD_FLAGS:-}" ]] && args+=(${BUILD_FLAGS})
[[ -n "${TORCH_SPEC:-}" ]] && args+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
[[ -n "${TORCH_PIP_ARGS+set}" ]] && args+=(--build-arg "TORCH_PIP_ARGS=$TORCH_PIP_ARGS")
# pip inside the build trusts what pip here trusts (a TLS-intercepting proxy's CA, for example).
ca=${PIP_CERT:-${SSL_CERT_FILE:-}}
[[ -n "$ca" && -f "$ca" ]] && args+=(--secret "id=pip_ca,src=$ca")

log "building $IMAGE on $BASE_IMAGE with $CLIENT"
started=$(date +%s)
DOCKER_BUILDKIT=1 "$CLIENT" build --progress=plain "${args[@]}" . >/tmp/codebase-mcp-image-build.log 2>&1 \
    || { tail -40 /tmp/codebase-mcp-image-build.log >&2; log "build failed; full log: /tmp/codebase-mcp-image-build.log"; exit 1; }
prune_previous
if [[ -n "${BUILD_CACHE_KEEP:-}" ]]; then
    "$CLIENT" builder prune --force --keep-storage "$BUILD_CACHE_KEEP" >/dev/null || log "could not trim the build cache"
fi
size=$("$CLIENT" image inspect "$IMAGE" --format '{{.Size}}')
log "built $IMAGE in $(($(date +%s) - started)) s, $((size / 1000000)) MB"
echo "DOCKER=$CLIENT"
