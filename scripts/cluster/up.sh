#!/usr/bin/env bash
# `make cluster-up`: a real single-node Kubernetes made of host processes, in the shape of
# Kubernetes' hack/local-up-cluster.sh: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a kubelet on its own containerd (runc, a CNI bridge) and kube-proxy.
# Binaries come from build.sh (built once per version from Go modules, then cached); containerd,
# runc, the CNI plugins and iptables from Debian. Needs root (a kubelet and network namespaces).
# Waits until the node is Ready and the `default` ServiceAccount exists, then prints
# KUBECONFIG=... on its last line. Idempotent: a running cluster is left as it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"
source "$here/versions.env"

[[ $(id -u) == 0 ]] || die "run as root: the kubelet manages cgroups, mounts and network namespaces"
if running kube-apiserver && [[ -f $KUBECONFIG_OUT ]] && "$CLUSTER_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_OUT" get --raw /readyz >/dev/null 2>&1; then
    log "already running"
    echo "KUBECONFIG=$KUBECONFIG_OUT"
    exit 0
fi
# What a cluster whose processes were killed left behind (mounts, pods' state in etcd): gone
# first, so every bring-up starts from nothing.
if [[ -d $CLUSTER_DIR ]]; then
    log "a cluster that is not running left $CLUSTER_DIR: removing it first"
    bash "$here/down.sh"
fi
started=$(date +%s)

# --- what Debian provides ------------------------------------------------------------------------
need=()
for pair in containerd:containerd runc:runc iptables:iptables conntrack:conntrack openssl:openssl \
    gcc:gcc docker:docker.io; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
if ((${#need[@]})); then
    log "installing from Debian: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

bin_cache=$(bash "$here/build.sh" | tail -1)
mkdir -p "$CLUSTER_DIR"/{run,logs,pki,etcd,kubelet,cni/net.d,cni/ipam,containerd/root,containerd/state}
ln -sfn "$bin_cache" "$CLUSTER_DIR/bin"
BIN=$CLUSTER_DIR/bin
export PATH="$BIN:$PATH"

start() { # name, command...: a host process with its own log, its pid recorded for down.sh
    local name=$1; shift
    running "$name" && return 0
    nohup "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 &
    echo $! >"$(pidfile "$name")"
}
wait_for() { # what, seconds, command...
    local what=$1 seconds=$2; shift 2
    for _ in $(seq 1 "$((seconds * 2))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what not ready after ${seconds}s; logs in $CLUSTER_DIR/logs"
}

# --- network: a bridge the test run owns; pods get addresses on it -------------------------------
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/16" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up
sysctl -qw net.ipv4.ip_forward=1
# Service traffic between pods on one bridge must pass iptables, where kube-proxy's rules are.
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || modprobe br_netfilter 2>/dev/null || true
cat >"$CLUSTER_DIR/cni/net.d/10-codebase-mcp.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "codebase-mcp",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.88.1.1", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
JSON

# --- containerd: our own instance (its own root, state and socket), runc, cgroupfs ---------------
cat >"$CLUSTER_DIR/containerd/config.toml" <<TOML
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$CLUSTER_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No container may get a lower oom_score_adj than containerd's own: these machines' root lacks
  # CAP_SYS_RESOURCE, so runc's write of the kubelet's -998 for pod sandboxes is refused (EACCES).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
TOML
start containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
wait_for containerd 30 ctr_ version

# The pause image: one static program that sleeps until a signal, built here (no registry).
if ! ctr_ images check "name==$PAUSE_IMAGE" 2>/dev/null | grep -q complete; then
    bash "$here/pause-image.sh" "$PAUSE_IMAGE" | ctr_ images import - >/dev/null
    ctr_ images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null
fi

# --- certificates and kubeconfigs, by kubeadm's own phases ---------------------------------------
if [[ ! -f $CLUSTER_DIR/pki/ca.crt ]]; then
    cat >"$CLUSTER_DIR/kubeadm.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: $NODE_IP, bindPort: $API_PORT}
nodeRegistration: {name: $NODE_NAME}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $KUBERNETES_VERSION
certificatesDir: $CLUSTER_DIR/pki
clusterName: codebase-mcp
controlPlaneEndpoint: $NODE_IP:$API_PORT
networking: {serviceSubnet: $SERVICE_CIDR, podSubnet: $POD_CIDR, dnsDomain: cluster.local}
apiServer: {certSANs: [127.0.0.1, localhost, $NODE_IP]}
YAML
    kubeadm init phase certs all --config "$CLUSTER_DIR/kubeadm.yaml" >"$CLUSTER_DIR/logs/kubeadm.log" 2>&1
    kubeadm init phase kubeconfig all --config "$CLUSTER_DIR/kubeadm.yaml" --kubeconfig-dir "$CLUSTER_DIR" \
        >>"$CLUSTER_DIR/logs/kubeadm.log" 2>&1
    # The kube-proxy client certificate kubeadm does not make (kubeadm gives kube-proxy a token).
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=system:kube-proxy" \
        -keyout "$CLUSTER_DIR/pki/kube-proxy.key" -out "$CLUSTER_DIR/pki/kube-proxy.csr" 2>/dev/null
    openssl x509 -req -in "$CLUSTER_DIR/pki/kube-proxy.csr" -CA "$CLUSTER_DIR/pki/ca.crt" \
        -CAkey "$CLUSTER_DIR/pki/ca.key" -CAcreateserial -days 365 -out "$CLUSTER_DIR/pki/kube-proxy.crt" 2>/dev/null
    kubectl config set-cluster codebase-mcp --server "https://$NODE_IP:$API_PORT" --embed-certs \
        --certificate-authority "$CLUSTER_DIR/pki/ca.crt" --kubeconfig "$CLUSTER_DIR/kube-proxy.conf" >/dev/null
    kubectl config set-credentials kube-proxy --embed-certs --client-certificate "$CLUSTER_DIR/pki/kube-proxy.crt" \
        --client-key "$CLUSTER_DIR/pki/kube-proxy.key" --kubeconfig "$CLUSTER_DIR/kube-proxy.conf" >/dev/null
    kubectl config set-context default --cluster codebase-mcp --user kube-proxy \
        --kubeconfig "$CLUSTER_DIR/kube-proxy.conf" >/dev/null
    kubectl config use-context default --kubeconfig "$CLUSTER_DIR/kube-proxy.conf" >/dev/null
fi
# super-admin.conf is in group system:masters and needs no binding (admin.conf's group needs one
# that kubeadm init would create): the test suite's and the user's kubeconfig.
[[ $KUBECONFIG_OUT == "$CLUSTER_DIR/kubeconfig" ]] || mkdir -p "$(dirname "$KUBECONFIG_OUT")"
cp "$CLUSTER_DIR/super-admin.conf" "$KUBECONFIG_OUT"
pki=$CLUSTER_DIR/pki

# --- control plane --------------------------------------------------------------------------------
start etcd etcd --name "$NODE_NAME" --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls http://127.0.0.1:0 --log-level warn
wait_for etcd 30 etcdctl --endpoints "127.0.0.1:$ETCD_CLIENT_PORT" endpoint health

start kube-apiserver kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port "$API_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --requestheader-allowed-names front-proxy-client --requestheader-extra-headers-prefix X-Remote-Extra- \
    --requestheader-group-headers X-Remote-Group --requestheader-username-headers X-Remote-User \
    --allow-privileged=true
wait_for kube-apiserver 90 kubectl --kubeconfig "$KUBECONFIG_OUT" get --raw /readyz

start kube-controller-manager kube-controller-manager \
    --kubeconfig "$CLUSTER_DIR/controller-manager.conf" \
    --authentication-kubeconfig "$CLUSTER_DIR/controller-manager.conf" \
    --authorization-kubeconfig "$CLUSTER_DIR/controller-manager.conf" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" \
    --use-service-account-credentials --controllers '*' --leader-elect=false \
    --bind-address 127.0.0.1
cat >"$CLUSTER_DIR/scheduler.yaml" <<YAML
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: $CLUSTER_DIR/scheduler.conf}
leaderElection: {leaderElect: false}
YAML
start kube-scheduler kube-scheduler --config "$CLUSTER_DIR/scheduler.yaml" \
    --authentication-kubeconfig "$CLUSTER_DIR/scheduler.conf" --authorization-kubeconfig "$CLUSTER_DIR/scheduler.conf" \
    --bind-address 127.0.0.1

# Cluster DNS for Services (`<service>.<namespace>.svc.cluster.local`) on the node's address, as a
# host process like the rest. It answers cluster.local and nothing else: pods here reach no
# outside name, and nothing is forwarded anywhere.
cat >"$CLUSTER_DIR/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $CLUSTER_DIR/super-admin.conf
        pods insecure
    }
    cache 10
}
.:53 {
    bind $NODE_IP
    errors
}
COREFILE
start coredns coredns -conf "$CLUSTER_DIR/Corefile"

# `kubectl logs` and `exec` go from the API server to the kubelet as this user.
kubectl --kubeconfig "$KUBECONFIG_OUT" create clusterrolebinding codebase-mcp:apiserver-kubelet \
    --clusterrole system:kubelet-api-admin --user kube-apiserver-kubelet-client \
    --dry-run=client -o yaml | kubectl --kubeconfig "$KUBECONFIG_OUT" apply -f - >/dev/null

# --- the node ---------------------------------------------------------------------------------------
cat >"$CLUSTER_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# PID 1 is not systemd on these machines, and containerd is set to cgroupfs too.
cgroupDriver: cgroupfs
# Kubernetes 1.35+ refuses cgroup v1 hosts unless told otherwise; 1.34 allows them by default.
failCgroupV1: false
failSwapOn: false
address: $NODE_IP
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $pki/ca.crt}}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: /etc/resolv.conf
# Images exist only because they were imported here: never garbage-collect them, never evict.
imageGCHighThresholdPercent: 100
evictionHard: {nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
serializeImagePulls: false
# The kubelet would lower its own OOM score to -999, which needs CAP_SYS_RESOURCE (see containerd).
oomScoreAdj: 0
YAML
start kubelet kubelet --config "$CLUSTER_DIR/kubelet.yaml" --kubeconfig "$CLUSTER_DIR/kubelet.conf" \
    --root-dir "$CLUSTER_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --cert-dir "$CLUSTER_DIR/kubelet/pki"

cat >"$CLUSTER_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy.conf}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
# Leave the host's conntrack sysctls alone (as local-up-cluster does).
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
oomScoreAdj: 0
YAML
start kube-proxy kube-proxy --config "$CLUSTER_DIR/kube-proxy.yaml"

kc() { kubectl --kubeconfig "$KUBECONFIG_OUT" "$@"; }
wait_for "node $NODE_NAME" 120 kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
wait_for "the default ServiceAccount" 60 kc get serviceaccount default -n default
wait_for "cluster DNS" 30 bash -c "exec 3<>/dev/tcp/$NODE_IP/53"
log "ready in $(($(date +%s) - started)) s ($("$BIN/kubectl" version --client -o json | grep -m1 gitVersion | tr -d ' ",'))"
echo "KUBECONFIG=$KUBECONFIG_OUT"
