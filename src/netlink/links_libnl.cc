// Links over rtnetlink (libnl-route): tunnels, bridges, dummies, link state and addresses.
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>

#include "kube_router/netlink/libnl.h"
#include "nl_util.h"
#include "tunnel_codec.h"

namespace kr::netlink {
namespace {

using detail::AddrPtr;
using detail::CachePtr;
using detail::MsgPtr;
using detail::NlError;
using detail::SocketPtr;

struct LinkDeleter {
  void operator()(rtnl_link* link) const { rtnl_link_put(link); }
};
struct AddrObjDeleter {
  void operator()(rtnl_addr* addr) const { rtnl_addr_put(addr); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrObjPtr = std::unique_ptr<rtnl_addr, AddrObjDeleter>;

Link FromKernel(rtnl_link* kernel) {
  Link link;
  link.name = rtnl_link_get_name(kernel) ? rtnl_link_get_name(kernel) : "";
  link.index = rtnl_link_get_ifindex(kernel);
  link.kind = rtnl_link_get_type(kernel) ? rtnl_link_get_type(kernel) : "";
  link.mtu = rtnl_link_get_mtu(kernel);
  link.up = (rtnl_link_get_flags(kernel) & IFF_UP) != 0;
  return link;  // a tunnel's end points and encapsulation: see ReadTunnels
}

class NetlinkLinks : public Links {
 public:
  explicit NetlinkLinks(SocketPtr sock) : sock_(std::move(sock)) {}

  Result<std::vector<Link>> List() override {
    auto cache = LinkCache();
    if (!cache.ok()) return cache.status();
    std::vector<Link> out;
    for (nl_object* obj = nl_cache_get_first(cache->get()); obj != nullptr;
         obj = nl_cache_get_next(obj)) {
      out.push_back(FromKernel(reinterpret_cast<rtnl_link*>(obj)));
    }
    if (auto status = ReadTunnels(out); !status.ok()) return status;
    return out;
  }

  Result<std::optional<Link>> Get(const std::string& name) override {
    rtnl_link* raw = nullptr;
    int err = rtnl_link_get_kernel(sock_.get(), 0, name.c_str(), &raw);
    if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return std::optional<Link>();
    if (err < 0) return Status::Error("cannot read link " + name + ": " + NlError(err));
    LinkPtr link(raw);
    std::vector<Link> found{FromKernel(link.get())};
    if (auto status = ReadTunnels(found); !status.ok()) return status;
    return std::optional<Link>(std::move(found.front()));
  }

  Status CreateTunnel(const TunnelSpec& spec) override {
    auto msg = detail::BuildTunnelRequest(spec);
    if (!msg.ok()) return msg.status().Context("create tunnel " + spec.name);
    if (int err = nl_send_auto(sock_.get(), msg->get()); err < 0) {
      return Status::Error("create tunnel " + spec.name + ": " + NlError(err));
    }
    if (int err = nl_wait_for_ack(sock_.get()); err < 0) {
      return Status::Error("create tunnel " + spec.name + ": " + NlError(err));
    }
    return Status::Ok();
  }

  Status CreateBridge(const std::string& name, uint32_t mtu) override {
    return AddOfKind("bridge", name, mtu).Context("create bridge " + name);
  }

  Status CreateDummy(const std::string& name) override {
    return AddOfKind("dummy", name, 0).Context("create dummy " + name);
  }

  Status Delete(const std::string& name) override {
    LinkPtr link(rtnl_link_alloc());
    if (!link) return Status::Error("out of memory");
    rtnl_link_set_name(link.get(), name.c_str());
    if (int err = rtnl_link_delete(sock_.get(), link.get()); err < 0) {
      return Status::Error("delete link " + name + ": " + NlError(err));
    }
    return Status::Ok();
  }

  Status SetUp(const std::string& name, bool up) override {
    return Change(name,
                  [up](rtnl_link* change) {
                    if (up) {
                      rtnl_link_set_flags(change, IFF_UP);
                    } else {
                      rtnl_link_unset_flags(change, IFF_UP);
                    }
                  })
        .Context(std::string(up ? "set up " : "set down ") + name);
  }

  Status SetMtu(const std::string& name, uint32_t mtu) override {
    return Change(name, [mtu](rtnl_link* change) { rtnl_link_set_mtu(change, mtu); })
        .Context("set mtu " + std::to_string(mtu) + " on " + name);
  }

  Result<std::vector<Address>> ListAddresses(const std::string& device) override {
    auto links = LinkCache();
    if (!links.ok()) return links.status();
    nl_cache* raw = nullptr;
    if (int err = rtnl_addr_alloc_cache(sock_.get(), &raw); err < 0) {
      return Status::Error("cannot dump addresses: " + NlError(err));
    }
    CachePtr cache(raw);
    std::vector<Address> out;
    for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
         obj = nl_cache_get_next(obj)) {
      auto* kernel = reinterpret_cast<rtnl_addr*>(obj);
      auto ip = detail::FromNlAddr(rtnl_addr_get_local(kernel));
      if (!ip) continue;
      char name[IFNAMSIZ] = {};
      if (!rtnl_link_i2name(links->get(), rtnl_addr_get_ifindex(kernel), name, sizeof(name))) {
        continue;  // the link went away during the dump
      }
      if (!device.empty() && device != name) continue;
      Address address;
      address.device = name;
      address.address = *ip;
      address.prefix_length = rtnl_addr_get_prefixlen(kernel);
      address.scope = static_cast<Scope>(rtnl_addr_get_scope(kernel));
      out.push_back(address);
    }
    return out;
  }

  Status AddAddress(const Address& address) override {
    auto obj = AddressObject(address);
    if (!obj.ok()) return obj.status().Context("add address " + address.ToString());
    if (int err = rtnl_addr_add(sock_.get(), obj->get(), NLM_F_EXCL); err < 0) {
      return Status::Error("add address " + address.ToString() + ": " + NlError(err));
    }
    return Status::Ok();
  }

  Result<std::vector<AddressError>> AddAddresses(const std::vector<Address>& addresses) override {
    std::vector<AddressError> errors;
    std::map<std::string, int> ifindex_of;  // one link lookup per device, not per address
    for (size_t begin = 0; begin < addresses.size(); begin += kBatch) {
      const size_t end = std::min(addresses.size(), begin + kBatch);
      std::vector<std::pair<size_t, MsgPtr>> requests;
      for (size_t i = begin; i < end; ++i) {
        const Address& address = addresses[i];
        auto it = ifindex_of.find(address.device);
        if (it == ifindex_of.end()) {
          rtnl_link* raw = nullptr;
          int err = rtnl_link_get_kernel(sock_.get(), 0, address.device.c_str(), &raw);
          LinkPtr link(raw);
          it = ifindex_of.emplace(address.device, err < 0 ? 0 : rtnl_link_get_ifindex(link.get()))
                   .first;
        }
        if (it->second == 0) {
          errors.push_back({i, "add address " + address.ToString() + ": no such link"});
          continue;
        }
        auto obj = AddressObjectAt(address, it->second);
        nl_msg* msg = nullptr;
        int err = obj.ok() ? rtnl_addr_build_add_request(obj->get(), NLM_F_EXCL, &msg) : 0;
        if (!obj.ok() || err < 0) {
          errors.push_back({i, "add address " + address.ToString() + ": " +
                                   (obj.ok() ? NlError(err) : obj.error())});
          continue;
        }
        requests.emplace_back(i, MsgPtr(msg));
      }
      std::vector<std::pair<size_t, std::string>> refused;
      if (Status s = detail::SendBatch(sock_.get(), requests, next_seq_, refused); !s.ok()) {
        return s.Context("address requests");
      }
      for (auto& [index, message] : refused) {
        errors.push_back({index, "add address " + addresses[index].ToString() + ": " + message});
      }
    }
    // Refusals arrive in kernel order; keep them in the caller's order.
    std::sort(errors.begin(), errors.end(),
              [](const AddressError& a, const AddressError& b) { return a.index < b.index; });
    return errors;
  }

  Status DeleteAddress(const Address& address) override {
    auto obj = AddressObject(address);
    if (!obj.ok()) return obj.status().Context("delete address " + address.ToString());
    if (int err = rtnl_addr_delete(sock_.get(), obj->get(), 0); err < 0) {
      return Status::Error("delete address " + address.ToString() + ": " + NlError(err));
    }
    return Status::Ok();
  }

 private:
  // libnl's link objects carry no UDP encapsulation: the tunnels among `links` are completed
  // from one raw link dump.
  Status ReadTunnels(std::vector<Link>& links) {
    std::map<int, Link*> tunnels;
    for (auto& link : links) {
      if (link.kind == "ipip" || link.kind == "ip6tnl") tunnels[link.index] = &link;
    }
    if (tunnels.empty()) return Status::Ok();
    MsgPtr msg(nlmsg_alloc_simple(RTM_GETLINK, NLM_F_DUMP));
    ifinfomsg header{};
    header.ifi_family = AF_UNSPEC;
    if (!msg || nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO) < 0) {
      return Status::Error("out of memory");
    }
    auto on_valid = [](nl_msg* answer, void* arg) -> int {
      auto* by_index = static_cast<std::map<int, Link*>*>(arg);
      nlmsghdr* hdr = nlmsg_hdr(answer);
      if (hdr->nlmsg_type != RTM_NEWLINK) return NL_OK;
      auto* info = static_cast<ifinfomsg*>(nlmsg_data(hdr));
      if (auto it = by_index->find(info->ifi_index); it != by_index->end()) {
        detail::ParseTunnelInfo(hdr, *it->second);
      }
      return NL_OK;
    };
    if (int err = nl_send_auto(sock_.get(), msg.get()); err < 0) {
      return Status::Error("cannot dump tunnels: " + NlError(err));
    }
    // nl_socket_get_cb hands out a reference of its own: drop it once cloned.
    nl_cb* socket_cb = nl_socket_get_cb(sock_.get());
    nl_cb* cb = nl_cb_clone(socket_cb);
    nl_cb_put(socket_cb);
    if (cb == nullptr) return Status::Error("out of memory");
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &tunnels);
    int err = nl_recvmsgs(sock_.get(), cb);
    nl_cb_put(cb);
    if (err < 0) return Status::Error("cannot dump tunnels: " + NlError(err));
    return Status::Ok();
  }

  Result<CachePtr> LinkCache() {
    nl_cache* raw = nullptr;
    if (int err = rtnl_link_alloc_cache(sock_.get(), AF_UNSPEC, &raw); err < 0) {
      return Status::Error("cannot dump links: " + NlError(err));
    }
    return CachePtr(raw);
  }

  Status Add(LinkPtr link, const std::string& name, uint32_t mtu) {
    if (name.empty() || name.size() >= IFNAMSIZ) {
      return Status::Error("invalid link name '" + name + "'");
    }
    rtnl_link_set_name(link.get(), name.c_str());
    if (mtu != 0) rtnl_link_set_mtu(link.get(), mtu);
    if (int err = rtnl_link_add(sock_.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
      return Status::Error(NlError(err));
    }
    return Status::Ok();
  }

  Status AddOfKind(const char* kind, const std::string& name, uint32_t mtu) {
    LinkPtr link(rtnl_link_alloc());
    if (!link) return Status::Error("out of memory");
    if (int err = rtnl_link_set_type(link.get(), kind); err < 0) return Status::Error(NlError(err));
    return Add(std::move(link), name, mtu);
  }

  template <typename Edit>
  Status Change(const std::string& name, Edit edit) {
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock_.get(), 0, name.c_str(), &raw); err < 0) {
      return Status::Error(NlError(err));
    }
    LinkPtr current(raw);
    LinkPtr change(rtnl_link_alloc());
    if (!change) return Status::Error("out of memory");
    edit(change.get());
    if (int err = rtnl_link_change(sock_.get(), current.get(), change.get(), 0); err < 0) {
      return Status::Error(NlError(err));
    }
    return Status::Ok();
  }

  Result<AddrObjPtr> AddressObject(const Address& address) {
    if (address.prefix_length < 0 || address.prefix_length > address.address.bit_length()) {
      return Status::Error("invalid prefix length");
    }
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(sock_.get(), 0, address.device.c_str(), &raw); err < 0) {
      return Status::Error("link " + address.device + ": " + NlError(err));
    }
    LinkPtr link(raw);
    return AddressObjectAt(address, rtnl_link_get_ifindex(link.get()));
  }

  Result<AddrObjPtr> AddressObjectAt(const Address& address, int ifindex) {
    if (address.prefix_length < 0 || address.prefix_length > address.address.bit_length()) {
      return Status::Error("invalid prefix length");
    }
    AddrObjPtr obj(rtnl_addr_alloc());
    AddrPtr local = detail::ToNlAddr(address.address, address.prefix_length);
    if (!obj || !local) return Status::Error("out of memory");
    rtnl_addr_set_ifindex(obj.get(), ifindex);
    rtnl_addr_set_family(obj.get(), detail::FamilyOf(address.address));
    if (int err = rtnl_addr_set_local(obj.get(), local.get()); err < 0) {
      return Status::Error(NlError(err));
    }
    rtnl_addr_set_prefixlen(obj.get(), address.prefix_length);
    rtnl_addr_set_scope(obj.get(), static_cast<int>(address.scope));
    return obj;
  }

  static constexpr size_t kBatch = 256;  // requests per sendmsg (as the IPVS adapter)
  SocketPtr sock_;
  uint32_t next_seq_ = 1u << 31;  // our own for batches (detail::SendBatch), apart from libnl's
};

}  // namespace

Result<std::unique_ptr<Links>> MakeNetlinkLinks() {
  auto sock = detail::Connect(NETLINK_ROUTE);
  if (!sock.ok()) return sock.status();
  return std::unique_ptr<Links>(new NetlinkLinks(std::move(*sock)));
}

}  // namespace kr::netlink
