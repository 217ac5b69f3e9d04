// SPDX-License-Identifier: Apache-2.0
#include "flags.h"

#include <cstdlib>
#include <iostream>

#include "lib/flag_parser.h"

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

kr::Status ParseFlags(int argc, char** argv, Flags* f) {
  kr::testing::FlagParser parser;
  parser.Text("--listen", &f->listen)
      .Text("--tls-cert", &f->tls_cert)
      .Text("--tls-key", &f->tls_key)
      .Text("--client-ca", &f->client_ca)
      .Text("--token", &f->token)
      .Text("--basic-auth", &f->basic_auth)
      .List("--manifests", &f->manifests)
      .Text("--kubeconfig-out", &f->kubeconfig_out)
      .Text("--kubeconfig-ca", &f->kubeconfig_ca)
      .Text("--kubeconfig-client-cert", &f->kubeconfig_client_cert)
      .Text("--kubeconfig-client-key", &f->kubeconfig_client_key)
      .Number("--bookmark-interval-ms", &f->bookmark_interval_ms)
      .Number("--history-limit", &f->history_limit)
      .Switch("--gzip", &f->gzip)
      .Switch("--beta-networkpolicies", &f->beta_networkpolicies)
      .Text("--service-cluster-ip-range", &f->service_cidrs)
      .Text("--service-node-port-range", &f->node_port_range)
      .Switch("--graceful-pod-deletion", &f->graceful_pod_deletion)
      .Switch("--verbose", &f->verbose)
      .Alias("-v", "--verbose");
  return parser.Parse(argc, argv);
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
