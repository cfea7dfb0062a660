# shellcheck shell=bash
# Configuration files of the daemons, written under $CLUSTER_ROOT on every `cluster/up`.

write_configs() { # node-ip
  local ip=$1
  mkdir -p "$CLUSTER_ROOT"/{containerd/root,containerd/opt,cni/net.d,cni/networks,kubelet,manifests,etcd,coredns} \
    "$RUN_DIR"/{containerd,runc} "$LOGS" "$PIDS" /var/log/pods /var/log/containers

  # containerd: a dedicated instance (own root, state, socket, runc root); see notes/localcluster.md §4.2.
  cat > "$CLUSTER_ROOT/containerd/config.toml" <<TOML
version = 2
root  = "$CLUSTER_ROOT/containerd/root"
state = "$RUN_DIR/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$RUN_DIR/containerd/containerd.sock.ttrpc"
[debug]
  address = "$RUN_DIR/containerd/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CLUSTER_ROOT/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # REQUIRED here: root lacks CAP_SYS_RESOURCE, negative oom_score_adj would make runc fail.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir  = "/usr/lib/cni"
    conf_dir = "$CLUSTER_ROOT/cni/net.d"
    max_conf_num = 1
TOML

  # CNI: bridge + host-local + portmap; no masquerade (pods are never NATed to the outside).
  cat > "$CLUSTER_ROOT/cni/net.d/10-tulle.conflist" <<JSON
{ "cniVersion": "0.4.0", "name": "$CNI_NETWORK",
  "plugins": [
    { "type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$CLUSTER_ROOT/cni/networks",
                "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } } ] }
JSON

  cat > "$CLUSTER_ROOT/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SVC_IP]
resolvConf: ""
failSwapOn: false
staticPodPath: $CLUSTER_ROOT/manifests
healthzBindAddress: 127.0.0.1
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
# Mounted ConfigMaps and Secrets (trust anchors, the identity issuer) are refreshed on each pod
# sync: every 10 s here instead of the default minute, so that rotation tests wait less.
syncFrequency: 10s
YAML

  cat > "$CLUSTER_ROOT/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$ip/32"]
iptables: {localhostNodePorts: false}
# 0 = leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML

  # CoreDNS on the host: cluster names only, no forwarding (no forward plugin is even compiled in).
  cat > "$CLUSTER_ROOT/coredns/Corefile" <<COREFILE
.:$COREDNS_PORT {
    bind $ip
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $PKI/coredns.kubeconfig default
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    reload
    loadbalance
}
COREFILE
}

# Objects that make the host CoreDNS reachable as Service kube-system/kube-dns ($DNS_SVC_IP), and its RBAC.
coredns_objects() { # node-ip
  cat <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $DNS_SVC_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $COREDNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $COREDNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: tulle-cluster
addressType: IPv4
endpoints:
- addresses: ["$1"]
  conditions: {ready: true}
  nodeName: $NODE_NAME
ports:
- {name: dns, port: $COREDNS_PORT, protocol: UDP}
- {name: dns-tcp, port: $COREDNS_PORT, protocol: TCP}
YAML
}
