// SPDX-License-Identifier: Apache-2.0
// The kubelet part of the sandbox node agent: a pod is a network namespace whose network is
// made by the real CNI plugins (the conflist kube-router wrote on the pod's node, run inside
// the node's namespace, as kubelet calls them), and whose "containers" are built-in answer
// servers (tests/lib/answer_server.h) on the declared container ports: each says the pod's
// name and the client's address. Images are not run.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "lib/answer_server.h"

namespace sandbox {

using nlohmann::json;

struct NodeHost {
  std::string name;           // the Node object's name
  std::string netns;          // the node's network namespace
  std::string node_ip;        // its InternalIP
  std::string cni_conf_file;  // where kube-router writes the CNI config on this node
};

class PodRuntime {
 public:
  // `netns_prefix` starts every pod namespace name; host-local keeps its leases under
  // `state_dir`/cni/<node> (never the host's /var/lib/cni).
  PodRuntime(std::string netns_prefix, std::string state_dir, std::string cni_bin_dir);
  ~PodRuntime();

  // "<prefix>-p-<10 hex digits of namespace/name/uid>": unique per pod incarnation.
  std::string NetnsName(const json& pod) const;

  struct Running {
    std::string key;  // namespace/name
    std::string uid;
    std::string node;
    std::string netns;
    std::vector<std::string> ips;
    std::vector<std::unique_ptr<kr::testing::AnswerServer>> servers;
  };
  // Makes the pod's namespace, network and servers, or adopts a namespace a previous run of
  // the agent made (its address is read back). Fails with the reason (no CNI config yet, a
  // plugin error...); a failed start leaves nothing behind.
  kr::Result<const Running*> Start(const NodeHost& node, const json& pod);
  // Stops the servers, calls CNI DEL (reverse plugin order) and deletes the namespace.
  void Stop(const std::string& uid, const NodeHost* node);
  const std::map<std::string, Running>& running() const { return running_; }

 private:
  kr::Result<json> CniConfig(const NodeHost& node) const;
  kr::Result<json> CniRun(const NodeHost& node, const std::string& command, const json& plugin,
                          const std::string& netns, const std::string& container_id) const;
  void StartServers(Running* pod, const json& spec, const std::string& name);

  std::string prefix_, state_dir_, cni_bin_;
  std::map<std::string, Running> running_;  // by uid
};

}  // namespace sandbox
