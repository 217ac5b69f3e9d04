#!/usr/bin/python3
"""Checks the DaemonSet manifests in daemonset/ the way a cluster would use them.

  manifests_test.py static KUBE_ROUTER SOURCE_DIR
      every manifest: its args accepted by the real binary (parsed with --version added), every
      volumeMount backed by a volume and the paths the agent uses mounted, upstream's selector
      labels, a pull policy that fits the tag, the CNI install step in the image; the
      all-features and proxy manifests reach the API server through a kubeconfig (a real
      address), all-features keeps graceful restart on and says one thing about kube-proxy.
  manifests_test.py rbac KUBE_ROUTER FAKE_APISERVER SOURCE_DIR   (root)
      runs the agent with each manifest's args inside a throwaway network namespace against
      fake-apiserver until every controller has synced, then checks every API request it made (list, watch,
      get, writes) against the manifest's ClusterRole.
Exit status 0 when every check passes; each failure is printed.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

FAILURES = []


def fail(manifest, message):
    FAILURES.append(f"{os.path.basename(manifest)}: {message}")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def daemonset(docs):
    return next(d for d in docs if d.get("kind") == "DaemonSet")


def agent_container(ds):
    return next(c for c in ds["spec"]["template"]["spec"]["containers"]
                if c["name"] == "kube-router")


def flag_values(args):
    """--name=value flags as a dict (manifests write every flag in that form)."""
    values = {}
    for a in args:
        m = re.fullmatch(r"--([a-z0-9-]+)(?:=(.*))?", a)
        if m:
            values[m.group(1)] = m.group(2) if m.group(2) is not None else "true"
    return values


def enabled(flags, name):
    # --run-router, --run-firewall and --run-service-proxy default to true.
    return flags.get(name, "true") == "true"


def mounted(path, mounts):
    return any(m.get("mountPath") and (path == m["mountPath"] or
                                       path.startswith(m["mountPath"].rstrip("/") + "/"))
               for m in mounts)


def check_static(manifest, binary, source_dir):
    docs = load(manifest)
    ds = daemonset(docs)
    text = open(manifest, encoding="utf-8").read()
    pod = ds["spec"]["template"]["spec"]
    agent = agent_container(ds)
    args = agent.get("args", [])
    flags = flag_values(args)

    # Every flag as the binary parses it (unknown flags and bad values exit 2).
    r = subprocess.run([binary, *args, "--version"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail(manifest, f"kube-router rejects the args {args}: {r.stderr.strip()}")

    # Upstream's selector, so the manifest applies over an upstream installation.
    want = {"k8s-app": "kube-router", "tier": "node"}
    selector = ds["spec"]["selector"]["matchLabels"]
    if selector != want:
        fail(manifest, f"selector {selector}, upstream's is {want}")
    labels = ds["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        fail(manifest, f"template labels {labels} do not match the selector {selector}")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    containers = pod.get("initContainers", []) + pod["containers"]
    for c in containers:
        image = c["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
        policy = c.get("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
        if tag == "latest" and policy != "Always":
            fail(manifest, f"container {c['name']}: {image} with imagePullPolicy {policy}")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                fail(manifest, f"container {c['name']} mounts undefined volume {m['name']}")

    mounts = agent.get("volumeMounts", [])
    needed = ["/lib/modules", "/run/xtables.lock"]
    if "kubeconfig" in flags:
        needed.append(flags["kubeconfig"])
    env = {e["name"]: e.get("value") for e in agent.get("env", [])}
    if "NODE_NAME" not in env:
        fail(manifest, "NODE_NAME is not set from spec.nodeName")
    if enabled(flags, "run-router"):
        cni_file = env.get("KUBE_ROUTER_CNI_CONF_FILE", "/etc/cni/net.d/10-kuberouter.conf")
        needed.append(cni_file)
    for path in needed:
        if not mounted(path, mounts):
            fail(manifest, f"the agent uses {path} but no volumeMount holds it")
    for m in mounts:
        if m.get("mountPath") == "/run/xtables.lock" and m.get("readOnly"):
            fail(manifest, "/run/xtables.lock is mounted read-only")

    proxy = enabled(flags, "run-service-proxy")
    if proxy and "kubeconfig" not in flags and "master" not in flags:
        fail(manifest, "the service proxy reaches the API server through the in-cluster "
             "configuration (the kubernetes Service's ClusterIP, which only a proxy serves)")
    if "kubeconfig" in flags:
        backing = [volumes.get(m["name"], {}) for m in mounts
                   if mounted(flags["kubeconfig"], [m])]
        if not any("configMap" in v or "secret" in v or "hostPath" in v for v in backing):
            fail(manifest, f"nothing provides the kubeconfig {flags['kubeconfig']}")

    if proxy and re.search(r"keep kube-proxy", text, re.IGNORECASE):
        fail(manifest, "runs the service proxy but tells to keep kube-proxy")
    if proxy and "delete daemonset kube-proxy" not in text:
        fail(manifest, "runs the service proxy but does not say to remove kube-proxy")

    startup = agent.get("startupProbe", {})
    if startup.get("httpGet", {}).get("path") != "/healthz" or \
            startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) < 120:
        fail(manifest, "no startupProbe on /healthz allowing >= 2 minutes for the first syncs "
             "(/healthz is 500 until then; the liveness probe alone restarts a slow cold start)")

    if enabled(flags, "run-router"):
        if flags.get("bgp-graceful-restart") != "true":
            fail(manifest, "pod routing without --bgp-graceful-restart=true (routes blackhole "
                 "while the agent restarts)")
        init = pod.get("initContainers", [])
        install = [c for c in init if c.get("command", [None])[0] == "/usr/local/bin/install-cni"]
        if not install:
            fail(manifest, "no init container runs /usr/local/bin/install-cni")
        else:
            init_mounts = install[0].get("volumeMounts", [])
            for path in ["/opt/cni/bin", "/etc/cni/net.d", "/etc/kube-router/cni-conf.json"]:
                if not mounted(path, init_mounts):
                    fail(manifest, f"the CNI install step needs {path} mounted")
        dockerfile = open(os.path.join(source_dir, "Dockerfile"), encoding="utf-8").read()
        if "COPY cni/install-cni.sh /usr/local/bin/install-cni" not in dockerfile or \
                "containernetworking-plugins" not in dockerfile:
            fail(manifest, "the image lacks the CNI plugins or the install-cni step")
        cfg = next((d for d in docs if d.get("kind") == "ConfigMap"), None)
        try:
            conf = json.loads(cfg["data"]["cni-conf.json"])
            types = {p["type"] for p in conf["plugins"]}
            if not {"bridge", "portmap"} <= types:
                fail(manifest, f"the CNI config uses plugins {types}")
        except (TypeError, KeyError, ValueError) as e:
            fail(manifest, f"no valid cni-conf.json ConfigMap: {e}")


# ---- RBAC against the requests the agent really makes -------------------------------------

def request_to_rule(line):
    """'GET /apis/g/v/namespaces/ns/res/name/sub?watch=true' -> (group, resource, verb)."""
    method, target = line.split(" ", 1)
    path, _, query = target.partition("?")
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # namespaced: namespaces/<ns>/<resource>...
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource += "/" + rest[2]
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    if method == "GET":
        verb = "watch" if params.get("watch") in ("1", "true") else ("get" if named else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if named else "deletecollection"}.get(method, method.lower())
    return group, resource, verb


def allowed(rules, group, resource, verb):
    for r in rules:
        if (group in r.get("apiGroups", []) or "*" in r.get("apiGroups", [])) and \
                (resource in r.get("resources", []) or "*" in r.get("resources", [])) and \
                (verb in r.get("verbs", []) or "*" in r.get("verbs", [])):
            return True
    return False


def sh(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except OSError as e:
        return getattr(e, "code", 0), ""


def check_rbac(manifest, binary, fake_apiserver, workdir):
    docs = load(manifest)
    ds = daemonset(docs)
    role = next(d for d in docs if d.get("kind") == "ClusterRole")
    args = agent_container(ds).get("args", [])
    ns = f"krdeploy{os.getpid()}"
    name = os.path.basename(manifest)
    node = "deploy-node"
    objects = os.path.join(workdir, f"objects-{name}.yaml")
    kubeconfig = os.path.join(workdir, f"kubeconfig-{name}")
    with open(objects, "w", encoding="utf-8") as f:
        json.dump({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                   "spec": {"podCIDR": "10.201.1.0/24", "podCIDRs": ["10.201.1.0/24"]},
                   "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}},
                  f)
    # The manifest's args, with the test's API server and files in place of the node's.
    run_args = [a for a in args if not re.match(r"--(kubeconfig|master|health-port|metrics-port)=", a)]
    run_args += [f"--kubeconfig={kubeconfig}", "--health-port=20244", "--metrics-port=20245",
                 f"--hostname-override={node}"]
    api = agent = None
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "exec", ns, "sh", "-c",
           "ip link set lo up && ip link add eth0 type veth peer name eth1 && "
           "ip addr add 192.0.2.1/24 dev eth0 && ip link set eth0 up && ip link set eth1 up")
        api_log = open(os.path.join(workdir, f"apiserver-{name}.log"), "w")
        api = subprocess.Popen(["ip", "netns", "exec", ns, fake_apiserver, "--listen",
                                "127.0.0.1:0", "--manifests", objects, "--kubeconfig-out",
                                kubeconfig], stdout=api_log, stderr=subprocess.STDOUT)
        if not wait_for(lambda: os.path.exists(kubeconfig), 20):
            fail(manifest, "fake-apiserver wrote no kubeconfig")
            return
        server = re.search(r"http://[0-9.:]+", open(kubeconfig).read()).group(0)
        agent_log_path = os.path.join(workdir, f"agent-{name}.log")
        agent_log = open(agent_log_path, "w")
        env = dict(os.environ, NODE_NAME=node,
                   KUBE_ROUTER_CNI_CONF_FILE=os.path.join(workdir, f"cni-{name}",
                                                          "10-kuberouter.conflist"))
        agent = subprocess.Popen(["ip", "netns", "exec", ns, binary, *run_args], env=env,
                                 stdout=agent_log, stderr=subprocess.STDOUT)

        def get(port, path):
            r = sh("ip", "netns", "exec", ns, "curl", "-s", "--max-time", "2",
                   f"http://127.0.0.1:{port}{path}", check=False)
            return r.stdout if r.returncode == 0 else ""

        def synced():
            # Running (caches synced, controllers started: the agent logs it) and every
            # controller has finished one sync, successful or not (the host kernel has no IPVS,
            # so the proxy's fail), so the API calls of a sync have happened. The controllers'
            # series exist from before the start.
            if "kube-router is running with" not in open(agent_log_path).read():
                return False
            done = {}
            for name, n in re.findall(r'^kube_router_controller_syncs_total\{controller="([^"]+)",'
                                      r'result="[a-z]+"\} (\d+)', get(20245, "/metrics"), re.M):
                done[name] = done.get(name, 0) + int(n)
            return all(n > 0 for n in done.values())

        if not wait_for(lambda: agent.poll() is None and synced(), 90):
            fail(manifest, f"the agent ({' '.join(run_args)}) did not sync:\n"
                 + open(agent_log_path).read()[-3000:])
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=40)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        r = sh("ip", "netns", "exec", ns, "curl", "-s", "--max-time", "5",
               server + "/_fake/requests")
        requests = json.loads(r.stdout)["recent"]
        calls = sorted({c for c in map(request_to_rule, requests) if c})
        flags = flag_values(args)
        if not calls and (enabled(flags, "run-router") or enabled(flags, "run-firewall")):
            fail(manifest, "the agent made no API request:\n" +
                 open(agent_log_path).read()[-3000:])
        for group, resource, verb in calls:
            if not allowed(role["rules"], group, resource, verb):
                fail(manifest, f"the agent's ClusterRole does not allow {verb} on "
                     f"{resource} (apiGroup \"{group}\"), which it does")
        print(f"{name}: {len(requests)} API requests, calls {calls}: all allowed")
    finally:
        for p in (agent, api):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        sh("ip", "netns", "del", ns, check=False)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "static" and len(sys.argv) == 4:
        binary, source_dir = sys.argv[2:]
        manifests = sorted(glob.glob(os.path.join(source_dir, "daemonset", "*.yaml")))
        for m in manifests:
            check_static(m, binary, source_dir)
    elif mode == "rbac" and len(sys.argv) == 5:
        binary, fake_apiserver, source_dir = sys.argv[2:]
        manifests = sorted(glob.glob(os.path.join(source_dir, "daemonset", "*.yaml")))
        with tempfile.TemporaryDirectory(prefix="kr-deploy-") as workdir:
            for m in manifests:
                check_rbac(m, binary, fake_apiserver, workdir)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if not manifests:
        FAILURES.append("no manifests in daemonset/")
    for f in FAILURES:
        print(f"FAIL {f}", file=sys.stderr)
    if not FAILURES:
        print(f"{len(manifests)} manifests: every check passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
