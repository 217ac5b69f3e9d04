// SPDX-License-Identifier: Apache-2.0
// Overview: the embedded BGP-4 speaker. One Speaker object owns one event-loop thread (started
// by Start) that owns every socket and timer. Other threads talk to it only through the methods
// below, which enqueue a command and return at once (Add*/Withdraw*/Remove*/Update*), or wait
// for the loop to answer (the snapshot queries). No Kubernetes knowledge lives here: the
// routing controller turns nodes, pods and annotations into peers and paths.
//
// Thread-safety: every public method may be called from any thread, concurrently. Callbacks
// (policies, best-path subscribers) run on the speaker thread; they must be quick, must not
// block, and must not call back into the Speaker synchronously (Peers()/Rib() would deadlock).
// Ownership: the Speaker owns its thread; Stop() (or destruction) joins it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/bgp/types.h"

namespace kr::bgp {

struct GlobalConfig {
  uint32_t local_asn = 0;
  IpAddress router_id;  // IPv4 form; must not be 0.0.0.0
  uint16_t listen_port = 179;
  // Addresses to accept connections on. Empty: all IPv4 and IPv6 addresses.
  std::vector<IpAddress> listen_addresses;
  // Do not listen at all (every peer is then contacted actively).
  bool disable_listen = false;
  // Proposed hold time; 0 disables keepalives, otherwise >= 3 (RFC 4271 4.2).
  uint16_t hold_time_s = 90;
  uint16_t connect_retry_s = 5;
  // RFC 4724: advertise the capability, keep a restarting peer's routes as stale, send
  // End-of-RIB after the initial table.
  bool graceful_restart = false;
  uint16_t graceful_restart_time_s = 90;  // advertised restart time (max 4095)
  uint16_t stale_path_time_s = 360;       // how long stale routes survive a re-established peer
  // Bound on the bytes queued for one connection that the peer has not read yet. Past it no
  // UPDATE is generated for that peer: changed prefixes are only noted, and their latest state
  // goes out once the queue has drained to half (at most one export batch lands on top of the
  // bound). A peer that reads nothing at all is closed by the send hold timer.
  size_t max_output_queue_bytes = 1u << 20;
  // RFC 9687 send hold time: an established connection on which nothing could be written for
  // this long is closed (NOTIFICATION 8, Send Hold Timer Expired). 0 = the RFC's default, the
  // greater of 8 minutes and twice the negotiated hold time; otherwise it must exceed the hold
  // time. Off when the negotiated hold time is 0.
  uint16_t send_hold_time_s = 0;
  // RFC 4456: cluster ID used when reflecting to/from route-reflector clients. Default: router
  // ID.
  std::optional<IpAddress> cluster_id;
};

struct PeerConfig {
  IpAddress address;  // the peer's address (IPv4 or IPv6); identifies the peer
  uint32_t remote_asn = 0;
  std::string password;  // TCP MD5 (RFC 2385) key; empty = none
  uint16_t port = 179;   // the peer's port for active connections
  // eBGP multihop TTL; 0 = directly connected (TTL 1 for eBGP, 255 for iBGP).
  uint8_t multihop_ttl = 0;
  // RFC 5082 GTSM for a directly connected peer (ignored with multihop_ttl): we send TTL 255
  // and the kernel drops the peer's segments that arrive with a lower TTL (IP_MINTTL /
  // IPV6_MINHOPCOUNT), so nobody more than one hop away can reach the session. The peer must
  // send TTL 255 too; off by default (kube-router has no GTSM).
  bool ttl_security = false;
  bool passive = false;                 // never connect, only accept
  bool route_reflector_client = false;  // RFC 4456 client of ours
  std::optional<IpAddress> local_address;
  std::optional<uint16_t> hold_time_s;  // overrides GlobalConfig::hold_time_s
  // Most prefixes the peer may have announced (Adj-RIB-In, both families, before import
  // policy); one more ends the session with Cease/Maximum Number of Prefixes Reached
  // (RFC 4486). 0 = no limit. Changing it does not reset the session.
  uint32_t max_prefixes = 0;
  std::string description;
};

// A path this node originates (the routing controller's pod CIDRs, service VIPs).
struct LocalPath {
  IpPrefix prefix;
  // Next hop to advertise; unset = our address on each session (next-hop-self).
  std::optional<IpAddress> next_hop;
  std::vector<uint32_t> communities;
  std::vector<LargeCommunity> large_communities;
  std::optional<uint32_t> local_pref;  // sent to iBGP peers (default 100)
  std::optional<uint32_t> med;
  Origin origin = Origin::kIgp;
  // AS-path prepending: `prepend_count` copies of `prepend_asn` (0 = the local ASN) put in
  // front of the path before it is exported (kube-router's path-prepend annotations).
  uint32_t prepend_asn = 0;
  int prepend_count = 0;
};

// The best path for `prefix` changed; `best` is unset when no path remains.
struct BestPathChange {
  IpPrefix prefix;
  std::optional<Route> best;
};

// A snapshot of one peer for metrics and the status endpoint.
struct PeerStatus {
  PeerConfig config;  // password redacted to "<set>" when one is configured
  PeerState state = PeerState::kIdle;
  std::chrono::seconds uptime{0};  // time in Established; 0 when not established
  uint64_t prefixes_received = 0;  // in Adj-RIB-In (after import policy rejects are dropped)
  uint64_t prefixes_sent = 0;      // in Adj-RIB-Out
  IpAddress remote_router_id;
  uint16_t negotiated_hold_time_s = 0;
  uint64_t output_queue_bytes = 0;  // written by us, not yet taken by the peer's TCP
  std::string last_error;           // last NOTIFICATION or connection error, for humans
};

// What an import policy decides for a route learned from a peer.
enum class PolicyVerdict : uint8_t { kAccept, kReject };

// Import policy: may modify the route's attributes; runs on the speaker thread for every route
// received (again after ReapplyPolicies()).
using ImportPolicy = std::function<PolicyVerdict(const PeerConfig& from, Route& route)>;
// Export policy: may modify what is sent to `to` (attributes, next_hop); runs on the speaker
// thread. It sees the route after the standard export rules (next-hop-self, LOCAL_PREF,
// reflection attributes) except that towards eBGP peers our ASN is prepended after it, as
// GoBGP does, so a prepend done by the policy ends up behind our ASN.
using ExportPolicy = std::function<PolicyVerdict(const PeerConfig& to, Route& route)>;
// Best-path subscriber; runs on the speaker thread, once per changed prefix.
using BestPathCallback = std::function<void(const BestPathChange& change)>;

class Speaker {
 public:
  virtual ~Speaker() = default;

  // Opens the listening sockets and starts the event-loop thread. Fails (and starts nothing)
  // when the configuration is invalid or no listening socket can be bound.
  virtual Status Start() = 0;
  // Stops the loop and joins the thread. With `graceful_restart` false, each established
  // session gets a Cease NOTIFICATION (peers drop our routes at once); with true, TCP is just
  // closed so peers that negotiated graceful restart keep our routes until we come back.
  // Idempotent.
  virtual void Stop(bool graceful_restart = false) = 0;

  // Peers are keyed by address. AddPeer on an existing address behaves like UpdatePeer.
  // UpdatePeer resets the session when a setting that is part of the session changed
  // (ASN, password, port, TTL, local address, RR client), otherwise it is a no-op.
  virtual void AddPeer(const PeerConfig& peer) = 0;
  virtual void UpdatePeer(const PeerConfig& peer) = 0;
  // Sends a Cease (peer de-configured) and forgets the peer and its routes.
  virtual void RemovePeer(const IpAddress& address) = 0;

  // Originates `path` (replacing a previous local path for the same prefix).
  virtual void AddPath(const LocalPath& path) = 0;
  virtual void WithdrawPath(const IpPrefix& prefix) = 0;

  // Policies are replaced as a whole; ReapplyPolicies re-runs import policy over every
  // Adj-RIB-In (kept unfiltered) and export policy over every Adj-RIB-Out.
  virtual void SetImportPolicy(ImportPolicy policy) = 0;
  virtual void SetExportPolicy(ExportPolicy policy) = 0;
  virtual void ReapplyPolicies() = 0;

  // Registers a best-path subscriber. On registration it receives the current best path of
  // every prefix (on the speaker thread), then every change.
  virtual void SubscribeBestPaths(BestPathCallback callback) = 0;

  // Snapshot queries; they block until the speaker thread answers (or answer directly when
  // the speaker is not running).
  virtual std::vector<PeerStatus> Peers() = 0;
  // Every path in the Loc-RIB, best path of each prefix first, in prefix order.
  virtual std::vector<Route> Rib() = 0;
  // The best path per prefix only.
  virtual std::vector<Route> BestPaths() = 0;
};

// The real speaker. Validation of `config` happens in Start().
std::unique_ptr<Speaker> NewSpeaker(const GlobalConfig& config);

}  // namespace kr::bgp
