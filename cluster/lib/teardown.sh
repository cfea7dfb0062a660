# shellcheck shell=bash
# Teardown of the test cluster: used by `cluster/down` and, as a pre-clean, by `cluster/up`.
# Everything here is idempotent and tolerates a half-started or crashed cluster.

SYSCTLS_SAVED=$CLUSTER_ROOT/saved-sysctls
# Host sysctls that the CNI bridge, the kubelet or kube-proxy may change; restored by teardown.
SYSCTLS="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

save_sysctls() {
  local k
  mkdir -p "$CLUSTER_ROOT"
  for k in $SYSCTLS; do echo "$k=$(sysctl -n "$k" 2>/dev/null)"; done > "$SYSCTLS_SAVED"
}

restore_sysctls() {
  [ -f "$SYSCTLS_SAVED" ] || return 0
  local kv
  while read -r kv; do
    [ -n "${kv#*=}" ] && sysctl -q -w "$kv" >/dev/null 2>&1 || true
  done < "$SYSCTLS_SAVED"
  rm -f "$SYSCTLS_SAVED"
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

stop_daemon() { # name [timeout seconds]
  local f="$PIDS/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $(( ${2:-10} * 10 ))); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && { kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; }
  fi
  rm -f "$f"
}

# PIDs of processes that belong to this cluster: their command line names our root or run dir
# (daemons, containerd shims). Never matches anything outside the cluster.
cluster_pids() {
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    cmd=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null) || continue
    case $cmd in
      *"$CLUSTER_ROOT/"*|*"$RUN_DIR/"*) echo "$p" ;;
    esac
  done
}

# PIDs inside the kubelet's pod cgroups (container processes).
pod_pids() { cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
  /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u; }

kctl() { kubectl --kubeconfig="$KUBECONFIG_ADMIN" --request-timeout=5s "$@"; }

# With GRACEFUL=1, let the kubelet stop the pods itself (CNI DEL, unmounts) while it still runs.
# Off by default: the forced path below leaves the host just as clean and takes seconds, not ~30 s.
graceful_pod_stop() {
  [ "${GRACEFUL:-0}" = 1 ] || return 0
  [ -f "$PIDS/kubelet.pid" ] && pid_alive "$(cat "$PIDS/kubelet.pid")" || return 0
  kctl get --raw /readyz >/dev/null 2>&1 || return 0
  stop_daemon kube-controller-manager
  stop_daemon kube-scheduler
  kctl delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  local i
  for i in $(seq 1 60); do
    ls /run/netns 2>/dev/null | grep '^cni-' >/dev/null || break
    sleep 0.5
  done
}

# Delete rules that jump to KUBE-*/CNI-* chains, then flush and delete those chains, in every table.
clean_iptables() {
  local ipt t chain rule
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle raw; do
      "$ipt" -t "$t" -S >/dev/null 2>&1 || continue
      # rules in any chain that jump to one of ours
      { "$ipt" -t "$t" -S | grep -E '^-A .* -j (KUBE-|CNI-)' | grep -vE '^-A (KUBE-|CNI-)' || true; } | while read -r rule; do
        eval "$ipt -t $t -D ${rule#-A }" 2>/dev/null || true
      done
      # Flush and delete all of them in one iptables-restore transaction (one call per chain
      # takes minutes with thousands of KUBE-SEP chains); chain by chain only as a fallback.
      local chains
      chains=$("$ipt" -t "$t" -S | awk '/^-N (KUBE-|CNI-)/{print $2}')
      [ -n "$chains" ] || continue
      if ! { echo "*$t"; printf -- '-F %s\n' $chains; printf -- '-X %s\n' $chains; echo COMMIT; } |
        "$ipt-restore" --noflush 2>/dev/null; then
        for chain in $chains; do "$ipt" -t "$t" -F "$chain" 2>/dev/null || true; done
        for chain in $chains; do "$ipt" -t "$t" -X "$chain" 2>/dev/null || true; done
      fi
    done
  done
  # our guard rule(s)
  while iptables -t mangle -D FORWARD -i "$CNI_BRIDGE" ! -o "$CNI_BRIDGE" -m comment --comment tulle-cluster-guard -j DROP 2>/dev/null; do :; done
  # kube-proxy may create an nftables table of its own in newer versions
  if command -v nft >/dev/null; then
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
  fi
}

teardown() {
  local t0 p m ns
  t0=$(date +%s)
  graceful_pod_stop
  [ "$(date +%s)" -gt "$t0" ] && log "  pods stopped (+$(( $(date +%s) - t0 ))s)"
  for p in kube-proxy coredns kubelet kube-controller-manager kube-scheduler kube-apiserver etcd; do stop_daemon "$p" 5 & done
  wait

  if [ -S "$CTR_SOCK" ] && command -v ctr >/dev/null; then
    local c=(ctr -a "$CTR_SOCK" -n k8s.io --timeout 5s)
    for p in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s KILL "$p" >/dev/null 2>&1 || true; done
    sleep 0.3
    for p in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks rm -f "$p" >/dev/null 2>&1 || true; done
    for p in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers rm "$p" >/dev/null 2>&1 || true; done
  fi
  log "  daemons stopped (+$(( $(date +%s) - t0 ))s)"
  stop_daemon containerd
  # anything of ours still alive: shims, orphaned container processes
  for p in $(cluster_pids) $(pod_pids); do kill -KILL "$p" 2>/dev/null || true; done
  sleep 0.2

  # network namespaces made by containerd for pod sandboxes
  for ns in $(ls /run/netns 2>/dev/null | grep '^cni-' || true); do
    ip netns delete "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
  done
  # mounts under our dirs (kubelet volumes, container rootfs, sandbox shm), deepest first
  for m in $(findmnt -rn -o TARGET | grep -E "^($CLUSTER_ROOT|$RUN_DIR)(/|$)" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done

  clean_iptables
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
  while ip route del local "$SERVICE_CIDR" dev lo table local 2>/dev/null; do :; done
  while ip route del unreachable "$CLUSTER_CIDR" 2>/dev/null; do :; done

  # pod cgroups (cgroup v1: one tree per controller), deepest first
  for m in /sys/fs/cgroup/*/kubepods; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done

  restore_sysctls
  rm -rf /var/log/pods/* /var/log/containers/* /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  rm -rf "$RUN_DIR"
  if [ "${KEEP_LOGS:-0}" = 1 ] && [ -d "$LOGS" ]; then
    find "$CLUSTER_ROOT" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || true
  else
    rm -rf "$CLUSTER_ROOT"
  fi
  log "teardown done in $(( $(date +%s) - t0 ))s"
}

# What a clean host looks like; prints each leftover and returns 1 if there is any.
leftovers() {
  local bad=0 p
  p=$(cluster_pids | tr '\n' ' '); [ -n "${p// /}" ] && { echo "processes: $p"; bad=1; }
  p=$(pod_pids | tr '\n' ' '); [ -n "${p// /}" ] && { echo "pod processes: $p"; bad=1; }
  findmnt -rn -o TARGET | grep -E "^($CLUSTER_ROOT|$RUN_DIR)(/|$)" && { echo "^ mounts"; bad=1; }
  ls /run/netns 2>/dev/null | grep '^cni-' && { echo "^ netns"; bad=1; }
  ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && { echo "link $CNI_BRIDGE"; bad=1; }
  ip -o link show type veth 2>/dev/null | grep "master $CNI_BRIDGE" >/dev/null && { echo "veths on $CNI_BRIDGE"; bad=1; }
  ip route show table local | grep "$SERVICE_CIDR" >/dev/null && { echo "route local $SERVICE_CIDR"; bad=1; }
  ip route show | grep "unreachable $CLUSTER_CIDR" >/dev/null && { echo "route unreachable $CLUSTER_CIDR"; bad=1; }
  for t in filter nat mangle raw; do
    iptables-save -t "$t" 2>/dev/null | grep -E 'KUBE-|CNI-|tulle-cluster' | head -3 | sed "s/^/iptables $t: /" | grep . && bad=1
    ip6tables-save -t "$t" 2>/dev/null | grep -E 'KUBE-|CNI-' | head -3 | sed "s/^/ip6tables $t: /" | grep . && bad=1
  done
  ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | sed 's/^/cgroup /' | grep . && bad=1
  [ -e "$CLUSTER_ROOT" ] && [ "${KEEP_LOGS:-0}" != 1 ] && { echo "dir $CLUSTER_ROOT"; bad=1; }
  [ -e "$RUN_DIR" ] && { echo "dir $RUN_DIR"; bad=1; }
  ls /var/lib/cni/results 2>/dev/null | grep "^$CNI_NETWORK-" && { echo "^ CNI cache"; bad=1; }
  return $bad
}
