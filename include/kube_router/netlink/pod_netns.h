// PodNetns: runs work inside the network namespace of a pod, found by the pod's IP, without a
// container-runtime API (DSR puts the service VIP on a tunnel link inside each local endpoint
// pod). The real finder scans /run/netns/* and /proc/<pid>/ns/net (the agent runs with hostPID),
// enters each distinct namespace on a dedicated thread and looks for the address on any link
// (no "eth0" assumption: the work is told which link holds it).
//
// The work always runs on a fresh thread that never returns to the caller's namespace: netlink
// sockets and /proc/sys/net files it opens belong to the pod's namespace, and nothing of the
// agent's own threads ever changes namespace.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::netlink {

struct PodNetnsContext {
  std::string device;  // the link inside the pod that holds the pod IP
  std::string netns;   // where it was found ("/run/netns/x" or "/proc/<pid>/ns/net"), for logs
};

using PodNetnsWork = std::function<Status(const PodNetnsContext&)>;

class PodNetns {
 public:
  virtual ~PodNetns() = default;
  // Runs `work` inside the namespace holding `pod_ip` and returns its status; an error naming the
  // IP when no namespace (other than the agent's own) holds it.
  virtual Status RunInPodNetns(const IpAddress& pod_ip, const PodNetnsWork& work) = 0;
};

struct ProcPodNetnsOptions {
  std::string proc_root = "/proc";
  std::string run_netns_dir = "/run/netns";
  // Distinct namespaces examined per lookup at most (a node hosts a few hundred pods).
  size_t max_namespaces = 8192;
};

std::unique_ptr<PodNetns> MakeProcPodNetns(ProcPodNetnsOptions options = {});

}  // namespace kr::netlink
