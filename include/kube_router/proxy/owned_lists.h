// Per-Service lists of small entries (the proxy extensions' VIP:ports, hairpin rules, metric
// targets), compact (issue 14, docs/memory.md "The extensions' per-Service lists"): each owner's
// name is held once, in a table indexed by a 4 B id; the lists of all owners are one pair of flat
// vectors (per row the owner's id and the entry) sorted by id. A std::map<ServiceName,
// std::vector<Entry>> spent a ~128 B node (32 B of node, the 64 B name, a 24 B vector header) and
// a chunk for the vector per owner; this spends the name, 4 B of name order and 4 B a row.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <utility>
#include <vector>

#include "kube_router/proxy/service_model.h"

namespace kr::proxy {

template <typename Entry>
class OwnedLists {
 public:
  using Batch = std::vector<std::pair<ServiceName, std::vector<Entry>>>;

  // The owner's list as last given (empty: none). Valid until the next Replace or Clear.
  std::span<const Entry> Get(const ServiceName& owner) const {
    auto pos = FindByName(owner);
    if (pos == by_name_.end() || names_[*pos] != owner) return {};
    auto [lo, hi] = Rows(*pos);
    return {entries_.data() + lo, hi - lo};
  }
  size_t owners() const { return by_name_.size(); }
  size_t rows() const { return entries_.size(); }
  bool empty() const { return by_name_.empty(); }

  // f(const ServiceName&, std::span<const Entry>) per owner with a list, in name order.
  template <typename F>
  void ForEach(F&& f) const {
    for (uint32_t id : by_name_) {
      auto [lo, hi] = Rows(id);
      f(names_[id], std::span<const Entry>(entries_.data() + lo, hi - lo));
    }
  }

  // Keeps the last list of an owner the batch names more than once, and sorts the batch by name.
  static void LastPerOwner(Batch& batch) {
    std::stable_sort(batch.begin(), batch.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    size_t out = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i + 1 < batch.size() && batch[i + 1].first == batch[i].first) continue;
      if (out != i) batch[out] = std::move(batch[i]);
      ++out;
    }
    batch.resize(out);
  }

  // Replaces the lists of the batch's owners (an empty list: the owner goes); an owner given
  // twice keeps its last list. Up to kInPlace owners are changed in place (a lookup each, and
  // moving the rows behind theirs when a list's length changes); more in one merge of the whole.
  void Replace(Batch batch) {
    LastPerOwner(batch);
    if (batch.size() <= kInPlace) {
      for (auto& [name, list] : batch) ReplaceOne(name, std::move(list));
      return;
    }
    ReplaceMany(std::move(batch));
  }

  void Clear() {
    names_ = {};
    free_ = {};
    by_name_ = {};
    owner_ = {};
    entries_ = {};
  }

 private:
  static constexpr size_t kInPlace = 16;

  std::vector<uint32_t>::const_iterator FindByName(const ServiceName& name) const {
    return std::lower_bound(by_name_.begin(), by_name_.end(), name,
                            [this](uint32_t id, const ServiceName& n) { return names_[id] < n; });
  }
  // The rows of `id`: [lo, hi) (empty at where they would go when it has none).
  std::pair<size_t, size_t> Rows(uint32_t id) const {
    auto [lo, hi] = std::equal_range(owner_.begin(), owner_.end(), id);
    return {static_cast<size_t>(lo - owner_.begin()), static_cast<size_t>(hi - owner_.begin())};
  }
  uint32_t NewId(const ServiceName& name) {
    if (!free_.empty()) {
      uint32_t id = free_.back();
      free_.pop_back();
      names_[id] = name;
      return id;
    }
    names_.push_back(name);
    return static_cast<uint32_t>(names_.size() - 1);
  }
  void Release(uint32_t id) {
    names_[id] = ServiceName{};
    free_.push_back(id);
  }
  // Room for `more` elements, growing by an eighth rather than doubling.
  template <typename T>
  static void Grow(std::vector<T>& v, size_t more) {
    if (v.size() + more > v.capacity()) v.reserve(v.size() + std::max(more, v.size() / 8));
  }

  void ReplaceOne(const ServiceName& name, std::vector<Entry> list) {
    auto pos = FindByName(name);
    const bool found = pos != by_name_.end() && names_[*pos] == name;
    if (!found && list.empty()) return;
    uint32_t id;
    if (found) {
      id = *pos;
    } else {
      const size_t at = static_cast<size_t>(pos - by_name_.begin());
      id = NewId(name);
      Grow(by_name_, 1);
      by_name_.insert(by_name_.begin() + static_cast<std::ptrdiff_t>(at), id);
    }
    auto [lo, hi] = Rows(id);
    const size_t old = hi - lo;
    const size_t now = list.size();
    const auto end = static_cast<std::ptrdiff_t>(hi);
    if (now > old) {
      Grow(owner_, now - old);
      Grow(entries_, now - old);
      owner_.insert(owner_.begin() + end, now - old, id);
      entries_.insert(entries_.begin() + end, now - old, Entry{});
    } else if (now < old) {
      const auto from = static_cast<std::ptrdiff_t>(lo + now);
      owner_.erase(owner_.begin() + from, owner_.begin() + end);
      entries_.erase(entries_.begin() + from, entries_.begin() + end);
    }
    std::move(list.begin(), list.end(), entries_.begin() + static_cast<std::ptrdiff_t>(lo));
    if (list.empty()) {  // (found: `pos` is still its place in the name order)
      by_name_.erase(pos);
      Release(id);
    }
  }

  // `batch`: sorted by name, one list per owner.
  void ReplaceMany(Batch batch) {
    std::vector<std::pair<uint32_t, std::vector<Entry>*>> changes;  // sorted by id below
    std::vector<uint32_t> added;                                    // in name order
    std::vector<uint32_t> gone;
    changes.reserve(batch.size());
    // Each owner's id, or kNoId for an owner not held yet (by_name_ does not change until the
    // end, so one lookup each serves both passes).
    constexpr uint64_t kNoId = UINT64_MAX;
    std::vector<uint64_t> held(batch.size(), kNoId);
    size_t fresh = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& [name, list] = batch[i];
      auto pos = FindByName(name);
      if (pos != by_name_.end() && names_[*pos] == name) {
        held[i] = *pos;
      } else if (!list.empty()) {
        ++fresh;
      }
    }
    // Room for the new names first: a full sync's 10k names do not double the table.
    if (fresh > free_.size()) names_.reserve(names_.size() + fresh - free_.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& [name, list] = batch[i];
      const bool found = held[i] != kNoId;
      if (!found && list.empty()) continue;
      uint32_t id;
      if (found) {
        id = static_cast<uint32_t>(held[i]);
        if (list.empty()) gone.push_back(id);
      } else {
        id = NewId(name);
        added.push_back(id);
      }
      changes.emplace_back(id, &list);
    }
    std::sort(changes.begin(), changes.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    // The rows: one merge of the kept rows and the changed owners' new ones.
    size_t rows = entries_.size();
    for (const auto& [id, list] : changes) {
      auto [lo, hi] = Rows(id);
      rows = rows - (hi - lo) + list->size();
    }
    std::vector<uint32_t> owner;
    std::vector<Entry> entries;
    owner.reserve(rows);
    entries.reserve(rows);
    size_t r = 0;
    for (const auto& [id, list] : changes) {
      for (; r < owner_.size() && owner_[r] < id; ++r) {
        owner.push_back(owner_[r]);
        entries.push_back(std::move(entries_[r]));
      }
      for (; r < owner_.size() && owner_[r] == id; ++r) {
      }
      for (auto& e : *list) {
        owner.push_back(id);
        entries.push_back(std::move(e));
      }
    }
    for (; r < owner_.size(); ++r) {
      owner.push_back(owner_[r]);
      entries.push_back(std::move(entries_[r]));
    }
    owner_ = std::move(owner);
    entries_ = std::move(entries);
    // The name order: the gone ones out, the added ones merged in.
    std::sort(gone.begin(), gone.end());
    std::erase_if(by_name_,
                  [&](uint32_t id) { return std::binary_search(gone.begin(), gone.end(), id); });
    std::vector<uint32_t> by_name;
    by_name.reserve(by_name_.size() + added.size());
    std::merge(by_name_.begin(), by_name_.end(), added.begin(), added.end(),
               std::back_inserter(by_name),
               [this](uint32_t a, uint32_t b) { return names_[a] < names_[b]; });
    by_name_ = std::move(by_name);
    for (uint32_t id : gone) Release(id);
  }

  std::vector<ServiceName> names_;  // by id; a free id's name is empty
  std::vector<uint32_t> free_;      // ids to hand out again
  std::vector<uint32_t> by_name_;   // the owners' ids, sorted by their names
  std::vector<uint32_t> owner_;     // per row its owner's id; the rows are sorted by id
  std::vector<Entry> entries_;      // per row its entry; an owner's in the order given
};

}  // namespace kr::proxy
