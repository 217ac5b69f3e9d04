// Label sets of cached objects, shared between objects that carry the same set (docs/memory.md:
// a Deployment's pods, the Services of one application carry identical labels). The decoders
// give equal sets one copy through LabelSetPool; a SharedLabels reads like the std::map it
// holds, and a write (tests, benchmarks building objects) copies first, so changing one
// object's labels never changes another's.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace kr::k8s {

using Labels = std::map<std::string, std::string>;

class SharedLabels {
 public:
  using key_type = Labels::key_type;
  using mapped_type = Labels::mapped_type;
  using value_type = Labels::value_type;
  using size_type = Labels::size_type;
  using const_iterator = Labels::const_iterator;
  using iterator = const_iterator;  // reads only: writes go through operator[] and erase

  SharedLabels() = default;
  // Implicit, as the map it replaces: `meta.labels = Labels{...}` and `= {{"k", "v"}}`.
  SharedLabels(Labels labels);  // NOLINT(google-explicit-constructor)
  SharedLabels(std::initializer_list<value_type> labels) : SharedLabels(Labels(labels)) {}

  // Reads as the map (selectors take `const Labels&`).
  const Labels& get() const { return labels_ ? *labels_ : Empty(); }
  operator const Labels&() const { return get(); }  // NOLINT(google-explicit-constructor)
  const_iterator begin() const { return get().begin(); }
  const_iterator end() const { return get().end(); }
  const_iterator find(const std::string& key) const { return get().find(key); }
  bool contains(const std::string& key) const { return get().contains(key); }
  size_type count(const std::string& key) const { return get().count(key); }
  const std::string& at(const std::string& key) const { return get().at(key); }
  size_type size() const { return get().size(); }
  bool empty() const { return get().empty(); }

  // Writes: on a copy of its own unless this object already holds the only, unpooled copy.
  std::string& operator[](const std::string& key) { return Mutable()[key]; }
  size_type erase(const std::string& key) { return Mutable().erase(key); }

  // True when both hold the very same copy (tests of the sharing).
  bool SharesWith(const SharedLabels& other) const {
    return labels_ != nullptr && labels_ == other.labels_;
  }

  friend bool operator==(const SharedLabels& a, const SharedLabels& b) {
    return a.labels_ == b.labels_ || a.get() == b.get();
  }
  friend bool operator==(const SharedLabels& a, const Labels& b) { return a.get() == b; }

 private:
  friend class LabelSetPool;
  static const Labels& Empty();
  Labels& Mutable();

  std::shared_ptr<const Labels> labels_;  // null: no labels
  // Made by this object (not from the pool, which may hand the same copy out again): with no
  // other owner it can be written in place.
  bool owned_ = false;
};

// Hands out one shared copy per distinct label set among the sets still held by some object.
// Thread-safe (informers decode on several threads). Bounded by the sets alive: entries of
// sets no object holds any more are dropped whenever the table has doubled since the last
// sweep.
class LabelSetPool {
 public:
  // The pool the decoders use.
  static LabelSetPool& Default();

  SharedLabels Share(Labels labels);
  // Distinct sets the pool currently tracks (dead ones until the next sweep included).
  size_t TrackedSets() const;

 private:
  void SweepLocked();

  mutable std::mutex mu_;
  std::unordered_multimap<size_t, std::weak_ptr<const Labels>> sets_;  // by content hash
  size_t sweep_at_ = 1024;
};

}  // namespace kr::k8s
