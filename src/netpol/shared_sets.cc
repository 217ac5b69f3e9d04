#include "shared_sets.h"

namespace kr::netpol::compiler_internal {

void SharedSets::BeginPass(SetChanges* changes) {
  changes_ = changes;
  for (auto& [name, identity] : identities_) identity.built = false;
}

SharedSets::Grant SharedSets::Acquire(const std::string& name, const std::string& key,
                                      const std::string& description) {
  auto [it, created] = identities_.try_emplace(name);
  Identity& identity = it->second;
  if (created) {
    identity.key = key;
    identity.description = description;
  } else if (identity.key != key) {
    return {false, false, identity.description};
  }
  ++identity.uses;
  return {true, !identity.built, ""};
}

void SharedSets::Put(netfilter::IpsetSet set) {
  auto identity = identities_.find(set.name);
  if (identity == identities_.end()) return;  // not acquired
  identity->second.built = true;
  auto it = sets_.find(set.name);
  if (it == sets_.end()) {
    if (changes_ != nullptr) changes_->try_emplace(set.name, std::nullopt);
    std::string name = set.name;
    sets_.emplace(std::move(name), std::move(set));
  } else if (it->second != set) {
    if (changes_ != nullptr) changes_->try_emplace(set.name, std::move(it->second));
    it->second = std::move(set);
  }
}

void SharedSets::Release(const std::string& name) {
  auto identity = identities_.find(name);
  if (identity == identities_.end()) return;
  if (--identity->second.uses > 0) return;
  identities_.erase(identity);
  auto set = sets_.extract(name);
  if (!set.empty() && changes_ != nullptr) changes_->try_emplace(name, std::move(set.mapped()));
}

void SharedSets::Clear() {
  identities_.clear();
  changes_ = nullptr;
}

size_t SharedSets::uses(const std::string& name) const {
  auto it = identities_.find(name);
  return it == identities_.end() ? 0 : it->second.uses;
}

}  // namespace kr::netpol::compiler_internal
