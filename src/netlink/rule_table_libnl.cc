// RuleTable over rtnetlink (RTM_NEWRULE / RTM_DELRULE / RTM_GETRULE) through libnl-route.
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/route/rule.h>
#include <sys/socket.h>

#include "kube_router/netlink/libnl.h"
#include "nl_util.h"

namespace kr::netlink {
namespace {

using detail::CachePtr;
using detail::NlError;
using detail::SocketPtr;

struct RuleDeleter {
  void operator()(rtnl_rule* rule) const { rtnl_rule_put(rule); }
};
using RulePtr = std::unique_ptr<rtnl_rule, RuleDeleter>;

int AfOf(IpAddress::Family family) { return family == IpAddress::Family::kV6 ? AF_INET6 : AF_INET; }

class NetlinkRuleTable : public RuleTable {
 public:
  explicit NetlinkRuleTable(SocketPtr sock) : sock_(std::move(sock)) {}

  Result<std::vector<Rule>> List(IpAddress::Family family,
                                 std::optional<uint8_t> protocol) override {
    nl_cache* raw = nullptr;
    if (int err = rtnl_rule_alloc_cache(sock_.get(), AfOf(family), &raw); err < 0) {
      return Status::Error("cannot dump rules: " + NlError(err));
    }
    CachePtr cache(raw);
    std::vector<Rule> out;
    for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
         obj = nl_cache_get_next(obj)) {
      auto* kernel = reinterpret_cast<rtnl_rule*>(obj);
      // Only "lookup" rules can be ours; others (unreachable, goto, nop) are not modelled.
      if (rtnl_rule_get_action(kernel) != FR_ACT_TO_TBL) continue;
      // libnl's rule cache holds both families whatever the dump asked for.
      if (rtnl_rule_get_family(kernel) != AfOf(family)) continue;
      Rule rule;
      rule.family = family;
      rule.priority = rtnl_rule_get_prio(kernel);
      rule.table = rtnl_rule_get_table(kernel);
      uint8_t proto = 0;
      if (rtnl_rule_get_protocol(kernel, &proto) < 0) proto = 0;
      rule.protocol = proto;
      // The kernel reports FRA_FWMARK only for a non-zero mark or mask; libnl answers 0/0 when it
      // was absent (older versions all-ones).
      const uint32_t mark = rtnl_rule_get_mark(kernel);
      const uint32_t mask = rtnl_rule_get_mask(kernel);
      const bool absent = (mark == 0 && mask == 0) || (mark == 0xffffffff && mask == 0xffffffff);
      if (!absent) {
        rule.fwmark = mark;
        rule.fwmask = mask;
      }
      if (nl_addr* src = rtnl_rule_get_src(kernel);
          src != nullptr && nl_addr_get_prefixlen(src) > 0) {
        auto address = detail::FromNlAddr(src);
        if (address) rule.from = IpPrefix(*address, static_cast<int>(nl_addr_get_prefixlen(src)));
      }
      if (!protocol || rule.protocol == *protocol) out.push_back(rule);
    }
    return out;
  }

  Status Add(const Rule& rule) override {
    auto kernel = Build(rule);
    if (!kernel.ok()) return kernel.status();
    if (int err = rtnl_rule_add(sock_.get(), kernel->get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
      return Status::Error("add rule " + rule.ToString() + ": " + NlError(err));
    }
    return Status::Ok();
  }

  Status Delete(const Rule& rule) override {
    auto kernel = Build(rule);
    if (!kernel.ok()) return kernel.status();
    if (int err = rtnl_rule_delete(sock_.get(), kernel->get(), 0); err < 0) {
      return Status::Error("delete rule " + rule.ToString() + ": " + NlError(err));
    }
    return Status::Ok();
  }

 private:
  static Result<RulePtr> Build(const Rule& rule) {
    if (rule.from && rule.from->address().family() != rule.family) {
      return Status::Error("rule " + rule.ToString() + ": from-prefix of the other family");
    }
    RulePtr kernel(rtnl_rule_alloc());
    if (!kernel) return Status::Error("out of memory");
    rtnl_rule_set_family(kernel.get(), AfOf(rule.family));
    rtnl_rule_set_action(kernel.get(), FR_ACT_TO_TBL);
    rtnl_rule_set_table(kernel.get(), rule.table);
    if (rule.priority != 0) rtnl_rule_set_prio(kernel.get(), rule.priority);
    if (rule.fwmark) {
      rtnl_rule_set_mark(kernel.get(), *rule.fwmark);
      rtnl_rule_set_mask(kernel.get(), rule.fwmask);
    }
    if (rule.from) {
      auto src = detail::ToNlAddr(rule.from->address(), rule.from->length());
      if (!src || rtnl_rule_set_src(kernel.get(), src.get()) < 0) {
        return Status::Error("rule " + rule.ToString() + ": bad from-prefix");
      }
    }
    if (rule.protocol != 0) rtnl_rule_set_protocol(kernel.get(), rule.protocol);
    return kernel;
  }

  SocketPtr sock_;
};

}  // namespace

Result<std::unique_ptr<RuleTable>> MakeNetlinkRuleTable() {
  auto sock = detail::Connect(NETLINK_ROUTE);
  if (!sock.ok()) return sock.status().Context("rules");
  return std::unique_ptr<RuleTable>(new NetlinkRuleTable(std::move(*sock)));
}

}  // namespace kr::netlink
