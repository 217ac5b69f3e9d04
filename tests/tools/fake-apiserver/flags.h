// SPDX-License-Identifier: Apache-2.0
// fake-apiserver's command line (docs/fake-apiserver.md).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kube_router/base/status.h"

namespace fake_apiserver {

struct Flags {
  std::string listen = "127.0.0.1:0";
  std::string tls_cert, tls_key, client_ca;
  std::string token;
  std::string basic_auth;  // "user:password"
  std::vector<std::string> manifests;
  std::string kubeconfig_out;
  std::string kubeconfig_ca;  // CA written into --kubeconfig-out (default: --tls-cert)
  std::string kubeconfig_client_cert, kubeconfig_client_key;
  size_t history_limit = 200000;
  int bookmark_interval_ms = 10000;
  bool gzip = false;                  // --gzip: gzip JSON responses for clients that accept it
  bool beta_networkpolicies = false;  // a pre-1.7 server: no networking.k8s.io/v1
  bool verbose = false;
  // Service ClusterIP/NodePort allocation (service_allocator.h); off when no range is given.
  std::string service_cidrs, node_port_range;
  bool graceful_pod_deletion = false;  // object_store.h: EnableGracefulPodDeletion
};

void Usage();
// The error names the argument: unknown, without its value, or with a bad value
// (lib/flag_parser.h).
kr::Status ParseFlags(int argc, char** argv, Flags* f);
// "127.0.0.1:6443", "[::1]:0", "0.0.0.0:8080" -> host, port.
bool SplitHostPort(const std::string& s, std::string* host, int* port);

}  // namespace fake_apiserver
