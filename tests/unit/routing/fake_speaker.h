// A stateful in-memory bgp::Speaker for routing controller tests: keeps the configured peers
// and originated paths, runs the controller's policies like the real speaker would, and lets a
// test play a peer announcing or withdrawing routes. Single-threaded: callbacks run inline.
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "kube_router/bgp/speaker.h"

namespace kr::routing::testing {

class FakeSpeaker : public bgp::Speaker {
 public:
  explicit FakeSpeaker(bgp::GlobalConfig config) : config_(std::move(config)) {}

  Status Start() override {
    if (fail_start_) return Status::Error("injected start failure");
    running_ = true;
    return Status::Ok();
  }
  void Stop(bool graceful_restart) override {
    running_ = false;
    stopped_gracefully_ = graceful_restart;
  }
  void AddPeer(const bgp::PeerConfig& peer) override { peers_[peer.address] = peer; }
  void UpdatePeer(const bgp::PeerConfig& peer) override {
    peers_[peer.address] = peer;
    ++updates_;
  }
  void RemovePeer(const IpAddress& address) override {
    peers_.erase(address);
    // Like the real speaker: a removed peer's routes are gone.
    for (auto it = received_.begin(); it != received_.end();) {
      if (it->second.peer == address) {
        auto prefix = it->first;
        it = received_.erase(it);
        Notify(prefix);
      } else {
        ++it;
      }
    }
  }
  void AddPath(const bgp::LocalPath& path) override { paths_[path.prefix] = path; }
  void WithdrawPath(const IpPrefix& prefix) override { paths_.erase(prefix); }
  void SetImportPolicy(bgp::ImportPolicy policy) override { import_ = std::move(policy); }
  void SetExportPolicy(bgp::ExportPolicy policy) override { export_ = std::move(policy); }
  void ReapplyPolicies() override { ++reapplied_; }
  void SubscribeBestPaths(bgp::BestPathCallback callback) override {
    subscriber_ = std::move(callback);
  }
  std::vector<bgp::PeerStatus> Peers() override {
    std::vector<bgp::PeerStatus> out;
    for (const auto& [address, peer] : peers_) {
      bgp::PeerStatus status;
      status.config = peer;
      status.state = bgp::PeerState::kEstablished;
      out.push_back(status);
    }
    return out;
  }
  std::vector<bgp::Route> Rib() override { return BestPaths(); }
  std::vector<bgp::Route> BestPaths() override {
    std::vector<bgp::Route> out;
    for (const auto& [prefix, route] : received_) out.push_back(route);
    return out;
  }

  // --- test side ---
  // A peer announces `prefix` via `next_hop`; returns whether the import policy accepted it.
  bool Announce(const IpAddress& from, const IpPrefix& prefix, const IpAddress& next_hop) {
    bgp::Route route;
    route.prefix = prefix;
    route.next_hop = next_hop;
    route.peer = from;
    route.ibgp = peers_.count(from) && peers_[from].remote_asn == config_.local_asn;
    bgp::PeerConfig sender = peers_.count(from) ? peers_[from] : bgp::PeerConfig{from};
    if (import_ && import_(sender, route) == bgp::PolicyVerdict::kReject) return false;
    received_[prefix] = route;
    Notify(prefix);
    return true;
  }
  void Withdraw(const IpPrefix& prefix) {
    received_.erase(prefix);
    Notify(prefix);
  }
  // What the export policy lets through to `peer` among our originated paths.
  std::vector<bgp::Route> ExportedTo(const IpAddress& peer) {
    std::vector<bgp::Route> out;
    const bgp::PeerConfig& to = peers_.at(peer);
    for (const auto& [prefix, path] : paths_) {
      bgp::Route route;
      route.prefix = prefix;
      route.next_hop = path.next_hop.value_or(IpAddress());
      route.attributes.next_hop = route.next_hop;
      if (export_ && export_(to, route) == bgp::PolicyVerdict::kReject) continue;
      out.push_back(route);
    }
    return out;
  }

  const bgp::GlobalConfig& config() const { return config_; }
  const std::map<IpAddress, bgp::PeerConfig>& peers() const { return peers_; }
  const std::map<IpPrefix, bgp::LocalPath>& paths() const { return paths_; }
  bool running() const { return running_; }
  int reapplied() const { return reapplied_; }
  int updates() const { return updates_; }
  void FailStart() { fail_start_ = true; }

 private:
  void Notify(const IpPrefix& prefix) {
    if (!subscriber_) return;
    bgp::BestPathChange change{prefix, std::nullopt};
    if (auto it = received_.find(prefix); it != received_.end()) change.best = it->second;
    subscriber_(change);
  }

  bgp::GlobalConfig config_;
  bool running_ = false;
  bool fail_start_ = false;
  bool stopped_gracefully_ = false;
  int reapplied_ = 0;
  int updates_ = 0;
  std::map<IpAddress, bgp::PeerConfig> peers_;
  std::map<IpPrefix, bgp::LocalPath> paths_;
  std::map<IpPrefix, bgp::Route> received_;
  bgp::ImportPolicy import_;
  bgp::ExportPolicy export_;
  bgp::BestPathCallback subscriber_;
};

}  // namespace kr::routing::testing
