// The API server a kubeconfig names, read back by the tests and benchmarks that start
// fake-apiserver (its --kubeconfig-out writes one cluster, `server: http(s)://HOST:PORT`), and
// the same kubeconfig pointed at another host for a node namespace that reaches the server over
// a link instead of loopback.
#pragma once

#include <optional>
#include <string>

namespace kr::testing {

struct KubeconfigServer {
  std::string url;   // "http://127.0.0.1:41823", as written
  std::string host;  // "127.0.0.1"; an IPv6 address without its brackets
  int port = 0;
};

// The first `server:` URL (plain or quoted) with a host and a port; nullopt when there is none.
std::optional<KubeconfigServer> ParseKubeconfigServer(const std::string& kubeconfig);

// `kubeconfig` with the host of that URL replaced by `host` (scheme, port and everything else
// kept); unchanged when it names no server.
std::string KubeconfigWithServerHost(const std::string& kubeconfig, const std::string& host);

}  // namespace kr::testing
