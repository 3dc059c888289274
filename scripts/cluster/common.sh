# Shared by up.sh, down.sh and load-image.sh: where the local cluster lives and what it is called.
# Every file, socket and mount the cluster makes is under CLUSTER_DIR (its containerd too), except
# the bridge, the pods' network namespaces (/run/netns/cni-*) and iptables chains; down.sh removes
# each of those by name.
# shellcheck shell=bash
CLUSTER_DIR=${CLUSTER_DIR:-/var/tmp/codebase-mcp-cluster}
KUBECONFIG_OUT=${CLUSTER_KUBECONFIG:-$CLUSTER_DIR/kubeconfig}
NODE_NAME=codebase-mcp-node
# Addresses the test run owns: the pods' bridge (its gateway is the node's address, which the API
# server advertises and host services such as PostgreSQL bind to) and the Services' range.
BRIDGE=cbm0
NODE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.0.0.0/24
API_PORT=6443
ETCD_CLIENT_PORT=23790
CONTAINERD_SOCK=$CLUSTER_DIR/run/containerd.sock
# The sandbox ("pause") image: built here (no registry), imported under this name.
PAUSE_IMAGE=codebase-mcp.local/pause:3.10

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
pidfile() { echo "$CLUSTER_DIR/run/$1.pid"; }
running() { [[ -f $(pidfile "$1") ]] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
