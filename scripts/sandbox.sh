#!/usr/bin/env bash
# A local cluster sandbox (docs/sandbox.md): nodes are network namespaces running the real
# kube-router, the API server is fake-apiserver, pods are network namespaces wired by the real
# CNI plugins (sandbox-node stands in for kubelet/scheduler/controller-manager), and an
# external "router" namespace runs BIRD peering with every node.
#
#   scripts/sandbox.sh up [--nodes N] [--controllers router,firewall,proxy]
#                         [--kube-router-flags "..."] [--api-port 6443]
#   scripts/sandbox.sh status
#   scripts/sandbox.sh exec NAMESPACE/POD -- COMMAND...
#   scripts/sandbox.sh agent nN|sandbox-node stop|kill|start|restart
#   scripts/sandbox.sh snapshot NODE      (routes, links, iptables, ipsets of a node namespace)
#   scripts/sandbox.sh down [--reap]
#
# Everything it makes is named with the prefix $KRSB_PREFIX (default "krsb"; namespaces and
# links) or lives in $KRSB_DIR (default /run/kube-router-sandbox); `down` removes exactly that.
# Two sandboxes side by side (the e2e test beside a user's) need both variables set apart. The host's own network
# configuration is never touched: the only host-side piece is a socat on 127.0.0.1:API_PORT
# that forwards kubectl's connections into the router namespace.
set -euo pipefail

PREFIX=${KRSB_PREFIX:-krsb}
STATE=${KRSB_DIR:-/run/kube-router-sandbox}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUTER_NS=$PREFIX-router
ROUTER_ASN=64513
CLUSTER_ASN=64512
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
NODE_PORTS=30000-32767
API_INNER_PORT=6443

die() {
  echo "sandbox: $*" >&2
  exit 1
}
say() { echo "sandbox: $*"; }

# --- checks ---------------------------------------------------------------------------------

# Link names are PREFIX + "n" + N and must fit in 15 characters.
[[ $PREFIX =~ ^[a-z][a-z0-9]{1,9}$ ]] || { echo "sandbox: KRSB_PREFIX wants 2-10 of [a-z0-9]" >&2; exit 2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces)"; }

# tool:package pairs; every missing one is named with the Debian package that provides it.
need_tools() {
  local missing=() pair tool pkg
  for pair in ip:iproute2 nsenter:util-linux bird:bird2 birdc:bird2 kubectl:kubernetes-client socat:socat \
    iptables:iptables ipset:ipset curl:curl ss:iproute2; do
    tool=${pair%%:*} pkg=${pair#*:}
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool (apt-get install $pkg)")
  done
  for plugin in bridge host-local portmap; do
    [ -x "/usr/lib/cni/$plugin" ] ||
      missing+=("/usr/lib/cni/$plugin (apt-get install containernetworking-plugins)")
  done
  [ ${#missing[@]} = 0 ] || die "missing: ${missing[*]} (scripts/install-deps.sh installs all)"
}

# The programs it runs: kube-router and sandbox-node from one build directory; fake-apiserver from
# KR_FAKE_APISERVER when set (another flavour's binary: CI's ASan build runs the release build's,
# whose instrumentation would judge only the test tool), else from that directory. The directory is
# KR_BUILD_DIR when set (relative to the checkout or to the working directory), and then it must
# hold them: a missing one is an error, never taken from another build (an ASan run that silently
# started the release agent would test the wrong binary). Unset: the first of build/ and
# build-dev/ that holds them.
find_bin() {
  local d want=()
  BIN= API_BIN=
  if [ -n "${KR_FAKE_APISERVER:-}" ]; then
    [ -x "$KR_FAKE_APISERVER" ] || die "KR_FAKE_APISERVER=$KR_FAKE_APISERVER is not an executable"
    API_BIN=$KR_FAKE_APISERVER
  fi
  if [ -n "${KR_BUILD_DIR:-}" ]; then
    for d in "$ROOT/$KR_BUILD_DIR" "$KR_BUILD_DIR"; do
      if [ -d "$d" ]; then
        BIN=$(cd "$d" && pwd)
        break
      fi
    done
    [ -n "$BIN" ] || die "KR_BUILD_DIR=$KR_BUILD_DIR: no such directory"
    [ -x "$BIN/kube-router" ] || want+=(kube-router)
    [ -x "$BIN/sandbox-node" ] || want+=(sandbox-node)
    [ -n "$API_BIN" ] || [ -x "$BIN/fake-apiserver" ] || want+=(fake-apiserver)
    [ ${#want[@]} = 0 ] ||
      die "KR_BUILD_DIR=$KR_BUILD_DIR has no ${want[*]}: build it there (never taken from another build)"
  else
    for d in "$ROOT/build" "$ROOT/build-dev"; do
      if [ -x "$d/kube-router" ] && [ -x "$d/sandbox-node" ] &&
        { [ -n "$API_BIN" ] || [ -x "$d/fake-apiserver" ]; }; then
        BIN=$(cd "$d" && pwd)
        break
      fi
    done
    [ -n "$BIN" ] ||
      die "kube-router, fake-apiserver and sandbox-node not built: run scripts/build.sh (or set KR_BUILD_DIR)"
  fi
  API_BIN=${API_BIN:-$BIN/fake-apiserver}
}

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-" || true; }

# What the kernel can do ("ip_vs ipip" or less), tried in one scratch namespace, never on the
# host's own network (one namespace for both: every process start costs 0.1-0.5 s in the
# emulated guest).
kernel_features() {
  local ns=$PREFIX-probe-$$ have=""
  ip netns add "$ns"
  ip netns exec "$ns" sh -c 'test -e /proc/net/ip_vs' && have="ip_vs"
  ip -n "$ns" link add "${PREFIX}probe" type ipip local 192.0.2.1 remote 192.0.2.2 2>/dev/null &&
    have="$have ipip"
  ip netns delete "$ns"
  echo "$have"
}

# --- up -------------------------------------------------------------------------------------

start_bg() { # NAME NETNS|- COMMAND...: started in its own session, pid in $STATE/pids/NAME
  local name=$1 ns=$2
  shift 2
  # nsenter, not `ip netns exec`: that one gives the process a private mount namespace, where
  # the namespaces sandbox-node makes for pods (bind mounts under /run/netns) stay invisible.
  if [ "$ns" = - ]; then
    setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  else
    setsid nsenter "--net=/run/netns/$ns" "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  fi
  local pid=$!
  echo "$pid" >"$STATE/pids/$name"
  # Return only once the child has its own session (setsid ran) or is gone: whoever runs this
  # script may end its process group when it exits (a test's exec, a CI runner), and a child
  # not yet out of it would die unstarted, without even its log (seen on a loaded machine).
  local deadline=$((SECONDS + 10))
  until [ "$(session_of "$pid")" = "$pid" ]; do
    kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ] || break
    sleep 0.05
  done
}

session_of() { # PID: its session id, read with shell builtins (no process start)
  local stat rest
  read -r stat <"/proc/$1/stat" 2>/dev/null || return 0
  rest=${stat##*) } # after "(comm) ": state ppid pgrp session ...
  read -r _ _ _ rest _ <<<"$rest"
  echo "$rest"
}

wait_for() { # SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

node_subnet() { [ "$1" -le 2 ] && echo 1 || echo 2; } # nodes 1-2 on subnet 1, the rest on 2
node_ip() { echo "10.250.$(node_subnet "$1").$((10 + $1))"; }

# Every node has its pod CIDR (one request to the API server, no kubectl: its start and API
# discovery cost seconds in the emulated guest).
pod_cidrs_assigned() {
  local rest n=0
  rest=$(ip netns exec "$ROUTER_NS" curl -sf -m 5 "http://127.0.0.1:$API_INNER_PORT/api/v1/nodes") || return 1
  while [[ $rest == *'"podCIDR":"'* ]]; do
    rest=${rest#*'"podCIDR":"'}
    [[ $rest == [0-9]* ]] && n=$((n + 1))
  done
  [ "$n" -ge "$NODES" ]
}

kubeconfig_for() { # URL: the API server's kubeconfig with its server set to URL
  local line
  while IFS= read -r line; do
    if [[ $line =~ ^([[:space:]]*server:) ]]; then
      echo "${BASH_REMATCH[1]} $1"
    else
      printf '%s\n' "$line"
    fi
  done <"$STATE/kubeconfig-inner"
}

write_bird_conf() {
  local i
  {
    echo "router id 10.250.1.1;"
    echo "protocol device {}"
    echo "protocol direct { ipv4; interface \"br*\"; }"
    echo "protocol kernel { ipv4 { import none; export all; }; }"
    for i in $(seq 1 "$NODES"); do
      echo "protocol bgp n$i {"
      echo "  local as $ROUTER_ASN; neighbor $(node_ip "$i") as $CLUSTER_ASN;"
      echo "  graceful restart on;"
      echo "  ipv4 { import all; export none; };"
      echo "}"
    done
  } >"$STATE/bird.conf"
}

cmd_up() {
  NODES=3 CONTROLLERS=router,firewall,proxy EXTRA_FLAGS="" API_PORT=6443
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) NODES=$2; shift 2 ;;
      --controllers) CONTROLLERS=$2; shift 2 ;;
      --kube-router-flags) EXTRA_FLAGS=$2; shift 2 ;;
      --api-port) API_PORT=$2; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [[ $NODES =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 8 ] || die "--nodes wants 1..8"
  [[ $API_PORT =~ ^[0-9]+$ ]] && [ "$API_PORT" -ge 1 ] && [ "$API_PORT" -le 65535 ] ||
    die "--api-port wants 1..65535"
  need_root
  need_tools
  find_bin
  if [ -n "$(our_namespaces)" ] || [ -e "$STATE" ]; then
    die "a sandbox (or what is left of one) exists: $(our_namespaces | tr '\n' ' ')$STATE; run 'scripts/sandbox.sh down --reap' first"
  fi
  if ss -Hltn "sport = :$API_PORT" | grep -q .; then
    die "port $API_PORT on 127.0.0.1 is in use: pass --api-port PORT"
  fi
  local c run_router=false run_firewall=false run_proxy=false overlay=false proxy_note=""
  for c in ${CONTROLLERS//,/ }; do
    [[ $c =~ ^(router|firewall|proxy)$ ]] || die "--controllers takes router,firewall,proxy; got $c"
  done
  [[ ,$CONTROLLERS, == *,router,* ]] && run_router=true
  [[ ,$CONTROLLERS, == *,firewall,* ]] && run_firewall=true
  [[ ,$CONTROLLERS, == *,proxy,* ]] && run_proxy=true
  $run_router || $run_firewall || $run_proxy || die "--controllers names none of router,firewall,proxy"
  local features
  features=" $(kernel_features) "
  if $run_proxy && [[ $features != *" ip_vs "* ]]; then
    run_proxy=false
    proxy_note="WITHOUT the service proxy: this kernel has no ip_vs (ClusterIP/NodePort traffic is not served; see docs/sandbox.md)"
  fi
  [[ $features == *" ipip "* ]] && overlay=true
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/cni" "$STATE/before"
  echo "$NODES" >"$STATE/nodes"
  trap 'echo "sandbox: up failed; logs in $STATE/logs; run scripts/sandbox.sh down --reap" >&2' ERR

  # The namespaces and links in one `ip -batch` per namespace (each process start costs 0.1-0.5 s
  # in the emulated guest). The router: two underlay subnets (bridges), forwarding between
  # them, BIRD, the API server. Nodes: a namespace each, on subnet 1 or 2 behind the router.
  local i s ns ip gw node_args=() router_batch=""
  {
    echo "netns add $ROUTER_NS"
    for ((i = 1; i <= NODES; i++)); do echo "netns add $PREFIX-n$i"; done
  } | ip -batch -
  router_batch="link set lo up"$'\n'
  for s in 1 2; do
    router_batch+="link add br$s type bridge"$'\n'"addr add 10.250.$s.1/24 dev br$s"$'\n'"link set br$s up"$'\n'
  done
  for ((i = 1; i <= NODES; i++)); do
    router_batch+="link add ${PREFIX}n$i type veth peer name eth0 netns $PREFIX-n$i"$'\n'
    router_batch+="link set ${PREFIX}n$i master br$(node_subnet "$i") up"$'\n'
  done
  ip -n "$ROUTER_NS" -batch - <<<"$router_batch"
  ip netns exec "$ROUTER_NS" sysctl -qw net.ipv4.ip_forward=1
  start_bg apiserver "$ROUTER_NS" "$API_BIN" --listen "0.0.0.0:$API_INNER_PORT" \
    --kubeconfig-out "$STATE/kubeconfig-inner" --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-node-port-range "$NODE_PORTS" --graceful-pod-deletion
  for ((i = 1; i <= NODES; i++)); do
    ns=$PREFIX-n$i ip=$(node_ip "$i") gw=10.250.$(node_subnet "$i").1
    ip -n "$ns" -batch - <<<"link set lo up
addr add $ip/24 dev eth0
link set eth0 up
route add default via $gw"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    mkdir -p "$STATE/cni/n$i"
    node_args+=(--node "n$i,$ns,$ip,$STATE/cni/n$i/10-kuberouter.conflist")
  done
  # What --cleanup-config must return to, taken before any agent runs (an agent changes only
  # its own node's namespace, and before the agents there are no BGP routes).
  for ((i = 1; i <= NODES; i++)); do snapshot "$PREFIX-n$i" >"$STATE/before/n$i"; done
  wait_for 20 "the API server" test -s "$STATE/kubeconfig-inner" ||
    die "fake-apiserver did not start: $(tail -5 "$STATE/logs/apiserver.log")"
  for ((i = 1; i <= NODES; i++)); do
    kubeconfig_for "http://10.250.$(node_subnet "$i").1:$API_INNER_PORT" >"$STATE/kubeconfig-n$i"
  done
  # kubectl on the host reaches it through a forwarder on the host's loopback.
  start_bg forwarder - socat "TCP-LISTEN:$API_PORT,bind=127.0.0.1,reuseaddr,fork" \
    "EXEC:ip netns exec $ROUTER_NS socat STDIO TCP\:127.0.0.1\:$API_INNER_PORT"
  kubeconfig_for "http://127.0.0.1:$API_PORT" >"$STATE/kubeconfig"
  write_bird_conf
  start_bg bird "$ROUTER_NS" bird -f -c "$STATE/bird.conf" -s "$STATE/bird.ctl"
  printf '%s\n' "${node_args[@]}" >"$STATE/sandbox-node.args"
  start_sandbox_node
  export KUBECONFIG=$STATE/kubeconfig
  wait_for 30 "every node's pod CIDR" pod_cidrs_assigned ||
    die "not every node got a pod CIDR: $(tail -5 "$STATE/logs/sandbox-node.log")"
  echo "$run_router $run_firewall $run_proxy $overlay" >"$STATE/controllers"
  printf '%s' "$EXTRA_FLAGS" >"$STATE/extra-flags"
  local agents_at=$SECONDS
  for ((i = 1; i <= NODES; i++)); do start_agent "$i"; done
  # Generous: /healthz answers 500 until a controller's first sync ends, and in the emulated
  # guest on a loaded machine three agents starting at once take minutes.
  for ((i = 1; i <= NODES; i++)); do
    wait_for 240 "n$i healthy" ip netns exec "$PREFIX-n$i" curl -sf -m 2 http://127.0.0.1:20244/healthz ||
      die "kube-router on n$i is not healthy: $(tail -5 "$STATE/logs/kube-router-n$i.log")"
  done
  trap - ERR
  cat <<EOF
sandbox: up: $NODES nodes (n1-n2 on 10.250.1.0/24, n3+ on 10.250.2.0/24), router $ROUTER_NS (BIRD, AS $ROUTER_ASN)
sandbox: kube-router on every node: router=$run_router firewall=$run_firewall service-proxy=$run_proxy overlay=$overlay
sandbox: up took ${SECONDS}s, $((SECONDS - agents_at))s of it the agents' start until healthy
EOF
  [ -z "$proxy_note" ] || echo "sandbox: NOTE: $proxy_note"
  $overlay || echo "sandbox: NOTE: no ipip in this kernel: pod traffic between the subnets goes through the router (it learns the pod CIDRs by BGP), not an IPIP overlay"
  cat <<EOF

export KUBECONFIG=$STATE/kubeconfig

Try (from $ROOT):
  kubectl apply --validate=false -f examples/
  scripts/sandbox.sh status
  scripts/sandbox.sh exec default/client -- curl -s http://\$(kubectl get pod web-2 -o jsonpath='{.status.podIP}'):8080/
  kubectl apply --validate=false -f examples/policy/
  scripts/sandbox.sh exec default/stranger -- curl -s -m 2 http://\$(kubectl get pod web-0 -o jsonpath='{.status.podIP}'):8080/
  scripts/sandbox.sh down
EOF
}

# The node namespace's state an agent may change: routes, links, rules, sets. iptables-save's
# counters, comments and built-in chain policies are left out (an empty table and no table
# are the same state).
snapshot() {
  local ns=$1
  echo "# routes"
  { ip -n "$ns" route show table all; ip -n "$ns" -6 route show table all; } |
    grep -v -e '^local ' -e '^broadcast ' -e '^multicast ' | sort
  echo "# links"
  ip -n "$ns" -o link show | sed -E 's/^[0-9]+: //; s/[:@].*//' | sort
  echo "# iptables"
  # One shell and one awk for all four dumps (process starts are what costs in the guest).
  # shellcheck disable=SC2016  # expanded by the inner shell
  ip netns exec "$ns" sh -c 'for s in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save; do
      command -v $s >/dev/null || continue; echo "@@ $s"; $s 2>/dev/null; done' |
    awk '/^@@ / { save = $2; next }
         /^(#|\*|COMMIT)/ || /^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) / { next }
         { print save " " $0 }' || true
  echo "# ipsets"
  ip netns exec "$ns" ipset list -n 2>/dev/null | sort || true
}

start_sandbox_node() {
  local args=()
  mapfile -t args <"$STATE/sandbox-node.args"
  start_bg sandbox-node "$ROUTER_NS" "$BIN/sandbox-node" --kubeconfig "$STATE/kubeconfig-inner" \
    --state-dir "$STATE" --netns-prefix "$PREFIX" --cluster-cidr "$CLUSTER_CIDR" "${args[@]}"
}

start_agent() { # INDEX
  local i=$1 gw run_router run_firewall run_proxy overlay
  read -r run_router run_firewall run_proxy overlay <"$STATE/controllers"
  EXTRA_FLAGS=$(<"$STATE/extra-flags")
  gw=10.250.$(node_subnet "$i").1
  # shellcheck disable=SC2086  # EXTRA_FLAGS is a list of flags
  start_bg "kube-router-n$i" "$PREFIX-n$i" env "KUBE_ROUTER_CNI_CONF_FILE=$STATE/cni/n$i/10-kuberouter.conflist" \
    "$BIN/kube-router" --kubeconfig "$STATE/kubeconfig-n$i" --hostname-override "n$i" \
    --run-router="$run_router" --run-firewall="$run_firewall" --run-service-proxy="$run_proxy" \
    --enable-overlay="$overlay" \
    --cluster-asn=$CLUSTER_ASN --peer-router-ips="$gw" --peer-router-asns=$ROUTER_ASN \
    --bgp-graceful-restart=true \
    --service-cluster-ip-range=$SERVICE_CIDR --service-node-port-range=$NODE_PORTS \
    ${EXTRA_FLAGS:-}
}

# --- down -----------------------------------------------------------------------------------

# Stops a process we started, only if its pid still runs what we started (pids get reused).
stop_pid_file() {
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -e "$PREFIX" -e "$STATE" -e sandbox-node -e fake-apiserver; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  fi
}

cmd_down() {
  local reap=false
  [ "${1:-}" = --reap ] && reap=true
  need_root
  local f ns pid
  if [ -d "$STATE/pids" ]; then
    for f in "$STATE"/pids/*; do [ -e "$f" ] && stop_pid_file "$f"; done
  fi
  # Whatever still runs inside our namespaces is ours (a killed run left it behind).
  local namespaces
  namespaces=$(our_namespaces)
  for ns in $namespaces; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  local deadline=$((SECONDS + 10))
  for ns in $namespaces; do
    while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  # The host-side forwarder (and its per-connection children) run in the host namespace.
  if $reap; then
    for pid in $(pgrep -f "EXEC:ip netns exec $ROUTER_NS socat" || true); do kill -TERM "$pid" 2>/dev/null || true; done
  fi
  # One `ip -batch` for all (-force: go on past one that fails; what is left is named below).
  [ -z "$namespaces" ] || sed 's/^/netns delete /' <<<"$namespaces" | ip -force -batch - ||
    say "could not delete every namespace"
  rm -rf "$STATE"
  [ -z "$(our_namespaces)" ] || die "namespaces left: $(our_namespaces | tr '\n' ' ')"
  say "down: every $PREFIX-* namespace, process and $STATE removed"
}

# --- status / exec --------------------------------------------------------------------------

cmd_status() {
  need_root
  [ -s "$STATE/kubeconfig" ] || die "no sandbox is up (no $STATE/kubeconfig)"
  export KUBECONFIG=$STATE/kubeconfig
  echo "== nodes"
  kubectl get nodes -o custom-columns='NAME:.metadata.name,INTERNAL-IP:.status.addresses[0].address,POD-CIDR:.spec.podCIDR'
  echo "== pods"
  kubectl get pods -A -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,IP:.status.podIP'
  echo "== services"
  kubectl get services -A -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,TYPE:.spec.type,CLUSTER-IP:.spec.clusterIP,NODE-PORTS:.spec.ports[*].nodePort'
  local i nodes
  nodes=$(cat "$STATE/nodes")
  for i in $(seq 1 "$nodes"); do
    echo "== n$i: /healthz $(ip netns exec "$PREFIX-n$i" curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:20244/healthz || echo down)"
    ip netns exec "$PREFIX-n$i" curl -s -m 2 http://127.0.0.1:50051/status 2>/dev/null |
      python3 -c 'import json,sys
v=json.load(sys.stdin)
for p in v.get("peers",[]): print("  bgp %-15s %-12s asn %s" % (p.get("address"), p.get("state"), p.get("asn")))' 2>/dev/null ||
      echo "  (no BGP status view)"
    if [ "$(cut -d' ' -f3 "$STATE/controllers")" = true ] && command -v ipvsadm >/dev/null; then
      ip netns exec "$PREFIX-n$i" ipvsadm -Ln | sed 's/^/  /'
    fi
  done
  echo "== router ($ROUTER_NS, BIRD)"
  birdc -s "$STATE/bird.ctl" show protocols | sed 's/^/  /'
}

cmd_exec() {
  need_root
  [ $# -ge 3 ] && [ "$2" = -- ] || die "usage: exec NAMESPACE/POD -- COMMAND..."
  local target=$1 ip ns
  shift 2
  export KUBECONFIG=$STATE/kubeconfig
  ip=$(kubectl get pod -n "${target%%/*}" "${target#*/}" -o jsonpath='{.status.podIP}') ||
    die "no pod $target"
  [ -n "$ip" ] || die "pod $target has no IP yet (kubectl get pod -n ${target%%/*} ${target#*/} -o yaml)"
  for ns in $(our_namespaces | grep -e "^$PREFIX-p-"); do
    if ip -n "$ns" -o addr show dev eth0 2>/dev/null | grep -q " $ip/"; then
      exec ip netns exec "$ns" "$@"
    fi
  done
  die "no pod namespace holds $ip"
}

# Stops, kills (SIGKILL: a crash), starts or restarts the kube-router of one node, or
# sandbox-node (whose pods keep their namespaces; their servers restart with it).
cmd_agent() {
  need_root
  local node=${1:-} action=${2:-} i=0 pid name
  if [ "$node" = sandbox-node ] && [ -e "$STATE/nodes" ]; then
    name=sandbox-node
  elif [[ $node =~ ^n([0-9]+)$ ]] && [ -e "$STATE/nodes" ] && [ "${BASH_REMATCH[1]}" -le "$(cat "$STATE/nodes")" ]; then
    i=${BASH_REMATCH[1]} name=kube-router-$node
  else
    die "usage: agent nN|sandbox-node stop|kill|start|restart (no such agent: $node)"
  fi
  find_bin
  pid=$(cat "$STATE/pids/$name" 2>/dev/null || true)
  case $action in
    stop | kill | restart)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "-$([ "$action" = kill ] && echo KILL || echo TERM)" "$pid"
        wait_for 30 "agent exit" sh -c "! kill -0 $pid" || die "$name did not exit"
      fi
      [ "$action" = restart ] || return 0
      ;;
    start) ;;
    *) die "usage: agent nN|sandbox-node stop|kill|start|restart" ;;
  esac
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then die "$name is running"; fi
  mv -f "$STATE/logs/$name.log" "$STATE/logs/$name.log.old" 2>/dev/null || true
  if [ "$name" = sandbox-node ]; then
    start_sandbox_node
    wait_for 30 "sandbox-node serving" grep -q "serving" "$STATE/logs/$name.log" ||
      die "sandbox-node did not start: $(tail -5 "$STATE/logs/$name.log")"
  else
    start_agent "$i"
    wait_for 60 "healthy" ip netns exec "$PREFIX-$node" curl -sf -m 2 http://127.0.0.1:20244/healthz ||
      die "kube-router on $node is not healthy: $(tail -5 "$STATE/logs/$name.log")"
  fi
  say "$name started (pid $(cat "$STATE/pids/$name"))"
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  agent) shift; cmd_agent "$@" ;;
  snapshot) # nN: the node's state as `up` recorded it before the agent started (diff with
    # $KRSB_DIR/before/nN after `kube-router --cleanup-config`)
    need_root
    [[ ${2:-} =~ ^n[0-9]+$ ]] || die "usage: snapshot nN"
    snapshot "$PREFIX-$2" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
