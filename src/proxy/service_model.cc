#include "kube_router/proxy/service_model.h"

#include <algorithm>

namespace kr::proxy {
namespace {

const char* ProtocolName(netlink::IpvsProtocol p) {
  switch (p) {
    case netlink::IpvsProtocol::kTcp:
      return "TCP";
    case netlink::IpvsProtocol::kUdp:
      return "UDP";
    case netlink::IpvsProtocol::kSctp:
      return "SCTP";
  }
  return "?";
}

bool IdLess(const netlink::IpvsDestination& a, const netlink::IpvsDestination& b) {
  return IdOf(a) < IdOf(b);
}

std::string HostPort(const IpAddress& ip, uint16_t port) {
  std::string host = ip.is_v6() ? "[" + ip.ToString() + "]" : ip.ToString();
  return host + ":" + std::to_string(port);
}

}  // namespace

BuildNotes::BuildNotes(const BuildNotes& other)
    : notes_(other.notes_ ? std::make_unique<Notes>(*other.notes_) : nullptr) {}

BuildNotes& BuildNotes::operator=(const BuildNotes& other) {
  if (this != &other) notes_ = other.notes_ ? std::make_unique<Notes>(*other.notes_) : nullptr;
  return *this;
}

const std::vector<std::string>& BuildNotes::problems() const {
  static const std::vector<std::string> kNone;
  return notes_ ? notes_->problems : kNone;
}

const std::string& BuildNotes::skipped() const {
  static const std::string kNotSkipped;
  return notes_ ? notes_->skipped : kNotSkipped;
}

BuildNotes::Notes& BuildNotes::Mutable() {
  if (!notes_) notes_ = std::make_unique<Notes>();
  return *notes_;
}

void BuildNotes::AddProblem(std::string problem) {
  Mutable().problems.push_back(std::move(problem));
}

void BuildNotes::SetSkipped(std::string why) {
  if (why.empty() && !notes_) return;
  Mutable().skipped = std::move(why);
  if (notes_->skipped.empty() && notes_->problems.empty()) notes_.reset();
}

const char* VipRoleName(VipRole role) {
  switch (role) {
    case VipRole::kClusterIp:
      return "ClusterIP";
    case VipRole::kNodePort:
      return "NodePort";
    case VipRole::kExternalIp:
      return "ExternalIP";
    case VipRole::kLoadBalancer:
      return "LoadBalancer";
  }
  return "?";
}

VirtualServiceId VirtualServiceId::Of(const netlink::IpvsService& s) {
  if (s.fwmark != 0) {
    // The kernel reports fwmark services with the zero address of their family.
    IpAddress zero = s.address.is_v6() ? IpAddress::V6({}) : IpAddress::V4(0);
    return {zero, netlink::IpvsProtocol::kTcp, 0, s.fwmark};
  }
  return {s.address, s.protocol, s.port, 0};
}

std::string VirtualServiceId::ToString() const {
  if (fwmark != 0) {
    return "FWM " + std::to_string(fwmark) + (address.is_v6() ? " IPv6" : " IPv4");
  }
  return std::string(ProtocolName(protocol)) + " " + HostPort(address, port);
}

std::string DestinationId::ToString() const { return HostPort(address, port); }

Destinations::Items::Items(const Items& other)
    : entries(other.entries),
      thresholds(other.thresholds ? std::make_unique<std::vector<Thresholds>>(*other.thresholds)
                                  : nullptr) {}

netlink::IpvsDestination Destinations::Items::At(size_t i) const {
  const Entry& e = entries[i];
  netlink::IpvsDestination d;
  d.address = e.address;
  d.port = e.port;
  d.forward = static_cast<netlink::IpvsForward>(e.forward);
  d.weight = e.weight;
  const Thresholds t = ThresholdsAt(i);
  d.upper_threshold = t.upper;
  d.lower_threshold = t.lower;
  return d;
}

netlink::IpvsDestination Destinations::const_iterator::operator*() const {
  return items_->At(static_cast<size_t>(index_));
}

Destinations::Entry Destinations::Pack(const netlink::IpvsDestination& d) {
  static_assert(sizeof(Entry) == 24, "docs/memory.md counts 24 B per destination");
  return {d.address, static_cast<uint8_t>(d.forward), d.port, d.weight};
}

Destinations Destinations::FromUnsorted(std::vector<netlink::IpvsDestination> items) {
  std::stable_sort(items.begin(), items.end(), IdLess);
  items.erase(std::unique(items.begin(), items.end(),
                          [](const auto& a, const auto& b) { return IdOf(a) == IdOf(b); }),
              items.end());
  Destinations out;
  if (items.empty()) return out;
  out.items_ = std::make_shared<Items>();
  out.items_->entries.reserve(items.size());
  for (const auto& d : items) out.items_->entries.push_back(Pack(d));
  const bool limited = std::any_of(items.begin(), items.end(), [](const auto& d) {
    return d.upper_threshold != 0 || d.lower_threshold != 0;
  });
  if (limited) {
    auto& t = *(out.items_->thresholds = std::make_unique<std::vector<Thresholds>>());
    t.reserve(items.size());
    for (const auto& d : items) t.push_back({d.upper_threshold, d.lower_threshold});
  }
  return out;
}

size_t Destinations::size() const { return items_ ? items_->entries.size() : 0; }

Destinations::Items& Destinations::Mutable() {
  if (!items_) {
    items_ = std::make_shared<Items>();
  } else if (items_.use_count() > 1) {
    items_ = std::make_shared<Items>(*items_);
  }
  return *items_;
}

size_t Destinations::Position(const DestinationId& id) const {
  if (!items_) return 0;
  const auto& all = items_->entries;
  auto it = std::lower_bound(all.begin(), all.end(), id,
                             [](const Entry& e, const DestinationId& key) { return e.id() < key; });
  return static_cast<size_t>(it - all.begin());
}

Destinations::const_iterator Destinations::find(const DestinationId& id) const {
  const size_t i = Position(id);
  if (i == size()) return end();
  return items_->entries[i].id() == id
             ? const_iterator(items_.get(), static_cast<std::ptrdiff_t>(i))
             : end();
}

void Destinations::Put(const netlink::IpvsDestination& destination) {
  const DestinationId id = IdOf(destination);
  const Thresholds limits{destination.upper_threshold, destination.lower_threshold};
  // Appending is the common case (a plan adds a service's destinations in order).
  const size_t n = size();
  const size_t i = n == 0 || items_->entries.back().id() < id ? n : Position(id);
  const bool replace = i < n && items_->entries[i].id() == id;
  Items& all = Mutable();
  if (!all.thresholds && !(limits == Thresholds{})) {
    all.thresholds = std::make_unique<std::vector<Thresholds>>(all.entries.size());
  }
  if (replace) {
    all.entries[i] = Pack(destination);
    if (all.thresholds) (*all.thresholds)[i] = limits;
    return;
  }
  all.entries.insert(all.entries.begin() + static_cast<std::ptrdiff_t>(i), Pack(destination));
  if (all.thresholds) {
    all.thresholds->insert(all.thresholds->begin() + static_cast<std::ptrdiff_t>(i), limits);
  }
}

void Destinations::Erase(const DestinationId& id) {
  auto found = find(id);
  if (found == end()) return;
  const auto offset = found - begin();  // Mutable() may clone: positions stay valid
  Items& all = Mutable();
  all.entries.erase(all.entries.begin() + offset);
  if (all.thresholds) all.thresholds->erase(all.thresholds->begin() + offset);
  if (all.entries.empty()) items_.reset();
}

void Destinations::Compact() {
  if (!items_) return;
  auto& all = *items_;  // (shared or not: the content stays the same)
  if (all.entries.empty()) {
    items_.reset();
    return;
  }
  if (all.thresholds && std::all_of(all.thresholds->begin(), all.thresholds->end(),
                                    [](const Thresholds& t) { return t == Thresholds{}; })) {
    all.thresholds.reset();
  }
  if (all.entries.capacity() - all.entries.size() > all.entries.size() / 4) {
    all.entries.shrink_to_fit();
    if (all.thresholds) all.thresholds->shrink_to_fit();
  }
}

bool Destinations::operator==(const Destinations& other) const {
  if (items_ == other.items_) return true;
  const size_t n = size();
  if (n != other.size()) return false;
  if (n == 0) return true;
  if (items_->entries != other.items_->entries) return false;
  if (!items_->thresholds && !other.items_->thresholds) return true;
  for (size_t i = 0; i < n; ++i) {
    if (!(items_->ThresholdsAt(i) == other.items_->ThresholdsAt(i))) return false;
  }
  return true;
}

}  // namespace kr::proxy
