#!/bin/sh
# Runs inside the Debian guest kernel (IPIP exists there, not on the host): two nodes in
# different subnets joined by a router namespace, fake-apiserver on the router, the real
# kube-router (--run-router only) on each node. Proves the IPIP overlay: each node gets a
# tun-... tunnel and a proto 17 route through it, and a pod on node 1 reaches a pod on node 2
# by TCP. Prints PASS and exits 0, or names the failing check and exits 1.
# Usage: overlay.sh <kube-router> <fake-apiserver>
set -u
agent=$1
apiserver=$2
work=$(mktemp -d /tmp/krvm-routing.XXXXXX)
pids=""

cleanup() {
  for pid in $pids; do kill "$pid" 2>/dev/null; done
  for pid in $pids; do wait "$pid" 2>/dev/null; done
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
for ns in rt n1 n2; do ip -n "$ns" link set lo up; done
# Underlay: n1 in 192.0.2.0/24, n2 in 198.51.100.0/24, routed by rt.
ip -n n1 link add eth0 type veth peer name to-n1 netns rt
ip -n n2 link add eth0 type veth peer name to-n2 netns rt
ip -n rt addr add 192.0.2.254/24 dev to-n1
ip -n rt addr add 198.51.100.254/24 dev to-n2
ip -n rt link set to-n1 up
ip -n rt link set to-n2 up
ip netns exec rt sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
ip -n n1 addr add 192.0.2.1/24 dev eth0
ip -n n2 addr add 198.51.100.2/24 dev eth0
for ns in n1 n2; do ip -n "$ns" link set eth0 up; done
ip -n n1 route add default via 192.0.2.254
ip -n n2 route add default via 198.51.100.254

cat > "$work/nodes.yaml" <<YAML
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
  spec: {podCIDR: 10.201.1.0/24, podCIDRs: [10.201.1.0/24]}
  status: {addresses: [{type: InternalIP, address: 192.0.2.1}]}
- apiVersion: v1
  kind: Node
  metadata: {name: n2}
  spec: {podCIDR: 10.201.2.0/24, podCIDRs: [10.201.2.0/24]}
  status: {addresses: [{type: InternalIP, address: 198.51.100.2}]}
YAML
set +e

ip netns exec rt "$apiserver" --listen 192.0.2.254:0 --manifests "$work/nodes.yaml" \
  --kubeconfig-out "$work/kubeconfig" >"$work/apiserver.log" 2>&1 &
pids="$pids $!"
wait_for 60 test -s "$work/kubeconfig" || fail "fake-apiserver did not start"

for n in n1 n2; do
  KUBE_ROUTER_CNI_CONF_FILE="$work/cni-$n.conflist" ip netns exec "$n" "$agent" \
    --kubeconfig "$work/kubeconfig" --hostname-override "$n" --run-router=true \
    --run-firewall=false --run-service-proxy=false --health-port=0 \
    --routes-sync-period=10s >"$work/agent-$n.log" 2>&1 &
  pids="$pids $!"
done

has_tunnel_route() {  # node, pod CIDR
  ip -n "$1" route show proto 17 | grep -q "^$2 dev tun-"
}
wait_for 120 has_tunnel_route n1 10.201.2.0/24 || fail "n1 has no tunnel route to 10.201.2.0/24"
wait_for 120 has_tunnel_route n2 10.201.1.0/24 || fail "n2 has no tunnel route to 10.201.1.0/24"
echo "n1 routes:"; ip -n n1 route show proto 17
echo "n1 tunnels:"; ip -n n1 -d link show type ipip | grep -A1 "tun-"
ip -n n1 -d link show type ipip | grep -q "remote 198.51.100.2 local 192.0.2.1" ||
  fail "n1 tunnel end points"

# One pod per node behind kube-bridge (the agents create it with the gateway address).
for i in 1 2; do
  wait_for 60 ip -n "n$i" link show kube-bridge || fail "n$i has no kube-bridge"
  ip netns add "p$i"
  ip -n "p$i" link set lo up
  ip -n "n$i" link add "vp$i" type veth peer name eth0 netns "p$i"
  ip -n "n$i" link set "vp$i" master kube-bridge up
  ip -n "p$i" addr add "10.201.$i.5/24" dev eth0
  ip -n "p$i" link set eth0 up
  ip -n "p$i" route add default via "10.201.$i.1"
done
ip netns exec p2 socat TCP-LISTEN:8080,reuseaddr,fork SYSTEM:'echo pong' >"$work/socat.log" 2>&1 &
pids="$pids $!"
pong() {
  ip netns exec p1 socat -T3 - TCP:10.201.2.5:8080,connect-timeout=3 </dev/null | grep -q pong
}
wait_for 60 pong || fail "pod on n1 cannot reach the pod on n2 over the IPIP overlay"
echo PASS
