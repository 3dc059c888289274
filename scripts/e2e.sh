#!/usr/bin/env bash
# `make e2e`: the end-to-end suite (tests/e2e/) on a real cluster. Where KUBECONFIG names none,
# the local cluster (scripts/cluster/) is brought up and the image loaded into it; on another
# cluster (kind: `kind load docker-image $IMAGE` first) the suite runs as it is.
# kubectl and helm come from KUBECTL / HELM, else the versions scripts/cluster/build.sh built.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-codebase-mcp:dev}
PYTEST=${PYTEST:-.venv/bin/pytest}
tools=$(bash scripts/cluster/build.sh | tail -1)
export KUBECTL=${KUBECTL:-$tools/kubectl} HELM=${HELM:-$tools/helm}
if [[ -z "${KUBECONFIG:-}" ]]; then
    KUBECONFIG=$(bash scripts/cluster/up.sh | sed -n 's/^KUBECONFIG=//p')
    export KUBECONFIG
    bash scripts/cluster/load-image.sh "$IMAGE"
fi
started=$(date +%s)
CODEBASE_MCP_IMAGE=$IMAGE "$PYTEST" -m e2e tests/e2e "$@"
echo "[e2e] suite took $(($(date +%s) - started)) s"
