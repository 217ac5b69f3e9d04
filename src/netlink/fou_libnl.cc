// FoU receive ports over generic netlink (family "fou", what `ip fou` speaks).
#include <arpa/inet.h>
#include <linux/fou.h>
#include <netinet/in.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <unistd.h>

#include <string>

#include "kube_router/base/exec.h"
#include "kube_router/base/log.h"
#include "kube_router/netlink/libnl.h"
#include "nl_util.h"

namespace kr::netlink {
namespace {

using detail::MsgPtr;
using detail::NlError;
using detail::SocketPtr;

// The kernel does not load fou (or fou6) on demand: neither module declares an alias for its
// generic netlink family or its tunnel encapsulation. kube-router runs `modprobe fou fou6` too.
Status LoadModule(const std::string& name) {
  if (access(("/sys/module/" + name).c_str(), F_OK) == 0) return Status::Ok();
  ExecOptions options;
  options.timeout = std::chrono::seconds(30);
  options.max_output = 64 << 10;
  auto result = ExecChecked({"modprobe", name}, "", options);
  if (!result.ok()) return result.status().Context("loading kernel module " + name);
  KR_LOG_INFO("netlink: loaded kernel module {}", name);
  return Status::Ok();
}

bool AllZero(const nlattr* attr) {
  const auto* bytes = static_cast<const uint8_t*>(nla_data(attr));
  for (int i = 0; i < nla_len(attr); ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

class NetlinkFouPorts : public FouPorts {
 public:
  explicit NetlinkFouPorts(SocketPtr sock) : sock_(std::move(sock)) {}

  Result<std::vector<FouPort>> List() override {
    std::vector<FouPort> out;
    int family = Resolve();
    if (family < 0) return out;  // no fou module: no ports
    MsgPtr msg(nlmsg_alloc());
    if (!msg || !genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, NLM_F_DUMP,
                             FOU_CMD_GET, FOU_GENL_VERSION)) {
      return Status::Error("out of memory");
    }
    struct Context {
      std::vector<FouPort>* out;
      std::string error;
    } ctx{&out, {}};
    auto on_valid = [](nl_msg* answer, void* arg) -> int {
      auto* c = static_cast<Context*>(arg);
      nlattr* tb[FOU_ATTR_MAX + 1] = {};
      if (int err = genlmsg_parse(nlmsg_hdr(answer), 0, tb, FOU_ATTR_MAX, nullptr); err < 0) {
        c->error = "malformed FoU answer: " + NlError(err);
        return NL_SKIP;
      }
      if (!tb[FOU_ATTR_PORT] || !tb[FOU_ATTR_AF] || !tb[FOU_ATTR_TYPE]) return NL_OK;
      // Ports bound to an address, a peer or a device are never ours (we add only unbound
      // ones). The kernel reports the addresses of every port, all zeros when unbound.
      for (int bound : {FOU_ATTR_LOCAL_V4, FOU_ATTR_LOCAL_V6, FOU_ATTR_PEER_V4, FOU_ATTR_PEER_V6,
                        FOU_ATTR_PEER_PORT, FOU_ATTR_IFINDEX}) {
        if (tb[bound] && !AllZero(tb[bound])) return NL_OK;
      }
      FouPort port;
      uint8_t af = nla_get_u8(tb[FOU_ATTR_AF]);
      if (af != AF_INET && af != AF_INET6) return NL_OK;
      port.family = af == AF_INET ? IpAddress::Family::kV4 : IpAddress::Family::kV6;
      port.port = ntohs(nla_get_u16(tb[FOU_ATTR_PORT]));
      port.kind = nla_get_u8(tb[FOU_ATTR_TYPE]) == FOU_ENCAP_GUE ? FouKind::kGue : FouKind::kDirect;
      if (port.kind == FouKind::kDirect && tb[FOU_ATTR_IPPROTO]) {
        port.protocol = nla_get_u8(tb[FOU_ATTR_IPPROTO]);
      }
      c->out->push_back(port);
      return NL_OK;
    };
    if (int err = nl_send_auto(sock_.get(), msg.get()); err < 0) {
      return Status::Error("cannot list FoU ports: " + NlError(err));
    }
    if (int err = detail::ReceiveAnswers(sock_.get(), on_valid, &ctx); err < 0) {
      return Status::Error("cannot list FoU ports: " + NlError(err));
    }
    if (!ctx.error.empty()) return Status::Error(ctx.error);
    return out;
  }

  Status Add(const FouPort& port) override {
    if (auto status = LoadModule("fou"); !status.ok()) return status.Context("add FoU port");
    if (port.family == IpAddress::Family::kV6) {
      if (auto status = LoadModule("fou6"); !status.ok()) return status.Context("add FoU port");
    }
    return Send(FOU_CMD_ADD, port).Context("add FoU " + port.ToString());
  }

  Status Delete(const FouPort& port) override {
    return Send(FOU_CMD_DEL, port).Context("delete FoU " + port.ToString());
  }

 private:
  // The family id, or a negative libnl error when the kernel has no "fou" family.
  int Resolve() {
    if (family_ < 0) family_ = genl_ctrl_resolve(sock_.get(), FOU_GENL_NAME);
    return family_;
  }

  Status Send(uint8_t command, const FouPort& port) {
    int family = Resolve();
    if (family < 0) return Status::Error("the kernel has no FoU support: " + NlError(family));
    MsgPtr msg(nlmsg_alloc());
    bool ok = msg && genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, command,
                                 FOU_GENL_VERSION);
    ok = ok && nla_put_u16(msg.get(), FOU_ATTR_PORT, htons(port.port)) == 0 &&
         nla_put_u8(msg.get(), FOU_ATTR_AF,
                    port.family == IpAddress::Family::kV4 ? AF_INET : AF_INET6) == 0;
    if (ok && command == FOU_CMD_ADD) {
      ok = nla_put_u8(msg.get(), FOU_ATTR_TYPE, static_cast<uint8_t>(port.kind)) == 0 &&
           (port.kind != FouKind::kDirect ||
            nla_put_u8(msg.get(), FOU_ATTR_IPPROTO, port.protocol) == 0);
    }
    if (!ok) return Status::Error("out of memory");
    if (int err = nl_send_auto(sock_.get(), msg.get()); err < 0) {
      return Status::Error(NlError(err));
    }
    if (int err = nl_wait_for_ack(sock_.get()); err < 0) return Status::Error(NlError(err));
    return Status::Ok();
  }

  SocketPtr sock_;
  int family_ = -1;
};

}  // namespace

Result<std::unique_ptr<FouPorts>> MakeNetlinkFouPorts() {
  auto sock = detail::Connect(NETLINK_GENERIC);
  if (!sock.ok()) return sock.status();
  return std::unique_ptr<FouPorts>(new NetlinkFouPorts(std::move(*sock)));
}

}  // namespace kr::netlink
