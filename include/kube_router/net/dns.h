// SPDX-License-Identifier: Apache-2.0
// A minimal DNS stub resolver (RFC 1035 A and AAAA queries over UDP) for server URLs whose
// host is neither an address nor in /etc/hosts. The agent is a static binary and must not
// use NSS (getaddrinfo would try to load shared NSS modules), so it asks the nameservers of
// resolv.conf itself: no search domains, no TCP fallback, no caching. Thread-safe (no state).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::net {

// Name resolution without NSS: numeric addresses directly; names from `hosts_file`
// ("localhost" always works); otherwise an A/AAAA query to the nameservers of `resolv_conf`.
// Errors name the host and say how to avoid the lookup.
Result<std::vector<IpAddress>> ResolveHost(const std::string& host,
                                           const std::string& hosts_file = "/etc/hosts",
                                           const std::string& resolv_conf = "/etc/resolv.conf");

// "nameserver" entries of a resolv.conf file (addresses only; port 53 implied).
std::vector<IpAddress> ReadNameservers(const std::string& resolv_conf);

// Asks each nameserver in turn (at `port`) for A then AAAA records of `name`; returns the
// addresses of the first server that answers with any. Errors name the host.
Result<std::vector<IpAddress>> QueryDns(
    const std::string& name, const std::vector<IpAddress>& nameservers, uint16_t port = 53,
    std::chrono::milliseconds timeout_per_query = std::chrono::milliseconds(2000));

// Builds a query (exposed for tests); `id` is the transaction id.
std::string BuildDnsQuery(const std::string& name, uint16_t id, uint16_t qtype);
// Addresses of the A/AAAA answers of a response to transaction `id`; error on malformed
// input or an error RCODE.
Result<std::vector<IpAddress>> ParseDnsResponse(const std::string& packet, uint16_t id);

}  // namespace kr::net
