#!/usr/bin/env bash
# `make cluster-load-image IMAGE=...`: copies an image from the local Docker engine into the local
# cluster's containerd (namespace k8s.io, where the kubelet looks), as kind's `load docker-image`
# does for kind nodes. Pods then run it with imagePullPolicy IfNotPresent (or Never): there is no
# registry to pull from.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
image=${1:?usage: load-image.sh IMAGE}
running containerd || die "the local cluster is not running (make cluster-up)"
docker image inspect "$image" >/dev/null 2>&1 || die "no image $image in the local Docker engine (make image)"
wanted=$(docker image inspect "$image" --format '{{.Id}}')
# The same image already there: nothing to copy (an image of several GB takes a minute).
if ctr_ images ls 2>/dev/null | grep -F "codebase-mcp.image-id=$wanted" | grep -qF "$image "; then
    log "$image already loaded"
    exit 0
fi
started=$(date +%s)
docker save "$image" | ctr_ images import -
# containerd 1.6's import takes no labels; docker save names an unqualified image docker.io/library/.
ref=$(ctr_ images ls -q | grep -E "(^|/)${image//./\\.}\$" | head -1)
ctr_ images label "$ref" io.cri-containerd.pinned=pinned "codebase-mcp.image-id=$wanted" >/dev/null
# The layers are unpacked into snapshots now, which is all a container needs; their archives would
# be a second copy of the image on disk (as the CRI plugin's discard_unpacked_layers does for pulls).
manifest=$(ctr_ images ls | awk -v ref="$ref" '$1 == ref {print $3}')
for layer in $(ctr_ content get "$manifest" | python3 -c 'import json, sys; print(*(l["digest"] for l in json.load(sys.stdin)["layers"]))'); do
    ctr_ content rm "$layer" >/dev/null
done
log "loaded $image in $(($(date +%s) - started)) s"
