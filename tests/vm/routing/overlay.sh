#!/bin/sh
# Runs inside the Debian guest kernel (ipip, ip6tnl and fou exist there, not on the host): two
# dual-stack nodes in different subnets joined by a router namespace, fake-apiserver on the
# router, the real kube-router (--run-router only, --enable-ipv6) on each node, one dual-stack
# pod per node behind kube-bridge. In one boot:
#  1. IPIP: tun-... tunnels (ipip to the other node's IPv4 address, ip6tnl ip6ip6 to its IPv6
#     one) with proto 17 routes through them; pod -> pod TCP over IPv4 and over IPv6; the router
#     forwards IP protocol 4 and IPv6 next header 41 (iptables/ip6tables counters on the router).
#  2. FoU: the agents restarted with --overlay-encap=fou recreate both tunnels with GUE to port
#     5555 and add a GUE port per family (loading fou and fou6 themselves); pod -> pod TCP over
#     both families; the router forwards UDP to 5555 only, no plain IPIP / IPv6-in-IPv6.
#  3. --cleanup-config on each node removes every tun-... tunnel, proto 17 route and FoU port.
# Prints PASS and exits 0, or names the failing check and exits 1.
# Usage: overlay.sh <kube-router> <fake-apiserver>
set -u
agent=$1
apiserver=$2
work=$(mktemp -d /tmp/krvm-routing.XXXXXX)
pids=""
agent_pids=""

cleanup() {
  for pid in $pids $agent_pids; do kill "$pid" 2>/dev/null; done
  for pid in $pids $agent_pids; do wait "$pid" 2>/dev/null; done
  for ns in p1 p2 n1 n2 rt; do ip netns del "$ns" 2>/dev/null; done
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

set -e
ip netns add rt
ip netns add n1
ip netns add n2
for ns in rt n1 n2; do
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward
    echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'
done
# Underlay: n1 in 192.0.2.0/24 and 2001:db8:1::/64, n2 in 198.51.100.0/24 and 2001:db8:2::/64,
# routed by rt.
ip -n n1 link add eth0 type veth peer name to-n1 netns rt
ip -n n2 link add eth0 type veth peer name to-n2 netns rt
ip -n rt addr add 192.0.2.254/24 dev to-n1
ip -n rt addr add 198.51.100.254/24 dev to-n2
ip -n rt addr add 2001:db8:1::fe/64 dev to-n1 nodad
ip -n rt addr add 2001:db8:2::fe/64 dev to-n2 nodad
ip -n rt link set to-n1 up
ip -n rt link set to-n2 up
ip -n n1 addr add 192.0.2.1/24 dev eth0
ip -n n2 addr add 198.51.100.2/24 dev eth0
ip -n n1 addr add 2001:db8:1::1/64 dev eth0 nodad
ip -n n2 addr add 2001:db8:2::2/64 dev eth0 nodad
for ns in n1 n2; do ip -n "$ns" link set eth0 up; done
ip -n n1 route add default via 192.0.2.254
ip -n n2 route add default via 198.51.100.254
ip -n n1 route add default via 2001:db8:1::fe
ip -n n2 route add default via 2001:db8:2::fe

# What the router forwards between the subnets, counted per encapsulation.
ipt() { ip netns exec rt iptables -w "$@"; }
ip6t() { ip netns exec rt ip6tables -w "$@"; }
ipt -A FORWARD -p 4 -m comment --comment ipip
ipt -A FORWARD -p udp --dport 5555 -m comment --comment fou
ip6t -A FORWARD -p 41 -m comment --comment ip6ip6
ip6t -A FORWARD -p udp --dport 5555 -m comment --comment fou
# Packets counted by the rule with that comment.
count() {  # iptables|ip6tables comment
  ip netns exec rt "$1" -w -L FORWARD -v -x -n | awk -v c="/* $2 */" 'index($0, c) {print $1}'
}
zero() { ipt -Z FORWARD; ip6t -Z FORWARD; }
# Since the last zero, the router forwarded the pod traffic in encapsulation $1 only, in both
# families: ipip = IP protocol 4 and IPv6 next header 41, fou = UDP to 5555; none of the other.
expect_encap() {  # ipip|fou
  used4=ipip used6=ip6ip6 unused4=fou unused6=fou
  if [ "$1" = fou ]; then used4=fou used6=fou unused4=ipip unused6=ip6ip6; fi
  echo "router counters: ipip=$(count iptables ipip) fou=$(count iptables fou)" \
    "ip6ip6=$(count ip6tables ip6ip6) fou6=$(count ip6tables fou)"
  [ "$(count iptables $used4)" -gt 0 ] || fail "$1: no IPv4 $used4 packets crossed the router"
  [ "$(count ip6tables $used6)" -gt 0 ] || fail "$1: no IPv6 $used6 packets crossed the router"
  [ "$(count iptables $unused4)" -eq 0 ] || fail "$1: IPv4 $unused4 packets crossed the router"
  [ "$(count ip6tables $unused6)" -eq 0 ] || fail "$1: IPv6 $unused6 packets crossed the router"
}

cat >"$work/nodes.yaml" <<YAML
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
  spec: {podCIDR: 10.201.1.0/24, podCIDRs: [10.201.1.0/24, "fd00:10:201:1::/64"]}
  status: {addresses: [{type: InternalIP, address: 192.0.2.1},
                       {type: InternalIP, address: "2001:db8:1::1"}]}
- apiVersion: v1
  kind: Node
  metadata: {name: n2}
  spec: {podCIDR: 10.201.2.0/24, podCIDRs: [10.201.2.0/24, "fd00:10:201:2::/64"]}
  status: {addresses: [{type: InternalIP, address: 198.51.100.2},
                       {type: InternalIP, address: "2001:db8:2::2"}]}
YAML
set +e

ip netns exec rt "$apiserver" --listen 192.0.2.254:0 --manifests "$work/nodes.yaml" \
  --kubeconfig-out "$work/kubeconfig" >"$work/apiserver.log" 2>&1 &
pids="$pids $!"
wait_for 60 test -s "$work/kubeconfig" || fail "fake-apiserver did not start"

start_agents() {  # extra flags
  for n in n1 n2; do
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
full_syncs() {  # node: how many full routing syncs its agent has finished
  grep -c "routing: sync (" "$work/agent-$1.log"
}
more_full_syncs() {  # node, count
  [ "$(full_syncs "$1")" -gt "$2" ]
}
# Traffic through the tunnels leaves PMTU exceptions in the route cache. A full sync after it
# must not take them for connected subnets: it once refused the peer's pod CIDR ("covers a node
# subnet") and dropped the tunnel route until the next sync.
survives_full_sync_after_traffic() {  # what: the overlay under test
  for n in n1 n2; do
    before=$(full_syncs "$n")
    wait_for 60 more_full_syncs "$n" "$before" || fail "$n: no full sync within 60 s"
  done
  grep -h "refusing routes from BGP peer" "$work"/agent-*.log && fail "$1: a node's pod CIDR was refused"
  wait_for 30 pong || fail "$1: IPv4 pods cut after a full sync"
  wait_for 30 pong6 || fail "$1: IPv6 pods cut after a full sync"
}
tunnel_details() {  # node: the tun-... links with their details
  ip -n "$1" -d link show | grep -A2 ": tun-"
}

echo "== 1. IPIP: ipip and ip6tnl (agent)"
start_agents
for route in "n1 10.201.2.0/24" "n2 10.201.1.0/24" "n1 fd00:10:201:2::/64" "n2 fd00:10:201:1::/64"; do
  set -- $route
  wait_for 120 has_tunnel_route "$1" "$2" || fail "$1 has no tunnel route to $2"
done
ip -n n1 route show proto 17
ip -n n1 -6 route show proto 17
tunnel_details n1
ip -n n1 -d link show type ipip | grep -q "remote 198.51.100.2 local 192.0.2.1" ||
  fail "n1 ipip tunnel end points"
ip -n n1 -d link show type ip6tnl | grep -q "ip6ip6 remote 2001:db8:2::2 local 2001:db8:1::1" ||
  fail "n1 ip6tnl mode or end points"
tunnel_details n1 | grep -q "encap gue" && fail "a tunnel with UDP encapsulation under ipip"

# One pod per node behind kube-bridge (the agents create it with both gateway addresses).
bridge_ready() {  # node number
  ip -n "n$1" addr show dev kube-bridge | grep -q "fd00:10:201:$1::1/64"
}
for i in 1 2; do
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
done
ip netns exec p2 socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:'echo pong' >"$work/socat.log" 2>&1 &
pids="$pids $!"
ip netns exec p2 socat TCP6-LISTEN:8080,reuseaddr,fork,ipv6only=1 SYSTEM:'echo pong6' \
  >"$work/socat6.log" 2>&1 &
pids="$pids $!"
pong() {
  ip netns exec p1 socat -T3 - TCP:10.201.2.5:8080,connect-timeout=3 </dev/null | grep -q pong
}
pong6() {
  ip netns exec p1 socat -T3 - TCP6:[fd00:10:201:2::5]:8080,connect-timeout=3 </dev/null |
    grep -q pong6
}
zero
wait_for 60 pong || fail "pod on n1 cannot reach the pod on n2 over ipip"
wait_for 60 pong6 || fail "pod on n1 cannot reach the pod on n2 over ip6tnl"
expect_encap ipip
lsmod | grep -q '^fou ' && fail "the fou module was loaded without --overlay-encap=fou"
survives_full_sync_after_traffic ipip

echo "== 2. FoU/GUE (agents restarted with --overlay-encap=fou)"
stop_agents
start_agents --overlay-encap=fou
gue_tunnels() {  # node: both tunnels encapsulated
  [ "$(tunnel_details "$1" | grep -c "encap gue encap-sport auto encap-dport 5555")" -eq 2 ]
}
gue_port() {  # node, -4|-6
  ip -n "$1" "$2" fou show | grep -q "port 5555 gue"
}
for n in n1 n2; do
  wait_for 120 gue_tunnels "$n" || fail "$n: not both tunnels with encap gue to port 5555"
  wait_for 60 gue_port "$n" -4 || fail "$n: no IPv4 GUE port 5555"
  wait_for 60 gue_port "$n" -6 || fail "$n: no IPv6 GUE port 5555"
done
tunnel_details n1
ip -n n1 -d link show type ip6tnl | grep -q "encap-csum6" || fail "IPv6 GUE without UDP checksum"
ip -n n1 fou show
ip -n n1 -6 fou show
zero
wait_for 60 pong || fail "pod on n1 cannot reach the pod on n2 over FoU (IPv4)"
wait_for 60 pong6 || fail "pod on n1 cannot reach the pod on n2 over FoU (IPv6)"
expect_encap fou
survives_full_sync_after_traffic fou
stop_agents

echo "== 3. --cleanup-config"
for n in n1 n2; do
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
