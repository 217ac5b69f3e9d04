// SPDX-License-Identifier: Apache-2.0
#include "flags.h"

#include <cstdlib>
#include <iostream>

#include "resources.h"

namespace fake_apiserver {

void Usage() {
  std::cerr << "usage: fake-apiserver [--listen HOST:PORT] [--tls-cert F --tls-key F]\n"
               "  [--client-ca F] [--token T] [--basic-auth USER:PASSWORD] [--manifests PATH ...] "
               "[--kubeconfig-out F]\n"
               "  [--kubeconfig-ca F] [--kubeconfig-client-cert F --kubeconfig-client-key F]\n"
               "  [--bookmark-interval-ms N] [--history-limit N] [--gzip] [--beta-networkpolicies] "
               "[-v]\n"
               "  [--service-cluster-ip-range CIDR[,CIDR]] [--service-node-port-range A-B]\n"
               "  [--graceful-pod-deletion]\n";
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--listen") {
      if (!value(&f->listen)) return false;
    } else if (a == "--tls-cert") {
      if (!value(&f->tls_cert)) return false;
    } else if (a == "--tls-key") {
      if (!value(&f->tls_key)) return false;
    } else if (a == "--client-ca") {
      if (!value(&f->client_ca)) return false;
    } else if (a == "--token") {
      if (!value(&f->token)) return false;
    } else if (a == "--basic-auth") {
      if (!value(&f->basic_auth)) return false;
    } else if (a == "--manifests") {
      // Every following argument up to the next flag is a manifest path.
      while (i + 1 < argc && argv[i + 1][0] != '-') f->manifests.push_back(argv[++i]);
    } else if (a == "--kubeconfig-out") {
      if (!value(&f->kubeconfig_out)) return false;
    } else if (a == "--kubeconfig-ca") {
      if (!value(&f->kubeconfig_ca)) return false;
    } else if (a == "--kubeconfig-client-cert") {
      if (!value(&f->kubeconfig_client_cert)) return false;
    } else if (a == "--kubeconfig-client-key") {
      if (!value(&f->kubeconfig_client_key)) return false;
    } else if (a == "--bookmark-interval-ms") {
      if (!value(&v)) return false;
      f->bookmark_interval_ms = std::atoi(v.c_str());
    } else if (a == "--history-limit") {
      if (!value(&v)) return false;
      f->history_limit = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--gzip") {
      f->gzip = true;
    } else if (a == "--beta-networkpolicies") {
      ServeNetworkPoliciesAsBeta();  // a pre-1.7 server: no networking.k8s.io/v1
    } else if (a == "--service-cluster-ip-range") {
      if (!value(&f->service_cidrs)) return false;
    } else if (a == "--service-node-port-range") {
      if (!value(&f->node_port_range)) return false;
    } else if (a == "--graceful-pod-deletion") {
      f->graceful_pod_deletion = true;
    } else if (a == "-v" || a == "--verbose") {
      f->verbose = true;
    } else {
      std::cerr << "fake-apiserver: unknown argument " << a << "\n";
      return false;
    }
  }
  return true;
}

bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  char* end = nullptr;
  long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (!end || *end || p < 0 || p > 65535) return false;
  *port = static_cast<int>(p);
  return !host->empty();
}

}  // namespace fake_apiserver
