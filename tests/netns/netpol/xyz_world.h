// The upstream NetworkPolicy e2e world: namespaces x, y, z with pods a, b, c each, serving TCP
// and UDP (or the protocols asked for, e.g. SCTP in the vm tier) on ports 80 and 81. x and y
// run on node 0, z on node 1 (cross-node traffic).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lib/podnet.h"

namespace kr::netpol::testing {

inline const std::vector<std::string> kXyzNamespaces = {"x", "y", "z"};
inline const std::vector<std::string> kXyzPods = {"a", "b", "c"};

inline std::vector<std::string> XyzPodKeys() {
  std::vector<std::string> out;
  for (const auto& ns : kXyzNamespaces) {
    for (const auto& p : kXyzPods) out.push_back(ns + "/" + p);
  }
  return out;
}

inline std::string NsOf(const std::string& key) { return key.substr(0, key.find('/')); }
inline std::string NameOf(const std::string& key) { return key.substr(key.find('/') + 1); }
inline int XyzNode(const std::string& key) { return NsOf(key) == "z" ? 1 : 0; }

// Two nodes, nine pods, every pod serving 80/81 over each of `protos`.
inline void BuildXyz(kr::testing::PodNetwork& net,
                     const std::vector<kr::testing::Proto>& protos = {kr::testing::Proto::kTcp,
                                                                      kr::testing::Proto::kUdp}) {
  net.AddNode("node-0");
  net.AddNode("node-1");
  for (const auto& key : XyzPodKeys()) {
    net.AddPod(XyzNode(key), key);
    for (int port : {80, 81}) {
      for (auto proto : protos) net.Serve(key, port, proto);
    }
  }
}

using Reachability = std::function<bool(const std::string& from, const std::string& to)>;

// Probes every ordered pair of distinct pods; returns one line per pair that differs from
// `allowed` (empty when the whole matrix is as expected).
inline std::string MatrixMismatches(const kr::testing::PodNetwork& net, int port,
                                    kr::testing::Proto proto, const Reachability& allowed) {
  std::string mismatches;
  for (const auto& from : XyzPodKeys()) {
    for (const auto& to : XyzPodKeys()) {
      if (from == to) continue;
      bool expected = allowed(from, to);
      bool got = net.Probe(from, net.pod(to).ip, port, proto);
      if (got != expected) {
        mismatches += "  " + from + " -> " + to + ":" + std::to_string(port) + "/" +
                      kr::testing::ProtoName(proto) + " expected " +
                      (expected ? "allowed" : "denied") + ", got " + (got ? "allowed" : "denied") +
                      "\n";
      }
    }
  }
  return mismatches;
}

}  // namespace kr::netpol::testing
