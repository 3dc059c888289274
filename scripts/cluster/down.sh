#!/usr/bin/env bash
# `make cluster-down`: stops what up.sh started and removes everything it made: its processes,
# the pods' containers and network namespaces, every mount under CLUSTER_DIR, iptables chains of
# kube-proxy and the CNI plugins, the bridge, and CLUSTER_DIR itself. The build cache stays.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
[[ $(id -u) == 0 ]] || die "run as root (as up.sh was)"

stop_process() {
    local name=$1 pid
    [[ -f $(pidfile "$name") ]] || return 0
    pid=$(cat "$(pidfile "$name")")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$(pidfile "$name")"
}

# The kubelet first, so it restarts nothing; then every pod's containers, while containerd still
# runs to stop them (their shims would otherwise outlive it).
stop_process kube-proxy
stop_process kubelet
if running containerd; then
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$task" >/dev/null 2>&1; done
    sleep 1
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$task" >/dev/null 2>&1; done
fi
for name in coredns kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do stop_process "$name"; done
# Shims started by our containerd carry its socket's directory in their command line.
pkill -9 -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null

# kube-proxy's rules, by its own clean-up; then the chains the CNI plugins made.
[[ -x $CLUSTER_DIR/bin/kube-proxy ]] && "$CLUSTER_DIR/bin/kube-proxy" --cleanup >/dev/null 2>&1
for table in nat filter mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A .*(CNI-|KUBE-)' | sed 's/^-A/-D/' | while read -r rule; do
        eval "iptables -t $table $rule" 2>/dev/null
    done
    iptables -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/ {print $2}' | while read -r chain; do
        iptables -t "$table" -F "$chain" 2>/dev/null
    done
    iptables -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/ {print $2}' | while read -r chain; do
        iptables -t "$table" -X "$chain" 2>/dev/null
    done
done

# Pods' network namespaces (containerd's CRI names them cni-<uuid>), the bridge, every mount.
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do ip netns delete "$ns" 2>/dev/null; done
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
if [[ -d $CLUSTER_DIR ]]; then
    awk -v dir="$CLUSTER_DIR" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r mount; do
        umount -l "$mount" 2>/dev/null
    done
    rm -rf "$CLUSTER_DIR"
fi
log "down"
