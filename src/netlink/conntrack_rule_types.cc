// Value-type helpers of Conntrack and RuleTable (shared by the real adapters and the fakes).
#include <cstdio>
#include <string>

#include "host_port.h"
#include "kube_router/netlink/conntrack.h"
#include "kube_router/netlink/rule_table.h"

namespace kr::netlink {
namespace {

std::string ProtocolText(uint8_t protocol) {
  switch (protocol) {
    case ip_protocol::kTcp:
      return "tcp";
    case ip_protocol::kUdp:
      return "udp";
    case ip_protocol::kSctp:
      return "sctp";
  }
  return "proto " + std::to_string(protocol);
}

std::string TupleText(const ConntrackTuple& t) {
  return HostPortText(t.source, t.source_port) + "->" +
         HostPortText(t.destination, t.destination_port);
}

}  // namespace

std::string ConntrackFlow::ToString() const {
  std::string out =
      ProtocolText(protocol) + " " + TupleText(original) + " reply " + TupleText(reply);
  if (zone != 0) out += " zone " + std::to_string(zone);
  return out;
}

bool ConntrackFilter::Matches(const ConntrackFlow& flow) const {
  if (flow.family() != family || flow.protocol != protocol) return false;
  if (original_destination && flow.original.destination != *original_destination) return false;
  if (original_destination_port && flow.original.destination_port != *original_destination_port) {
    return false;
  }
  if (reply_source && flow.reply.source != *reply_source) return false;
  if (reply_source_port && flow.reply.source_port != *reply_source_port) return false;
  if (only_untranslated && flow.reply.source != flow.original.destination) return false;
  return true;
}

std::string ConntrackFilter::ToString() const {
  std::string out = ProtocolText(protocol) + (family == IpAddress::Family::kV6 ? " v6" : " v4");
  if (original_destination) out += " dst " + original_destination->ToString();
  if (original_destination_port) out += " dport " + std::to_string(*original_destination_port);
  if (reply_source) out += " reply-src " + reply_source->ToString();
  if (reply_source_port) out += " reply-sport " + std::to_string(*reply_source_port);
  if (only_untranslated) out += " untranslated";
  return out;
}

std::string Rule::ToString() const {
  std::string out = family == IpAddress::Family::kV6 ? "v6" : "v4";
  out += " pref " + std::to_string(priority);
  if (from) out += " from " + from->ToString();
  if (fwmark) {
    char mark[32];
    std::snprintf(mark, sizeof(mark), " fwmark 0x%x/0x%x", *fwmark, fwmask);
    out += mark;
  }
  out += " lookup " + std::to_string(table) + " proto " + std::to_string(protocol);
  return out;
}

}  // namespace kr::netlink
