# shellcheck shell=bash
# PKI for the test cluster (openssl): one CA, one front-proxy CA, leaf certs, the SA key pair and the
# kubeconfigs. Generated afresh on every `cluster/up` (cheap, and the apiserver cert carries the node IP).

_ca() { # name CN
  openssl genrsa -out "$1.key" 2048 2>/dev/null
  openssl req -x509 -new -nodes -key "$1.key" -sha256 -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" -out "$1.crt" 2>/dev/null
}

_leaf() { # name subject signing-ca eku [san]
  openssl genrsa -out "$1.key" 2048 2>/dev/null
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  { echo "basicConstraints=critical,CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$4"; [ -n "${5:-}" ] && echo "subjectAltName=$5"; } > "$1.ext"
  # A random serial, not -CAcreateserial: leaves are signed in parallel, and concurrent writers of
  # the shared ca.srl made openssl fail now and then (an empty kube-proxy.crt, so kube-proxy was
  # anonymous and no Service worked).
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -set_serial "0x$(openssl rand -hex 16)" \
    -sha256 -days 365 -extfile "$1.ext" -out "$1.crt" 2>"$1.err" || true
  if [ ! -s "$1.crt" ]; then
    echo "cluster/up: signing the $1 certificate failed: $(cat "$1.err")" >&2
    return 1
  fi
  rm -f "$1.csr" "$1.ext" "$1.err"
}

_wait_all() { # waits for every background job of this shell; fails if any failed
  local rc=0 p
  for p in $(jobs -p); do wait "$p" || rc=1; done
  return $rc
}

_kubeconfig() { # file user cert-basename server
  local f=$1
  kubectl config set-cluster local --server="$4" --certificate-authority=ca.crt --embed-certs --kubeconfig="$f" >/dev/null
  kubectl config set-credentials "$2" --client-certificate="$3.crt" --client-key="$3.key" --embed-certs --kubeconfig="$f" >/dev/null
  kubectl config set-context default --cluster=local --user="$2" --kubeconfig="$f" >/dev/null
  kubectl config use-context default --kubeconfig="$f" >/dev/null
}

make_pki() { # node-ip
  local ip=$1 server="https://$1:$APISERVER_PORT"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    _ca ca kubernetes-ca &
    _ca front-proxy-ca front-proxy-ca &
    { openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; } &
    _wait_all || exit 1
    _leaf apiserver "/CN=kube-apiserver" ca serverAuth \
      "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$ip" &
    _leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" ca clientAuth &
    _leaf admin "/O=system:masters/CN=kubernetes-admin" ca clientAuth &
    _leaf kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" ca clientAuth &
    _wait_all || exit 1
    _leaf kubelet-serving "/CN=$NODE_NAME" ca serverAuth "DNS:$NODE_NAME,DNS:localhost,IP:$ip,IP:127.0.0.1" &
    _leaf controller-manager "/CN=system:kube-controller-manager" ca clientAuth &
    _leaf scheduler "/CN=system:kube-scheduler" ca clientAuth &
    _leaf kube-proxy "/CN=system:kube-proxy" ca clientAuth &
    _wait_all || exit 1
    _leaf coredns "/CN=system:coredns" ca clientAuth &
    _leaf front-proxy-client "/CN=front-proxy-client" front-proxy-ca clientAuth &
    _wait_all || exit 1
    _kubeconfig admin.kubeconfig kubernetes-admin admin "$server"
    _kubeconfig kubelet.kubeconfig "system:node:$NODE_NAME" kubelet "$server"
    _kubeconfig controller-manager.kubeconfig system:kube-controller-manager controller-manager "$server"
    _kubeconfig scheduler.kubeconfig system:kube-scheduler scheduler "$server"
    _kubeconfig kube-proxy.kubeconfig system:kube-proxy kube-proxy "$server"
    _kubeconfig coredns.kubeconfig system:coredns coredns "$server"
    chmod 600 ./*.key
  )
  cp "$PKI/admin.kubeconfig" "$KUBECONFIG_ADMIN"
}
