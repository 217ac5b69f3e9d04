// Real netfilter adapters: the iptables(-nft|-legacy)-save/-restore and ipset programs. Only the
// agent executable and root-only tests link these.
#pragma once

#include <memory>

#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"

namespace kr::netfilter {

// Whichever backend already holds rules, preferring nft when both or neither do (the rule
// iptables-wrapper follows); legacy only when nft holds no rule and legacy does.
IptablesMode DetectIptablesMode();

std::unique_ptr<Iptables> MakeIptables(IptablesMode mode, IpFamily family);
// For a backend or family that may not be in use (Cleanup also clears the other backend): Save()
// runs the save tool without -t, which reads only the tables that exist (naming a table makes
// iptables-legacy create it), and a table that does not exist reads as empty. Save() fails when
// the tool is missing.
std::unique_ptr<Iptables> MakeIptablesForCleanup(IptablesMode mode, IpFamily family);
std::unique_ptr<Ipset> MakeIpset();

}  // namespace kr::netfilter
