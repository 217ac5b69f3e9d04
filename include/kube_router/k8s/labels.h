// Label sets of cached objects, shared between objects that carry the same set (docs/memory.md:
// a Deployment's pods, the Services of one application carry identical labels). The decoders
// give equal sets one copy through LabelSetPool; a SharedLabels reads like the std::map it
// holds, and a write (tests, benchmarks building objects) copies first, so changing one
// object's labels never changes another's.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace kr::k8s {

// One shared, immutable copy per distinct value among the values some owner still holds: a table
// of weak references by the value's hash, so the table owns nothing. Entries of values no owner
// holds any more are dropped whenever the table has doubled since the last sweep, so it stays
// within twice the live values (and 1024). Thread-safe. LabelSetPool and StringPool are this
// table over label sets and over strings.
template <typename T>
class WeakInternTable {
 public:
  // The held copy equal to `value` (T == Value), or a new one made from it.
  template <typename Value>
  std::shared_ptr<const T> Intern(size_t hash, Value&& value) {
    std::lock_guard lock(mu_);
    auto [first, last] = entries_.equal_range(hash);
    for (auto it = first; it != last; ++it) {
      if (auto held = it->second.lock(); held && *held == value) return held;
    }
    auto made = std::make_shared<const T>(std::forward<Value>(value));
    entries_.emplace(hash, made);
    if (entries_.size() >= sweep_at_) {
      std::erase_if(entries_, [](const auto& entry) { return entry.second.expired(); });
      sweep_at_ = std::max<size_t>(1024, 2 * entries_.size());
    }
    return made;
  }

  // Distinct values tracked (dead ones until the next sweep included).
  size_t Tracked() const {
    std::lock_guard lock(mu_);
    return entries_.size();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_multimap<size_t, std::weak_ptr<const T>> entries_;  // by hash
  size_t sweep_at_ = 1024;
};

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

// Hands out one shared copy per distinct label set among the sets still held by some object
// (a WeakInternTable: bounded by the sets alive). Thread-safe (informers decode on several
// threads).
class LabelSetPool {
 public:
  // The pool the decoders use.
  static LabelSetPool& Default();

  SharedLabels Share(Labels labels);
  // Distinct sets the pool currently tracks (dead ones until the next sweep included).
  size_t TrackedSets() const { return sets_.Tracked(); }

 private:
  WeakInternTable<Labels> sets_;  // by content hash
};

// An immutable string shared by the cached objects that carry the same value (an endpoint's
// node name: 100,000 endpoints name a few hundred nodes; a Service's type, a port's protocol and
// name: a handful of values; docs/memory.md). 16 B in the object instead of std::string's 32,
// the text once per distinct value when it comes from a StringPool. It reads as the
// std::string it holds; assigning a new value replaces the reference, so changing one
// object's value never changes another's.
class SharedString {
 public:
  SharedString() = default;
  // Implicit, as the std::string it replaces (`endpoint.node_name = "n1"`); not pooled.
  SharedString(std::string text);  // NOLINT(google-explicit-constructor)
  SharedString(const char* text) : SharedString(std::string(text)) {}  // NOLINT

  const std::string& get() const { return text_ ? *text_ : Empty(); }
  operator const std::string&() const { return get(); }  // NOLINT(google-explicit-constructor)
  bool empty() const { return get().empty(); }
  size_t size() const { return get().size(); }

  // True when both hold the very same copy (tests of the sharing).
  bool SharesWith(const SharedString& other) const {
    return text_ != nullptr && text_ == other.text_;
  }

  friend bool operator==(const SharedString& a, const SharedString& b) {
    return a.text_ == b.text_ || a.get() == b.get();
  }
  friend bool operator==(const SharedString& a, const std::string& b) { return a.get() == b; }
  friend bool operator==(const SharedString& a, const char* b) { return a.get() == b; }
  friend bool operator==(const SharedString& a, std::string_view b) { return a.get() == b; }
  friend auto operator<=>(const SharedString& a, const SharedString& b) {
    return a.get() <=> b.get();
  }
  friend auto operator<=>(const SharedString& a, const std::string& b) { return a.get() <=> b; }
  // As std::string's (messages quoting a value).
  friend std::string operator+(const std::string& a, const SharedString& b) { return a + b.get(); }
  friend std::string operator+(const char* a, const SharedString& b) { return a + b.get(); }
  friend std::string operator+(const SharedString& a, const std::string& b) { return a.get() + b; }
  friend std::string operator+(const SharedString& a, const char* b) { return a.get() + b; }
  friend std::ostream& operator<<(std::ostream& os, const SharedString& s) { return os << s.get(); }

 private:
  friend class StringPool;
  static const std::string& Empty();

  std::shared_ptr<const std::string> text_;  // null: the empty string
};

// Hands out one shared copy per distinct string among those still held by some object, as
// LabelSetPool does for label sets (the same WeakInternTable). Thread-safe.
class StringPool {
 public:
  // The pool the decoders use (node names, enum-like fields, port names).
  static StringPool& Default();

  SharedString Share(std::string_view text);
  // Distinct strings the pool currently tracks (dead ones until the next sweep included).
  size_t TrackedStrings() const { return strings_.Tracked(); }

 private:
  WeakInternTable<std::string> strings_;
};

}  // namespace kr::k8s
