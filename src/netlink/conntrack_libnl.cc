// Conntrack over ctnetlink (NFNL_SUBSYS_CTNETLINK) through libnl-nf: a dump per family, then one
// delete per matching flow, each naming the flow by its original tuple (and zone).
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netlink/errno.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <sys/socket.h>

#include <set>

#include "kube_router/base/log.h"
#include "kube_router/netlink/libnl.h"
#include "nl_util.h"

namespace kr::netlink {
namespace {

using detail::NlError;
using detail::SocketPtr;

struct CtDeleter {
  void operator()(nfnl_ct* ct) const { nfnl_ct_put(ct); }
};
using CtPtr = std::unique_ptr<nfnl_ct, CtDeleter>;

// A dump interrupted by concurrent table changes (NLM_F_DUMP_INTR) is retried this often.
constexpr int kDumpAttempts = 3;

std::optional<ConntrackTuple> ReadTuple(nfnl_ct* ct, int reply) {
  auto source = detail::FromNlAddr(nfnl_ct_get_src(ct, reply));
  auto destination = detail::FromNlAddr(nfnl_ct_get_dst(ct, reply));
  if (!source || !destination) return std::nullopt;
  ConntrackTuple t;
  t.source = *source;
  t.destination = *destination;
  if (nfnl_ct_test_src_port(ct, reply)) t.source_port = nfnl_ct_get_src_port(ct, reply);
  if (nfnl_ct_test_dst_port(ct, reply)) t.destination_port = nfnl_ct_get_dst_port(ct, reply);
  return t;
}

class NetlinkConntrack : public Conntrack {
 public:
  explicit NetlinkConntrack(SocketPtr sock) : sock_(std::move(sock)) {}

  Result<std::vector<ConntrackFlow>> List(IpAddress::Family family) override {
    Status last;
    for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
      std::vector<ConntrackFlow> flows;
      last = Dump(family, flows);
      if (last.ok()) return flows;
    }
    return last.Context("list conntrack flows");
  }

  Result<size_t> Delete(const std::vector<ConntrackFilter>& filters) override {
    std::set<IpAddress::Family> families;
    for (const ConntrackFilter& filter : filters) {
      if (!filter.Narrow()) {
        return Status::Error("refusing conntrack filter " + filter.ToString() +
                             ": it selects every flow of the protocol");
      }
      families.insert(filter.family);
    }
    size_t deleted = 0;
    for (IpAddress::Family family : families) {
      auto flows = List(family);
      if (!flows.ok()) return flows.status();
      for (const ConntrackFlow& flow : *flows) {
        bool wanted = false;
        for (const ConntrackFilter& filter : filters) wanted = wanted || filter.Matches(flow);
        if (!wanted) continue;
        auto gone = DeleteFlow(flow);
        if (!gone.ok()) return gone.status();
        if (*gone) ++deleted;
      }
    }
    return deleted;
  }

 private:
  Status Dump(IpAddress::Family family, std::vector<ConntrackFlow>& out) {
    const int af = family == IpAddress::Family::kV6 ? AF_INET6 : AF_INET;
    if (int err = nfnl_send_simple(sock_.get(), NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET,
                                   NLM_F_DUMP, af, 0);
        err < 0) {
      return Status::Error(NlError(err));
    }
    struct Context {
      std::vector<ConntrackFlow>* out;
      size_t skipped = 0;
    } ctx{&out};
    auto on_valid = [](nl_msg* answer, void* arg) -> int {
      auto* c = static_cast<Context*>(arg);
      nfnl_ct* raw = nullptr;
      if (nfnlmsg_ct_parse(nlmsg_hdr(answer), &raw) < 0 || raw == nullptr) {
        ++c->skipped;
        return NL_SKIP;
      }
      CtPtr ct(raw);
      auto original = ReadTuple(ct.get(), 0);
      auto reply = ReadTuple(ct.get(), 1);
      if (!original || !reply) {
        ++c->skipped;  // not an IP flow we can name (never expected for AF_INET/AF_INET6)
        return NL_OK;
      }
      ConntrackFlow flow;
      flow.protocol = nfnl_ct_get_proto(ct.get());
      flow.original = *original;
      flow.reply = *reply;
      if (nfnl_ct_test_zone(ct.get())) flow.zone = nfnl_ct_get_zone(ct.get());
      c->out->push_back(flow);
      return NL_OK;
    };
    if (int err = detail::ReceiveAnswers(sock_.get(), on_valid, &ctx); err < 0) {
      return Status::Error(NlError(err));
    }
    if (ctx.skipped > 0) KR_LOG_WARN("conntrack: skipped {} unreadable flows", ctx.skipped);
    return Status::Ok();
  }

  // True when the kernel deleted the flow, false when it was already gone.
  Result<bool> DeleteFlow(const ConntrackFlow& flow) {
    CtPtr ct(nfnl_ct_alloc());
    if (!ct) return Status::Error("out of memory");
    const IpAddress& src = flow.original.source;
    nfnl_ct_set_family(ct.get(), detail::FamilyOf(src));
    nfnl_ct_set_proto(ct.get(), flow.protocol);
    auto s = detail::ToNlAddr(src, src.bit_length());
    auto d = detail::ToNlAddr(flow.original.destination, flow.original.destination.bit_length());
    // The original tuple must be in the request: a delete without any tuple flushes the table.
    if (!s || !d || nfnl_ct_set_src(ct.get(), 0, s.get()) < 0 ||
        nfnl_ct_set_dst(ct.get(), 0, d.get()) < 0) {
      return Status::Error("cannot build conntrack delete for " + flow.ToString());
    }
    nfnl_ct_set_src_port(ct.get(), 0, flow.original.source_port);
    nfnl_ct_set_dst_port(ct.get(), 0, flow.original.destination_port);
    if (flow.zone != 0) nfnl_ct_set_zone(ct.get(), flow.zone);
    int err = nfnl_ct_del(sock_.get(), ct.get(), 0);
    if (err == -NLE_OBJ_NOTFOUND) return false;  // expired since the dump
    if (err < 0)
      return Status::Error("delete conntrack flow " + flow.ToString() + ": " + NlError(err));
    return true;
  }

  SocketPtr sock_;
};

}  // namespace

Result<std::unique_ptr<Conntrack>> MakeNetlinkConntrack() {
  auto sock = detail::Connect(NETLINK_NETFILTER);
  if (!sock.ok()) return sock.status().Context("conntrack");
  return std::unique_ptr<Conntrack>(new NetlinkConntrack(std::move(*sock)));
}

}  // namespace kr::netlink
