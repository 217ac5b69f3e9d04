// Thread-safe caches of decoded objects, keyed "namespace/name". Informers write; controllers
// read. Objects are immutable once stored (shared_ptr<const T>), so a reader may keep one as
// long as it likes; List() returns a consistent snapshot of the whole store.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kube_router/k8s/types.h"

namespace kr::k8s {

template <typename T>
class Store {
 public:
  using Ptr = std::shared_ptr<const T>;
  // Maps an object to the index values it is filed under (e.g. a Pod to its namespace).
  using IndexFunc = std::function<std::vector<std::string>(const T&)>;

  // Indexes must be added before the first write.
  void AddIndex(const std::string& name, IndexFunc fn) {
    std::unique_lock lock(mu_);
    indexes_[name].fn = std::move(fn);
  }

  // Inserts or replaces; returns the previous object (null if none).
  Ptr Upsert(const std::string& key, Ptr object) {
    std::unique_lock lock(mu_);
    Ptr old;
    auto it = items_.find(key);
    if (it != items_.end()) {
      old = it->second;
      Unindex(*it);
      it->second = std::move(object);
    } else {
      it = items_.emplace(key, std::move(object)).first;
    }
    Index(*it);
    return old;
  }

  // Removes; returns the removed object (null if absent).
  Ptr Remove(const std::string& key) {
    std::unique_lock lock(mu_);
    auto it = items_.find(key);
    if (it == items_.end()) return nullptr;
    Ptr old = it->second;
    Unindex(*it);
    items_.erase(it);
    return old;
  }

  Ptr Get(const std::string& key) const {
    std::shared_lock lock(mu_);
    auto it = items_.find(key);
    return it == items_.end() ? nullptr : it->second;
  }

  std::vector<Ptr> List() const {
    list_calls_.fetch_add(1, std::memory_order_relaxed);
    std::shared_lock lock(mu_);
    std::vector<Ptr> out;
    out.reserve(items_.size());
    for (const auto& [key, obj] : items_) out.push_back(obj);
    return out;
  }

  std::vector<std::string> Keys() const {
    std::shared_lock lock(mu_);
    std::vector<std::string> out;
    out.reserve(items_.size());
    for (const auto& [key, obj] : items_) out.push_back(key);
    return out;
  }

  // Objects filed under `value` in index `name`, in key order (empty for an unknown index).
  std::vector<Ptr> ByIndex(const std::string& name, const std::string& value) const {
    std::shared_lock lock(mu_);
    std::vector<Ptr> out;
    auto idx = indexes_.find(name);
    if (idx == indexes_.end()) return out;
    auto bucket = idx->second.buckets.find(value);
    if (bucket == idx->second.buckets.end()) return out;
    out.reserve(bucket->second.size());
    for (const Item* item : bucket->second) out.push_back(item->second);
    return out;
  }

  size_t Size() const {
    std::shared_lock lock(mu_);
    return items_.size();
  }

  // How many times List() was called: lets tests prove how often a sync reads a whole kind.
  uint64_t ListCalls() const { return list_calls_.load(std::memory_order_relaxed); }

 private:
  using Items = std::unordered_map<std::string, Ptr>;
  using Item = typename Items::value_type;

  // An index files the items themselves, not copies of their keys (docs/memory.md): a bucket
  // holds pointers to entries of items_, whose nodes stay put until erased, and an entry is
  // unindexed before its object is replaced or the entry erased. Buckets are sorted by key, so
  // ByIndex answers in key order.
  struct IndexData {
    IndexFunc fn;
    std::unordered_map<std::string, std::vector<const Item*>> buckets;  // value -> items
  };
  static bool KeyLess(const Item* a, const std::string& key) { return a->first < key; }

  void Index(const Item& item) {
    for (auto& [name, idx] : indexes_) {
      for (const auto& v : idx.fn(*item.second)) {
        auto& bucket = idx.buckets[v];
        auto at = std::lower_bound(bucket.begin(), bucket.end(), item.first, KeyLess);
        if (at == bucket.end() || *at != &item) bucket.insert(at, &item);
      }
    }
  }
  void Unindex(const Item& item) {
    for (auto& [name, idx] : indexes_) {
      for (const auto& v : idx.fn(*item.second)) {
        auto b = idx.buckets.find(v);
        if (b == idx.buckets.end()) continue;
        auto& bucket = b->second;
        auto at = std::lower_bound(bucket.begin(), bucket.end(), item.first, KeyLess);
        if (at != bucket.end() && *at == &item) bucket.erase(at);
        if (bucket.empty()) {
          idx.buckets.erase(b);
        } else if (bucket.capacity() > 2 * bucket.size()) {
          bucket.shrink_to_fit();  // a bucket that held many items gives the space back
        }
      }
    }
  }

  mutable std::shared_mutex mu_;
  mutable std::atomic<uint64_t> list_calls_{0};
  Items items_;
  std::map<std::string, IndexData> indexes_;
};

// Index names set up by MakeCluster(): only those a controller reads (the service proxy). The
// firewall compiles from a snapshot with its own index (docs/netpol.md), so there are no
// namespace or label indexes here.
inline constexpr char kIndexNodeName[] = "node";        // Pods by spec.nodeName
inline constexpr char kIndexServiceName[] = "service";  // Slices by "ns/service-name"
inline constexpr char kIndexPodIp[] = "podip";          // Pods by each status.podIPs address

// Every cache the controllers read. Informers fill it; controllers only read it.
struct Cluster {
  Store<Service> services;
  Store<EndpointSlice> endpoint_slices;
  Store<Pod> pods;
  Store<Node> nodes;
  Store<Namespace> namespaces;
  Store<NetworkPolicy> network_policies;
  // Set by the NetworkPolicy informer when the server has no networking.k8s.io/v1 and the
  // policies come from extensions/v1beta1 (API servers older than 1.7): beta semantics.
  std::atomic<bool> network_policies_beta_api{false};
};

// A Cluster with the standard indexes installed.
std::unique_ptr<Cluster> MakeCluster();

}  // namespace kr::k8s
