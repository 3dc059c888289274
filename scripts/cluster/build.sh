#!/usr/bin/env bash
# Builds what the tests need from the Go module proxy, once per version, and prints the directory
# on its last line:
#   build.sh [kubernetes]  kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#                          kubectl kubeadm, etcd etcdctl, coredns -> $CLUSTER_CACHE/bin-<versions>-<hash>/
#   build.sh helm          helm -> $CLUSTER_CACHE/helm-<version>/ (`make test` renders the chart)
# A cached directory is complete (it is renamed into place only after everything in it built), so
# a warm machine rebuilds nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
CLUSTER_CACHE=${CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/codebase-mcp/cluster}
what=${1:-kubernetes}
log() { printf '[cluster-build] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go is needed (the Go toolchain builds Kubernetes and helm from their modules)"; exit 1; }
case $what in
    kubernetes)
        modules_hash=$(cat "$here"/gomod/*/go.mod "$here"/gomod/*/go.sum "$here/versions.env" "$0" | sha256sum | cut -c1-12)
        out="$CLUSTER_CACHE/bin-$KUBERNETES_VERSION-$ETCD_VERSION-$modules_hash" ;;
    helm) out="$CLUSTER_CACHE/helm-$HELM_VERSION" ;;
    *) log "usage: build.sh [kubernetes|helm]"; exit 2 ;;
esac
if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
fi

mkdir -p "$CLUSTER_CACHE"
staging=$(mktemp -d "$CLUSTER_CACHE/.building.XXXXXX")
trap 'rm -rf "$staging"' EXIT
started=$(date +%s)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

if [[ $what == helm ]]; then
    # helm's own module has no replace directives: `go install` at the pinned version.
    log "building helm $HELM_VERSION"
    GOBIN="$staging" CGO_ENABLED=0 go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
        "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    manifest="helm $HELM_VERSION"
else
    # `kubectl version` and the API server's /version report these instead of v0.0.0-master;
    # Helm's kubeVersion checks and kubectl's version skew warnings read them.
    minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    done
    log "building Kubernetes $KUBERNETES_VERSION (cold: about 6 minutes on 2 cores; cached afterwards)"
    (cd "$here/gomod/kubernetes" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$staging/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
        k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubeadm)
    log "building etcd $ETCD_VERSION"
    (cd "$here/gomod/etcd" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$staging/" \
        go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3)
    # `go build` names a .../server/v3 main package after "server".
    mv "$staging/server" "$staging/etcd"
    log "building CoreDNS $COREDNS_VERSION"
    GOBIN="$staging" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
    manifest="kubernetes $KUBERNETES_VERSION"$'\n'"etcd $ETCD_VERSION"$'\n'"coredns $COREDNS_VERSION"
fi
{
    echo "$manifest"
    go version
    echo "built $build_date in $(($(date +%s) - started)) s"
    (cd "$staging" && sha256sum -- *)
} >"$staging/MANIFEST"
touch "$staging/.complete"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
log "built in $(($(date +%s) - started)) s: $out"
echo "$out"
