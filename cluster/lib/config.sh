# shellcheck shell=bash
# Shared settings for the cluster/ scripts. Source it; do not execute it.
# Every value can be overridden from the environment.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$CLUSTER_DIR/.." && pwd)

# Versions. The wrapper modules in cluster/k8s-build and cluster/coredns-build pin the same ones.
K8S_VERSION=${K8S_VERSION:-v1.33.13}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}

# Binaries live outside the repository, keyed by Kubernetes version and Go version.
TULLE_CACHE=${TULLE_CACHE:-/var/cache/tulle}
go_version() { GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || echo nogo; }
K8S_BIN=${K8S_BIN:-$TULLE_CACHE/k8s/$K8S_VERSION-$(go_version)/bin}
K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd coredns"

# Runtime state of the cluster: everything under one root.
CLUSTER_ROOT=${CLUSTER_ROOT:-/var/lib/tulle-cluster}
RUN_DIR=${RUN_DIR:-/run/tulle-cluster}          # sockets and runc state (must be on a non-overlay fs)
PKI=$CLUSTER_ROOT/pki
LOGS=$CLUSTER_ROOT/logs
PIDS=$CLUSTER_ROOT/pids
KUBECONFIG_ADMIN=$CLUSTER_ROOT/admin.kubeconfig
CTR_SOCK=$RUN_DIR/containerd/containerd.sock

NODE_NAME=${NODE_NAME:-node1}
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_SVC_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
CNI_BRIDGE=cni0
CNI_NETWORK=tulle-pod-network
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
ETCD_METRICS_PORT=23810
APISERVER_PORT=6443
COREDNS_PORT=10053                               # host CoreDNS; Service kube-dns maps 53 -> this

# Images.
PAUSE_IMAGE=localhost/tulle/pause:3.10
TESTAPP_IMAGE_REPO=localhost/tulle/testapp

node_ip() { ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | sed -n 1p; }

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
