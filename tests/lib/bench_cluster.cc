#include "lib/bench_cluster.h"

namespace kr::testing {

std::string BenchNamespaceJson(const std::string& name, const std::string& team) {
  return R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")" + name +
         R"(","labels":{"team":")" + team + R"(","kubernetes.io/metadata.name":")" + name +
         R"("}}})";
}

std::string BenchPodJson(const BenchPod& pod) {
  std::string labels = R"("app":")" + pod.app + R"(","role":")" + pod.role + "\"";
  std::string extra_meta, extra_spec, extra_status;
  if (pod.full_metadata) {
    labels += R"(,"pod-template-hash":"5d9c7b8f4)" + std::to_string(pod.serial % 10) + "\"";
    extra_meta = R"(,"uid":"00000000-0000-0000-0000-)" +
                 std::to_string(100000000000LL + pod.serial) +
                 R"(","annotations":{"kubernetes.io/psp":"restricted"})";
    extra_spec = R"("terminationGracePeriodSeconds":30,)";
    extra_status = R"("hostIP":")" + pod.host_ip + R"(",)";
  }
  return R"({"apiVersion":"v1","kind":"Pod","metadata":{"namespace":")" + pod.namespace_ +
         R"(","name":")" + pod.name + "\"" + extra_meta + R"(,"labels":{)" + labels +
         R"(}},"spec":{"nodeName":")" + pod.node + "\"," + extra_spec +
         R"("containers":[{"name":"c","image":"registry.example/app:1.0","ports":[)"
         R"({"name":"http","containerPort":8080,"protocol":"TCP"},)"
         R"({"name":"dns","containerPort":53,"protocol":"UDP"}]}]},)"
         R"("status":{"phase":"Running",)" +
         extra_status + R"("podIP":")" + pod.ip + R"(","podIPs":[{"ip":")" + pod.ip + R"("}]}})";
}

std::string BenchPolicyJson(const std::string& namespace_, const std::string& name,
                            const std::string& app, const std::string& team, bool egress) {
  std::string egress_rules =
      egress ? R"(,"egress":[{"to":[{"ipBlock":{"cidr":"192.0.2.0/24","except":)"
               R"(["192.0.2.128/25"]}}]}])"
             : "";
  std::string types = egress ? R"(["Ingress","Egress"])" : R"(["Ingress"])";
  return R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":)"
         R"({"namespace":")" +
         namespace_ + R"(","name":")" + name +
         R"("},"spec":{"podSelector":{"matchLabels":{"app":")" + app + R"("}},"policyTypes":)" +
         types +
         R"(,"ingress":[{"from":[{"podSelector":{"matchLabels":{"role":"client"}}}],)"
         R"("ports":[{"protocol":"TCP","port":80}]},)"
         R"({"from":[{"namespaceSelector":{"matchLabels":{"team":")" +
         team + R"("}}}],"ports":[{"protocol":"TCP","port":"http"}]}])" + egress_rules + "}}";
}

std::string NetpolBenchPodIp(int ns, int pod) {
  int n = ns * kNetpolBenchPodsPerNamespace + pod;
  return "10.80." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1);
}

std::string NetpolBenchPolicyJson(int ns, int i, int teams) {
  return BenchPolicyJson("ns" + std::to_string(ns), "policy" + std::to_string(i),
                         "app" + std::to_string(i), "t" + std::to_string(i % teams), i % 4 == 0);
}

std::string BenchListJson(const std::vector<std::string>& items) {
  std::string out = R"({"apiVersion":"v1","kind":"List","items":[)";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]}";
}

std::vector<std::string> BenchAgentArgv(const BenchAgent& agent) {
  auto flag = [](const char* name, bool on) {
    return std::string("--") + name + "=" + (on ? "true" : "false");
  };
  std::vector<std::string> argv = {agent.binary,
                                   flag("run-firewall", agent.firewall),
                                   flag("run-router", agent.router),
                                   flag("run-service-proxy", agent.service_proxy),
                                   "--kubeconfig=" + agent.kubeconfig,
                                   "--hostname-override=" + agent.node,
                                   "--health-port=0",
                                   "--iptables-sync-period=60m"};
  argv.insert(argv.end(), agent.extra.begin(), agent.extra.end());
  return argv;
}

}  // namespace kr::testing
