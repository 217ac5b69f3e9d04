// SPDX-License-Identifier: Apache-2.0
// fake-apiserver: a small Kubernetes API server for tests (see docs/fake-apiserver.md). It
// implements the REST semantics of the resources the agent watches well enough for real
// clients (kubectl, client-go, our informers), plus fault-injection endpoints under /_fake/.
// This file: start-up (flags, TLS, manifests, listening, the kubeconfig for clients).
#include <httplib.h>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "flags.h"
#include "kubeconfig_out.h"
#include "manifests.h"
#include "resources.h"
#include "server.h"

namespace fake_apiserver {
namespace {

using Clock = std::chrono::steady_clock;

int Main(int argc, char** argv) {
  Flags flags;
  if (auto parsed = ParseFlags(argc, argv, &flags); !parsed.ok()) {
    std::cerr << "fake-apiserver: " << parsed.message() << "\n";
    Usage();
    return 2;
  }
  if (flags.beta_networkpolicies) ServeNetworkPoliciesAsBeta();
  std::string host;
  int port = 0;
  if (!SplitHostPort(flags.listen, &host, &port)) {
    std::cerr << "fake-apiserver: --listen wants HOST:PORT, got " << flags.listen << "\n";
    return 2;
  }
  std::unique_ptr<httplib::Server> http;
  bool tls = !flags.tls_cert.empty();
  if (tls) {
    auto ssl = std::make_unique<httplib::SSLServer>(
        flags.tls_cert.c_str(), flags.tls_key.c_str(),
        flags.client_ca.empty() ? nullptr : flags.client_ca.c_str());
    if (!ssl->is_valid()) {
      std::cerr << "fake-apiserver: cannot load --tls-cert/--tls-key/--client-ca\n";
      return 2;
    }
    // A client certificate is optional at the TLS level (token clients connect too); when
    // one is presented it must verify, and Authorized() accepts it as a credential.
    if (!flags.client_ca.empty()) SSL_CTX_set_verify(ssl->ssl_context(), SSL_VERIFY_PEER, nullptr);
    http = std::move(ssl);
  } else {
    http = std::make_unique<httplib::Server>();
  }
  Server server(flags, http.get());
  server.Install();
  if (!flags.service_cidrs.empty() || !flags.node_port_range.empty()) {
    ServiceRanges ranges;
    std::string error =
        ParseServiceRanges(flags.service_cidrs.empty() ? "10.96.0.0/12" : flags.service_cidrs,
                           flags.node_port_range, &ranges);
    if (!error.empty()) {
      std::cerr << "fake-apiserver: " << error << "\n";
      return 2;
    }
    server.store().EnableServiceAllocation(ranges);
  }
  for (const auto& path : flags.manifests) {
    std::vector<json> objects;
    std::string error;
    if (!LoadManifests(path, &objects, &error)) {
      std::cerr << "fake-apiserver: " << error << "\n";
      return 2;
    }
    for (auto& obj : objects) {
      const ResourceType* type =
          obj.is_object() ? FindByKind(obj.value("apiVersion", ""), obj.value("kind", ""))
                          : nullptr;
      if (!type) {
        std::cerr << "fake-apiserver: " << path << ": unsupported apiVersion/kind "
                  << (obj.is_object() ? obj.value("apiVersion", "") + " " + obj.value("kind", "")
                                      : obj.dump())
                  << "\n";
        return 2;
      }
      auto loaded = server.store().Load(*type, std::move(obj));
      if (auto* e = std::get_if<ApiError>(&loaded)) {
        std::cerr << "fake-apiserver: " << path << ": " << type->kind << ": " << e->message << "\n";
        return 2;
      }
    }
  }
  if (port == 0) {
    port = http->bind_to_any_port(host);
    if (port < 0) {
      std::cerr << "fake-apiserver: cannot listen on " << flags.listen << "\n";
      return 1;
    }
  } else if (!http->bind_to_port(host, port)) {
    std::cerr << "fake-apiserver: cannot listen on " << flags.listen << "\n";
    return 1;
  }
  std::string advertise = host;
  if (advertise == "0.0.0.0") advertise = "127.0.0.1";
  if (advertise == "::") advertise = "::1";
  if (advertise.find(':') != std::string::npos) advertise = "[" + advertise + "]";
  std::string url =
      std::string(tls ? "https://" : "http://") + advertise + ":" + std::to_string(port);
  if (!flags.kubeconfig_out.empty()) {
    std::string error;
    if (!WriteKubeconfig(flags, url, &error)) {
      std::cerr << "fake-apiserver: " << error << "\n";
      return 1;
    }
  }
  // Terminating Pods leave when their grace period ends (checked every 100 ms).
  std::atomic<bool> stopping{false};
  std::thread reaper;
  if (flags.graceful_pod_deletion) {
    server.store().EnableGracefulPodDeletion();
    reaper = std::thread([&] {
      while (!stopping) {
        server.store().ReapTerminatingPods(Clock::now());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  std::cout << "fake-apiserver listening on " << url << std::endl;
  bool ok = http->listen_after_bind();
  stopping = true;
  if (reaper.joinable()) reaper.join();
  server.store().StopAll();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace fake_apiserver

int main(int argc, char** argv) { return fake_apiserver::Main(argc, argv); }
