#!/usr/bin/env bash
# Runs a command against a real cluster (`make e2e`, `make bench-cluster`): the one KUBECONFIG
# names, or, where it names none, the local cluster (scripts/cluster/), brought up here with the
# image loaded into it. On another cluster (kind: `kind load docker-image $IMAGE` first) the
# command runs as it is. Exports KUBECONFIG, KUBECTL and HELM (default: the versions
# scripts/cluster/build.sh built) and CODEBASE_MCP_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-codebase-mcp:dev}
KUBECTL=${KUBECTL:-$(bash scripts/cluster/build.sh kubernetes | tail -1)/kubectl}
HELM=${HELM:-$(bash scripts/cluster/build.sh helm | tail -1)/helm}
export KUBECTL HELM CODEBASE_MCP_IMAGE=$IMAGE
if [[ -z "${KUBECONFIG:-}" ]]; then
    KUBECONFIG=$(bash scripts/cluster/up.sh | sed -n 's/^KUBECONFIG=//p')
    export KUBECONFIG
    bash scripts/cluster/load-image.sh "$IMAGE"
fi
started=$(date +%s)
"$@"
echo "[with-cluster] $1 took $(($(date +%s) - started)) s" >&2
