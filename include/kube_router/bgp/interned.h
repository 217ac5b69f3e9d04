// SPDX-License-Identifier: Apache-2.0
// Hash-consing for the RIBs: an Interner<T> keeps one immutable copy of each distinct value and
// hands out reference-counted handles (Interned<T>) to it. Most routes from one peer carry the
// same attributes, so a table of 100,000 paths holds a handful of attribute sets, each once.
//
// Handles are immutable: a path whose attributes change (import/export policy, next-hop
// rewrite) interns the new value and gets another handle; every other holder of the old one
// keeps it unchanged. The last handle dropped frees the value. Equal handles <=> equal values
// (for handles of one interner), so comparing paths is a pointer comparison.
//
// Not thread-safe (plain counters): one interner and its handles belong to one thread, the
// speaker's. Values leave that thread as copies (Route).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>

namespace kr::bgp {

template <typename T>
class Interner;

template <typename T>
class Interned {
 public:
  Interned() = default;
  Interned(const Interned& o) : node_(o.node_) { Acquire(); }
  Interned(Interned&& o) noexcept : node_(std::exchange(o.node_, nullptr)) {}
  Interned& operator=(Interned o) noexcept {
    std::swap(node_, o.node_);
    return *this;
  }
  ~Interned() { Release(); }

  const T& operator*() const { return node_->value; }
  const T* operator->() const { return &node_->value; }
  const T* get() const { return node_ ? &node_->value : nullptr; }
  explicit operator bool() const { return node_ != nullptr; }
  // Handles to the same interned value (== equal values within one interner).
  bool operator==(const Interned& o) const { return node_ == o.node_; }
  size_t use_count() const { return node_ ? node_->refs : 0; }

 private:
  friend class Interner<T>;
  struct Node {
    T value;
    size_t hash;
    uint32_t refs;
    Interner<T>* owner;  // null once the interner is gone
  };
  explicit Interned(Node* node) : node_(node) { Acquire(); }
  void Acquire() {
    if (node_) ++node_->refs;
  }
  void Release() {
    if (!node_ || --node_->refs > 0) return;
    if (node_->owner) node_->owner->Forget(node_);
    delete node_;
    node_ = nullptr;
  }
  Node* node_ = nullptr;
};

// `Hash` maps a T to size_t; T must have operator==.
template <typename T>
class Interner {
 public:
  using Hash = size_t (*)(const T&);
  explicit Interner(Hash hash) : hash_(hash) {}
  Interner(const Interner&) = delete;
  Interner& operator=(const Interner&) = delete;
  ~Interner() {
    // Handles that outlive the interner (none should) still free their value.
    for (auto& [h, node] : nodes_) node->owner = nullptr;
  }

  // The handle of the value equal to `value`, interning it if it is new.
  Interned<T> Intern(T value) {
    const size_t h = hash_(value);
    auto [first, last] = nodes_.equal_range(h);
    for (auto it = first; it != last; ++it)
      if (it->second->value == value) return Interned<T>(it->second);
    auto* node = new typename Interned<T>::Node{std::move(value), h, 0, this};
    nodes_.emplace(h, node);
    return Interned<T>(node);
  }
  // Distinct values alive.
  size_t size() const { return nodes_.size(); }

 private:
  friend class Interned<T>;
  void Forget(typename Interned<T>::Node* node) {
    auto [first, last] = nodes_.equal_range(node->hash);
    for (auto it = first; it != last; ++it) {
      if (it->second == node) {
        nodes_.erase(it);
        return;
      }
    }
  }
  Hash hash_;
  std::unordered_multimap<size_t, typename Interned<T>::Node*> nodes_;
};

}  // namespace kr::bgp
