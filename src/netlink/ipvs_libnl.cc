// Ipvs over the kernel's generic-netlink family "IPVS" (libnl-genl for the transport, messages
// from ipvs_codec).
#include <linux/ip_vs.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>

#include <algorithm>
#include <functional>
#include <utility>

#include "ipvs_codec.h"
#include "kube_router/base/log.h"
#include "kube_router/netlink/libnl.h"
#include "nl_util.h"

namespace kr::netlink {
namespace {

using detail::MsgPtr;
using detail::NlError;
using detail::SocketPtr;

class NetlinkIpvs : public Ipvs {
 public:
  NetlinkIpvs(SocketPtr sock, int family) : sock_(std::move(sock)), family_(family) {}

  Result<std::vector<IpvsService>> ListServices() override {
    auto msg = detail::BuildIpvsRequest(family_, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, nullptr, nullptr,
                                        false);
    if (!msg.ok()) return msg.status();
    std::vector<IpvsService> out;
    std::string bad;
    Status s = Dump(std::move(*msg), [&](nlattr** tb) {
      auto service = detail::ParseIpvsService(tb[IPVS_CMD_ATTR_SERVICE]);
      if (service.ok()) {
        out.push_back(std::move(*service));
      } else {
        bad = service.error();
      }
    });
    if (!s.ok()) return s.Context("list IPVS services");
    // One unreadable entry must not hide the others; the caller sees all it can use.
    if (!bad.empty() && out.empty()) return Status::Error("list IPVS services: " + bad);
    if (!bad.empty()) KR_LOG_WARN("IPVS: skipped a service the kernel reported: {}", bad);
    return out;
  }

  Result<std::vector<IpvsServiceStats>> ListServiceStats() override {
    auto msg = detail::BuildIpvsRequest(family_, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, nullptr, nullptr,
                                        false);
    if (!msg.ok()) return msg.status();
    std::vector<IpvsServiceStats> out;
    std::string bad;
    Status s = Dump(std::move(*msg), [&](nlattr** tb) {
      auto service = detail::ParseIpvsService(tb[IPVS_CMD_ATTR_SERVICE]);
      auto stats = detail::ParseIpvsServiceStats(tb[IPVS_CMD_ATTR_SERVICE]);
      if (service.ok() && stats.ok()) {
        out.push_back({std::move(*service), *stats});
      } else {
        bad = service.ok() ? stats.error() : service.error();
      }
    });
    if (!s.ok()) return s.Context("list IPVS service counters");
    if (!bad.empty() && out.empty()) return Status::Error("list IPVS service counters: " + bad);
    if (!bad.empty()) KR_LOG_WARN("IPVS: skipped counters of a service: {}", bad);
    return out;
  }

  Status AddService(const IpvsService& s) override {
    return Do(IPVS_CMD_NEW_SERVICE, &s, nullptr, true).Context("add IPVS service " + s.ToString());
  }
  Status UpdateService(const IpvsService& s) override {
    return Do(IPVS_CMD_SET_SERVICE, &s, nullptr, true)
        .Context("update IPVS service " + s.ToString());
  }
  Status DeleteService(const IpvsService& s) override {
    return Do(IPVS_CMD_DEL_SERVICE, &s, nullptr, false)
        .Context("delete IPVS service " + s.ToString());
  }

  Result<std::vector<IpvsDestination>> ListDestinations(const IpvsService& service) override {
    auto msg =
        detail::BuildIpvsRequest(family_, IPVS_CMD_GET_DEST, NLM_F_DUMP, &service, nullptr, false);
    if (!msg.ok()) return msg.status();
    std::vector<IpvsDestination> out;
    Status parse_error;
    Status s = Dump(std::move(*msg), [&](nlattr** tb) {
      auto dest = detail::ParseIpvsDestination(tb[IPVS_CMD_ATTR_DEST], service.address.family());
      if (dest.ok()) {
        out.push_back(std::move(*dest));
      } else {
        parse_error = dest.status();
      }
    });
    if (!s.ok()) return s.Context("list destinations of " + service.ToString());
    if (!parse_error.ok()) return parse_error.Context("list destinations of " + service.ToString());
    return out;
  }

  Status AddDestination(const IpvsService& s, const IpvsDestination& d) override {
    return Do(IPVS_CMD_NEW_DEST, &s, &d, true)
        .Context("add destination " + d.ToString() + " to " + s.ToString());
  }
  Status UpdateDestination(const IpvsService& s, const IpvsDestination& d) override {
    return Do(IPVS_CMD_SET_DEST, &s, &d, true)
        .Context("update destination " + d.ToString() + " of " + s.ToString());
  }
  Status DeleteDestination(const IpvsService& s, const IpvsDestination& d) override {
    return Do(IPVS_CMD_DEL_DEST, &s, &d, false)
        .Context("delete destination " + d.ToString() + " of " + s.ToString());
  }

  Result<std::vector<IpvsWriteError>> Apply(const std::vector<IpvsWrite>& writes) override {
    std::vector<IpvsWriteError> errors;
    for (size_t begin = 0; begin < writes.size(); begin += kBatch) {
      const size_t end = std::min(writes.size(), begin + kBatch);
      std::vector<std::pair<size_t, MsgPtr>> requests;
      for (size_t i = begin; i < end; ++i) {
        const IpvsWrite& w = writes[i];
        auto msg = BuildWrite(w);
        if (!msg.ok()) {
          errors.push_back({i, msg.error()});
          continue;
        }
        requests.emplace_back(i, std::move(*msg));
      }
      std::vector<std::pair<size_t, std::string>> refused;
      if (Status s = detail::SendBatch(sock_.get(), requests, next_seq_, refused); !s.ok()) {
        return s.Context("IPVS writes");
      }
      for (auto& [index, message] : refused) errors.push_back({index, std::move(message)});
    }
    std::sort(errors.begin(), errors.end(),
              [](const IpvsWriteError& a, const IpvsWriteError& b) { return a.index < b.index; });
    return errors;
  }

  Status Flush() override {
    return Do(IPVS_CMD_FLUSH, nullptr, nullptr, false).Context("flush IPVS");
  }

  Status SetTimeouts(const IpvsTimeouts& timeouts) override {
    auto msg = detail::BuildIpvsTimeouts(family_, timeouts);
    if (!msg.ok()) return msg.status();
    return SendAndWait(std::move(*msg)).Context("set IPVS timeouts");
  }

 private:
  // Requests per sendmsg: each message is at most a few hundred bytes, its ack as much again.
  static constexpr size_t kBatch = 256;

  Result<MsgPtr> BuildWrite(const IpvsWrite& w) {
    using Op = IpvsWrite::Op;
    switch (w.op) {
      case Op::kAddService:
        return detail::BuildIpvsRequest(family_, IPVS_CMD_NEW_SERVICE, 0, &w.service, nullptr,
                                        true);
      case Op::kUpdateService:
        return detail::BuildIpvsRequest(family_, IPVS_CMD_SET_SERVICE, 0, &w.service, nullptr,
                                        true);
      case Op::kDeleteService:
        return detail::BuildIpvsRequest(family_, IPVS_CMD_DEL_SERVICE, 0, &w.service, nullptr,
                                        false);
      case Op::kAddDestination:
        return detail::BuildIpvsRequest(family_, IPVS_CMD_NEW_DEST, 0, &w.service, &w.destination,
                                        true);
      case Op::kUpdateDestination:
        return detail::BuildIpvsRequest(family_, IPVS_CMD_SET_DEST, 0, &w.service, &w.destination,
                                        true);
      case Op::kDeleteDestination:
        return detail::BuildIpvsRequest(family_, IPVS_CMD_DEL_DEST, 0, &w.service, &w.destination,
                                        false);
    }
    return Status::Error("unknown IPVS write");
  }

  Status Do(uint8_t command, const IpvsService* s, const IpvsDestination* d, bool full) {
    auto msg = detail::BuildIpvsRequest(family_, command, 0, s, d, full);
    if (!msg.ok()) return msg.status();
    return SendAndWait(std::move(*msg));
  }

  Status SendAndWait(MsgPtr msg) {
    if (int err = nl_send_auto(sock_.get(), msg.get()); err < 0) return Status::Error(NlError(err));
    if (int err = nl_wait_for_ack(sock_.get()); err < 0) return Status::Error(NlError(err));
    return Status::Ok();
  }

  // Sends a dump request and calls `each` with the parsed top-level attributes of every answer.
  Status Dump(MsgPtr msg, const std::function<void(nlattr**)>& each) {
    struct Context {
      const std::function<void(nlattr**)>* each;
      std::string error;
    } ctx{&each, {}};
    auto on_valid = [](nl_msg* answer, void* arg) -> int {
      auto* c = static_cast<Context*>(arg);
      nlattr* tb[IPVS_CMD_ATTR_MAX + 1] = {};
      if (int err = genlmsg_parse(nlmsg_hdr(answer), 0, tb, IPVS_CMD_ATTR_MAX, nullptr); err < 0) {
        c->error = "malformed IPVS answer: " + NlError(err);
        return NL_SKIP;
      }
      (*c->each)(tb);
      return NL_OK;
    };
    if (int err = nl_send_auto(sock_.get(), msg.get()); err < 0) return Status::Error(NlError(err));
    if (int err = detail::ReceiveAnswers(sock_.get(), on_valid, &ctx); err < 0) {
      return Status::Error(NlError(err));
    }
    if (!ctx.error.empty()) return Status::Error(ctx.error);
    return Status::Ok();
  }

  SocketPtr sock_;
  int family_;
  uint32_t next_seq_ = 1u << 31;  // our own for batches (detail::SendBatch), apart from libnl's
};

}  // namespace

Result<std::unique_ptr<Ipvs>> MakeNetlinkIpvs() {
  auto sock = detail::Connect(NETLINK_GENERIC);
  if (!sock.ok()) return sock.status();
  int family = genl_ctrl_resolve(sock->get(), IPVS_GENL_NAME);
  if (family < 0) {
    return Status::Error(
        std::string("IPVS is not available in this kernel (generic netlink family ") +
        IPVS_GENL_NAME + ": " + NlError(family) + "); is ip_vs loaded?");
  }
  return std::unique_ptr<Ipvs>(new NetlinkIpvs(std::move(*sock), family));
}

}  // namespace kr::netlink
