// Private to the netpol compiler: the policies' ipsets, one per content identity (naming.h),
// shared by every policy that needs those members and counted by their uses. A set leaves the
// state only when its last use is released, so it is destroyed only after every chain that
// matched it is gone (the controller writes chains before destroying removed sets).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>

#include "kube_router/netfilter/ipset.h"

namespace kr::netpol::compiler_internal {

class SharedSets {
 public:
  using SetChanges = std::map<std::string, std::optional<netfilter::IpsetSet>>;

  struct Grant {
    bool granted = false;  // false: another identity holds the name (a hash collision)
    bool build = false;    // the caller computes the members and Put()s them
    std::string holder;    // the holder's description when refused
  };

  explicit SharedSets(std::map<std::string, netfilter::IpsetSet>& sets) : sets_(sets) {}

  // Starts one compile pass: each set is rebuilt by its first user of the pass (the view may
  // have changed its members). `changes` (may be null) receives the previous content (nullopt:
  // none) of every set the pass creates, changes or removes.
  void BeginPass(SetChanges* changes);
  // One more use of `name`, whose members are decided by `key` (described for logs by
  // `description`).
  Grant Acquire(const std::string& name, const std::string& key, const std::string& description);
  // The members of a set granted with `build`.
  void Put(netfilter::IpsetSet set);
  // One use fewer; the last one removes the set from the state.
  void Release(const std::string& name);
  void Clear();

  size_t uses(const std::string& name) const;

 private:
  struct Identity {
    std::string key;
    std::string description;
    size_t uses = 0;
    bool built = false;  // in this pass
  };

  std::map<std::string, netfilter::IpsetSet>& sets_;
  std::map<std::string, Identity> identities_;
  SetChanges* changes_ = nullptr;
};

}  // namespace kr::netpol::compiler_internal
