#!/bin/sh
# Runs inside the Debian guest kernel (ipip, ip6tnl and fou exist there, not on the host): three
# dual-stack nodes, n1 and n3 on one subnet (a bridge in namespace sw) and n2 on another, joined
# by a router namespace, fake-apiserver on the router, the real kube-router (--run-router only,
# --enable-ipv6) on each node, one dual-stack pod per node behind kube-bridge. In one boot:
#  1. IPIP: tun-... tunnels between the subnets only (n1 and n3 each have an ipip tunnel to n2's
#     IPv4 address and an ip6tnl ip6ip6 one to its IPv6 address; n2 has both to each of them),
#     proto 17 routes through them, and direct proto 17 routes between n1 and n3 (via the other
#     node's address on eth0, no tunnel). TCP over IPv4 and IPv6 between every pair of pods: the
#     router forwards IP protocol 4 and IPv6 next header 41 for each cross-subnet node pair,
#     n1 and n3 forward each other's pod traffic out of eth0 and send each other no
#     encapsulated packet (iptables/ip6tables counters on the router and on n1/n3).
#  2. FoU: the agents restarted with --overlay-encap=fou recreate every tunnel with GUE to port
#     5555 and add a GUE port per family (loading fou and fou6 themselves); TCP between every
#     pair of pods over both families; the router forwards UDP to 5555 only for each
#     cross-subnet pair, no plain IPIP / IPv6-in-IPv6; n1 <-> n3 still direct.
#  3. --cleanup-config on each node removes every tun-... tunnel, proto 17 route and FoU port.
# Prints PASS and exits 0, or names the failing check and exits 1.
# Usage: overlay.sh <kube-router> <fake-apiserver>
set -u
agent=$1
apiserver=$2
work=$(mktemp -d /tmp/krvm-routing.XXXXXX)
pids=""
agent_pids=""
nodes="n1 n2 n3"
t0=$(date +%s)
say() { echo "[$(($(date +%s) - t0)) s] $*"; }  # progress, with the seconds since the start

cleanup() {
  for pid in $pids $agent_pids; do kill "$pid" 2>/dev/null; done
  for pid in $pids $agent_pids; do wait "$pid" 2>/dev/null; done
  for ns in p1 p2 p3 n1 n2 n3 sw rt; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do echo "---- $f"; tail -n 40 "$f"; done
  exit 1
}

# Polls `$@` every 0.2 s until it succeeds or `deadline` seconds pass.
wait_for() {
  deadline=$1
  shift
  end=$(($(date +%s) + deadline))
  while [ "$(date +%s)" -lt "$end" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# The nodes' underlay addresses and pod CIDRs (node number i: pod CIDRs 10.201.i.0/24 and
# fd00:10:201:i::/64, pod 10.201.i.5 and fd00:10:201:i::5).
ip4() { case $1 in n1) echo 192.0.2.1 ;; n2) echo 198.51.100.2 ;; n3) echo 192.0.2.3 ;; esac; }
ip6() {
  case $1 in n1) echo 2001:db8:1::1 ;; n2) echo 2001:db8:2::2 ;; n3) echo 2001:db8:1::3 ;; esac
}

set -e
for ns in rt sw n1 n2 n3; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
for ns in rt n1 n2 n3; do
  ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward
    echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'
done
# Underlay: n1 and n3 in 192.0.2.0/24 and 2001:db8:1::/64 (one bridge in sw, with the router's
# leg), n2 in 198.51.100.0/24 and 2001:db8:2::/64, routed by rt.
ip -n sw link add br0 type bridge
ip -n sw link set br0 up
ip -n rt link add to-a type veth peer name a-rt netns sw
for n in n1 n3; do ip -n "$n" link add eth0 type veth peer name "a-$n" netns sw; done
for port in a-rt a-n1 a-n3; do
  ip -n sw link set "$port" master br0 up
done
ip -n n2 link add eth0 type veth peer name to-n2 netns rt
ip -n rt addr add 192.0.2.254/24 dev to-a
ip -n rt addr add 198.51.100.254/24 dev to-n2
ip -n rt addr add 2001:db8:1::fe/64 dev to-a nodad
ip -n rt addr add 2001:db8:2::fe/64 dev to-n2 nodad
ip -n rt link set to-a up
ip -n rt link set to-n2 up
for n in $nodes; do
  ip -n "$n" addr add "$(ip4 "$n")/24" dev eth0
  ip -n "$n" addr add "$(ip6 "$n")/64" dev eth0 nodad
  ip -n "$n" link set eth0 up
done
for n in n1 n3; do
  ip -n "$n" route add default via 192.0.2.254
  ip -n "$n" route add default via 2001:db8:1::fe
done
ip -n n2 route add default via 198.51.100.254
ip -n n2 route add default via 2001:db8:2::fe

# Counters. On the router, per cross-subnet node pair (both directions) and encapsulation:
# "ipip n1-n2" (IP protocol 4), "ip6ip6 n1-n2" (IPv6 next header 41), "fou n1-n2" (UDP to 5555,
# either family). On n1 and n3, towards the other: "encap n1>n3" (any of those to the other's
# address, sent by this node) and "direct n1>n3" (pod traffic forwarded out of eth0 unchanged).
# Appends the filter rules on stdin (one iptables-restore per namespace and family: every
# process in the guest costs time).
rules() {  # namespace iptables|ip6tables
  { echo "*filter"; cat; echo COMMIT; } | ip netns exec "$1" "$2-restore" -w --noflush
}
for family in 4 6; do
  for n in n1 n3; do
    for dir in "$n n2" "n2 $n"; do
      set -- $dir
      if [ $family = 4 ]; then
        src=$(ip4 "$1") dst=$(ip4 "$2") proto=4 name=ipip
      else
        src=$(ip6 "$1") dst=$(ip6 "$2") proto=41 name=ip6ip6
      fi
      echo "-A FORWARD -s $src -d $dst -p $proto -m comment --comment \"$name $n-n2\""
      echo "-A FORWARD -s $src -d $dst -p udp --dport 5555 -m comment --comment \"fou $n-n2\""
    done
  done | if [ $family = 4 ]; then rules rt iptables; else rules rt ip6tables; fi
done
for pair in "n1 n3 1 3" "n3 n1 3 1"; do
  set -- $pair
  c="$1>$2"
  rules "$1" iptables <<RULES
-A OUTPUT -d $(ip4 "$2") -p 4 -m comment --comment "encap $c"
-A OUTPUT -d $(ip4 "$2") -p udp --dport 5555 -m comment --comment "encap $c"
-A FORWARD -s 10.201.$3.0/24 -d 10.201.$4.0/24 -o eth0 -m comment --comment "direct $c"
RULES
  rules "$1" ip6tables <<RULES
-A OUTPUT -d $(ip6 "$2") -p 41 -m comment --comment "encap $c"
-A OUTPUT -d $(ip6 "$2") -p udp --dport 5555 -m comment --comment "encap $c"
-A FORWARD -s fd00:10:201:$3::/64 -d fd00:10:201:$4::/64 -o eth0 -m comment --comment "direct $c"
RULES
done
zero() {
  for ns in rt n1 n3; do
    ip netns exec "$ns" iptables -w -Z
    ip netns exec "$ns" ip6tables -w -Z
  done
}
# The counters read once per namespace and family (every process in the guest costs time).
snapshot() {
  for ns in rt n1 n3; do
    ip netns exec "$ns" iptables -w -L -v -x -n >"$work/counters-$ns-ipv4"
    ip netns exec "$ns" ip6tables -w -L -v -x -n >"$work/counters-$ns-ipv6"
  done
  (cd "$work" && grep "/\*" counters-*)
}
# Packets counted by the rules with that comment in the snapshot (summed over the rules).
count() {  # namespace ipv4|ipv6 comment
  awk -v c="/* $3 */" 'index($0, c) {s += $1} END {print s + 0}' "$work/counters-$1-$2"
}
# Since the last zero, for each cross-subnet pair the router forwarded encapsulation $1 only, in
# both families (ipip = IP protocol 4 and IPv6 next header 41, fou = UDP to 5555; none of the
# other), and n1 and n3 exchanged their pods' traffic directly over eth0 in both families, no
# encapsulated packet between them.
expect_encap() {  # ipip|fou
  used4=ipip used6=ip6ip6 unused4=fou unused6=fou
  if [ "$1" = fou ]; then used4=fou used6=fou unused4=ipip unused6=ip6ip6; fi
  snapshot
  for p in n1-n2 n3-n2; do
    [ "$(count rt ipv4 "$used4 $p")" -gt 0 ] ||
      fail "$1: no IPv4 $used4 packets of $p crossed the router"
    [ "$(count rt ipv6 "$used6 $p")" -gt 0 ] ||
      fail "$1: no IPv6 $used6 packets of $p crossed the router"
    [ "$(count rt ipv4 "$unused4 $p")" -eq 0 ] ||
      fail "$1: IPv4 $unused4 packets of $p crossed the router"
    [ "$(count rt ipv6 "$unused6 $p")" -eq 0 ] ||
      fail "$1: IPv6 $unused6 packets of $p crossed the router"
  done
  for c in "n1>n3" "n3>n1"; do
    n=${c%%>*}
    for family in ipv4 ipv6; do
      [ "$(count "$n" "$family" "direct $c")" -gt 0 ] ||
        fail "$1: $c: no $family pod packets forwarded directly out of eth0"
      [ "$(count "$n" "$family" "encap $c")" -eq 0 ] ||
        fail "$1: $c: encapsulated $family packets between nodes of one subnet"
    done
  done
}

cat >"$work/nodes.yaml" <<YAML
apiVersion: v1
kind: List
items:
YAML
for n in $nodes; do
  i=${n#n}
  cat >>"$work/nodes.yaml" <<YAML
- apiVersion: v1
  kind: Node
  metadata: {name: $n}
  spec: {podCIDR: 10.201.$i.0/24, podCIDRs: [10.201.$i.0/24, "fd00:10:201:$i::/64"]}
  status: {addresses: [{type: InternalIP, address: $(ip4 "$n")},
                       {type: InternalIP, address: "$(ip6 "$n")"}]}
YAML
done
set +e

ip netns exec rt "$apiserver" --listen 192.0.2.254:0 --manifests "$work/nodes.yaml" \
  --kubeconfig-out "$work/kubeconfig" >"$work/apiserver.log" 2>&1 &
pids="$pids $!"
wait_for 60 test -s "$work/kubeconfig" || fail "fake-apiserver did not start"

start_agents() {  # extra flags
  for n in $nodes; do
    KUBE_ROUTER_CNI_CONF_FILE="$work/cni-$n.conflist" ip netns exec "$n" "$agent" \
      --kubeconfig "$work/kubeconfig" --hostname-override "$n" --run-router=true \
      --run-firewall=false --run-service-proxy=false --health-port=0 \
      --routes-sync-period=10s --enable-ipv6=true -v 2 "$@" >>"$work/agent-$n.log" 2>&1 &
    agent_pids="$agent_pids $!"
  done
}
stop_agents() {
  for pid in $agent_pids; do kill "$pid" 2>/dev/null; done
  for pid in $agent_pids; do wait "$pid" 2>/dev/null; done
  agent_pids=""
}

has_tunnel_route() {  # node, pod CIDR
  ip -n "$1" route show proto 17 | grep -q "^$2 dev tun-" ||
    ip -n "$1" -6 route show proto 17 | grep -q "^$2 dev tun-"
}
has_direct_route() {  # node, pod CIDR, next hop
  ip -n "$1" route show proto 17 | grep -Eq "^$2 via $3 dev eth0( |\$)" ||
    ip -n "$1" -6 route show proto 17 | grep -Eq "^$2 via $3 dev eth0( |\$)"
}
# The node's pod CIDR routes: through a tunnel across the subnets, direct on its own subnet.
routes_planned() {  # node
  for m in $nodes; do
    [ "$m" = "$1" ] && continue
    i=${m#n}
    if [ "$1" = n2 ] || [ "$m" = n2 ]; then
      has_tunnel_route "$1" "10.201.$i.0/24" && has_tunnel_route "$1" "fd00:10:201:$i::/64" ||
        return 1
    else
      has_direct_route "$1" "10.201.$i.0/24" "$(ip4 "$m")" &&
        has_direct_route "$1" "fd00:10:201:$i::/64" "$(ip6 "$m")" || return 1
    fi
  done
}
tunnel_details() {  # node: the tun-... links with their details
  ip -n "$1" -d link show | grep -A2 ": tun-"
}
tunnels_expected() {  # node: one ipip + one ip6tnl per node on another subnet
  if [ "$1" = n2 ]; then echo 4; else echo 2; fi
}
tunnel_count() {  # node
  ip -n "$1" link show | grep -c ": tun-"
}
full_syncs() {  # node: how many full routing syncs its agent has finished
  grep -c "routing: sync (" "$work/agent-$1.log"
}
more_full_syncs() {  # node, count
  [ "$(full_syncs "$1")" -gt "$2" ]
}

# TCP from pod i to pod j over IPv4 (pong) and IPv6 (pong6): the reply names the server's pod.
pong() {  # i j
  ip netns exec "p$1" socat -T3 - "TCP:10.201.$2.5:8080,connect-timeout=3" </dev/null |
    grep -qx "pong p$2"
}
pong6() {  # i j
  ip netns exec "p$1" socat -T3 - "TCP6:[fd00:10:201:$2::5]:8080,connect-timeout=3" </dev/null |
    grep -qx "pong6 p$2"
}
# One connection per pair of pods and family: its packets take both nodes' routes.
all_pods_talk() {  # what: every pod reaches every other over both families
  for pair in "1 2" "1 3" "3 2"; do
    set -- "$1" $pair
    wait_for 60 pong "$2" "$3" || fail "$1: pod on n$2 cannot reach the pod on n$3 over IPv4"
    wait_for 60 pong6 "$2" "$3" || fail "$1: pod on n$2 cannot reach the pod on n$3 over IPv6"
  done
}
# Traffic through the tunnels leaves PMTU exceptions in the route cache. A full sync after it
# must not take them for connected subnets: it once refused the peer's pod CIDR ("covers a node
# subnet") and dropped the tunnel route until the next sync.
survives_full_sync_after_traffic() {  # what: the overlay under test
  before=""
  for n in $nodes; do before="$before $n:$(full_syncs "$n")"; done
  for entry in $before; do
    wait_for 120 more_full_syncs "${entry%%:*}" "${entry#*:}" ||
      fail "${entry%%:*}: no full sync within 120 s"
  done
  grep -h "refusing routes from BGP peer" "$work"/agent-*.log && fail "$1: a node's pod CIDR was refused"
  say "$1: a full sync on every node"
  for n in $nodes; do
    routes_planned "$n" || fail "$1: $n lost a pod CIDR route after a full sync"
  done
  wait_for 30 pong 1 2 || fail "$1: IPv4 pods cut after a full sync"
  wait_for 30 pong6 1 2 || fail "$1: IPv6 pods cut after a full sync"
}

say "== 1. IPIP: ipip and ip6tnl between the subnets, direct within one (agent)"
start_agents
for n in $nodes; do
  wait_for 240 routes_planned "$n" || {
    ip -n "$n" route show proto 17
    ip -n "$n" -6 route show proto 17
    fail "$n: not every pod CIDR routed (tunnel across the subnets, direct on its own)"
  }
done
for n in $nodes; do
  echo "-- $n"
  ip -n "$n" route show proto 17
  ip -n "$n" -6 route show proto 17
done
say "every pod CIDR routed"
tunnel_details n1
for n in $nodes; do
  [ "$(tunnel_count "$n")" -eq "$(tunnels_expected "$n")" ] ||
    fail "$n: $(tunnel_count "$n") tunnels, want $(tunnels_expected "$n")"
done
for n in n1 n3; do
  ip -n "$n" -d link show type ipip | grep -q "remote 198.51.100.2 local $(ip4 "$n")" ||
    fail "$n ipip tunnel end points"
  ip -n "$n" -d link show type ip6tnl | grep -q "ip6ip6 remote 2001:db8:2::2 local $(ip6 "$n")" ||
    fail "$n ip6tnl mode or end points"
  ip -n n2 -d link show type ipip | grep -q "remote $(ip4 "$n") local 198.51.100.2" ||
    fail "n2 ipip tunnel end points to $n"
  ip -n n2 -d link show type ip6tnl | grep -q "ip6ip6 remote $(ip6 "$n") local 2001:db8:2::2" ||
    fail "n2 ip6tnl mode or end points to $n"
done
for n in $nodes; do
  tunnel_details "$n" | grep -q "encap gue" && fail "$n: a tunnel with UDP encapsulation under ipip"
done

# One pod per node behind kube-bridge (the agents create it with both gateway addresses), each
# answering TCP on both families with its name.
bridge_ready() {  # node number
  ip -n "n$1" addr show dev kube-bridge | grep -q "fd00:10:201:$1::1/64"
}
for i in 1 2 3; do
  wait_for 60 bridge_ready "$i" || fail "n$i has no kube-bridge with its IPv6 gateway"
  ip netns add "p$i"
  ip -n "p$i" link set lo up
  ip -n "n$i" link add "vp$i" type veth peer name eth0 netns "p$i"
  ip -n "n$i" link set "vp$i" master kube-bridge up
  ip -n "p$i" addr add "10.201.$i.5/24" dev eth0
  ip -n "p$i" addr add "fd00:10:201:$i::5/64" dev eth0 nodad
  ip -n "p$i" link set eth0 up
  ip -n "p$i" route add default via "10.201.$i.1"
  ip -n "p$i" route add default via "fd00:10:201:$i::1"
  ip netns exec "p$i" socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:"echo pong p$i" \
    >"$work/socat-p$i.log" 2>&1 &
  pids="$pids $!"
  ip netns exec "p$i" socat TCP6-LISTEN:8080,reuseaddr,fork,ipv6only=1 SYSTEM:"echo pong6 p$i" \
    >"$work/socat6-p$i.log" 2>&1 &
  pids="$pids $!"
done
say "pods up"
zero
all_pods_talk ipip
say "every pod reached every other"
expect_encap ipip
lsmod | grep -q '^fou ' && fail "the fou module was loaded without --overlay-encap=fou"
survives_full_sync_after_traffic ipip

say "== 2. FoU/GUE (agents restarted with --overlay-encap=fou)"
stop_agents
say "agents stopped"
start_agents --overlay-encap=fou
gue_tunnels() {  # node: every tunnel encapsulated
  [ "$(tunnel_details "$1" | grep -c "encap gue encap-sport auto encap-dport 5555")" -eq \
    "$(tunnels_expected "$1")" ]
}
gue_port() {  # node, -4|-6
  ip -n "$1" "$2" fou show | grep -q "port 5555 gue"
}
for n in $nodes; do
  wait_for 240 gue_tunnels "$n" || fail "$n: not every tunnel with encap gue to port 5555"
  wait_for 60 gue_port "$n" -4 || fail "$n: no IPv4 GUE port 5555"
  wait_for 60 gue_port "$n" -6 || fail "$n: no IPv6 GUE port 5555"
  [ "$(tunnel_count "$n")" -eq "$(tunnels_expected "$n")" ] ||
    fail "fou: $n: $(tunnel_count "$n") tunnels, want $(tunnels_expected "$n")"
  routes_planned "$n" || fail "fou: $n: not every pod CIDR routed as planned"
done
tunnel_details n2
ip -n n2 -d link show type ip6tnl | grep -q "encap-csum6" || fail "IPv6 GUE without UDP checksum"
ip -n n2 fou show
ip -n n2 -6 fou show
say "tunnels recreated with GUE"
zero
all_pods_talk fou
say "every pod reached every other"
expect_encap fou
survives_full_sync_after_traffic fou
stop_agents

say "== 3. --cleanup-config"
for n in $nodes; do
  KUBE_ROUTER_CNI_CONF_FILE="$work/cni-$n.conflist" ip netns exec "$n" "$agent" \
    --cleanup-config --run-router=true --run-firewall=false --run-service-proxy=false \
    >>"$work/cleanup-$n.log" 2>&1 || fail "$n: --cleanup-config failed"
  ip -n "$n" link show | grep -q ": tun-" && fail "$n: tunnels left after --cleanup-config"
  [ -z "$(ip -n "$n" route show proto 17)$(ip -n "$n" -6 route show proto 17)" ] ||
    fail "$n: proto 17 routes left after --cleanup-config"
  [ -z "$(ip -n "$n" -4 fou show)$(ip -n "$n" -6 fou show)" ] ||
    fail "$n: FoU ports left after --cleanup-config"
done
cat "$work/cleanup-n1.log"
echo PASS
