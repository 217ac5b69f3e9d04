#include "kube_router/k8s/labels.h"

#include <algorithm>
#include <functional>
#include <utility>

namespace kr::k8s {
namespace {

size_t HashOf(const Labels& labels) {
  size_t h = labels.size();
  std::hash<std::string> hash;
  for (const auto& [key, value] : labels) {
    // boost::hash_combine's mixing step, over each key and value in order.
    h ^= hash(key) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= hash(value) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  }
  return h;
}

}  // namespace

SharedLabels::SharedLabels(Labels labels) {
  if (labels.empty()) return;
  labels_ = std::make_shared<Labels>(std::move(labels));  // not const: Mutable() may write it
  owned_ = true;
}

const Labels& SharedLabels::Empty() {
  static const Labels kEmpty;
  return kEmpty;
}

Labels& SharedLabels::Mutable() {
  if (!labels_ || !owned_ || labels_.use_count() != 1) {
    labels_ = std::make_shared<Labels>(get());
    owned_ = true;
  }
  // Made non-const by make_shared above (or by the constructor) and held by this object alone.
  return const_cast<Labels&>(*labels_);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
}

LabelSetPool& LabelSetPool::Default() {
  static LabelSetPool* pool = new LabelSetPool();  // never destroyed: decoders run until exit
  return *pool;
}

SharedLabels LabelSetPool::Share(Labels labels) {
  SharedLabels out;
  if (labels.empty()) return out;
  const size_t hash = HashOf(labels);
  std::lock_guard lock(mu_);
  auto [first, last] = sets_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    if (auto held = it->second.lock(); held && *held == labels) {
      out.labels_ = std::move(held);
      return out;
    }
  }
  out.labels_ = std::make_shared<const Labels>(std::move(labels));
  sets_.emplace(hash, out.labels_);
  if (sets_.size() >= sweep_at_) SweepLocked();
  return out;
}

size_t LabelSetPool::TrackedSets() const {
  std::lock_guard lock(mu_);
  return sets_.size();
}

void LabelSetPool::SweepLocked() {
  std::erase_if(sets_, [](const auto& entry) { return entry.second.expired(); });
  sweep_at_ = std::max<size_t>(1024, 2 * sets_.size());
}

SharedString::SharedString(std::string text) {
  if (!text.empty()) text_ = std::make_shared<const std::string>(std::move(text));
}

const std::string& SharedString::Empty() {
  static const std::string kEmpty;
  return kEmpty;
}

StringPool& StringPool::Default() {
  static StringPool* pool = new StringPool();  // never destroyed: decoders run until exit
  return *pool;
}

SharedString StringPool::Share(std::string_view text) {
  SharedString out;
  if (text.empty()) return out;
  const size_t hash = std::hash<std::string_view>()(text);
  std::lock_guard lock(mu_);
  auto [first, last] = strings_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    if (auto held = it->second.lock(); held && *held == text) {
      out.text_ = std::move(held);
      return out;
    }
  }
  out.text_ = std::make_shared<const std::string>(text);
  strings_.emplace(hash, out.text_);
  if (strings_.size() >= sweep_at_) SweepLocked();
  return out;
}

size_t StringPool::TrackedStrings() const {
  std::lock_guard lock(mu_);
  return strings_.size();
}

void StringPool::SweepLocked() {
  std::erase_if(strings_, [](const auto& entry) { return entry.second.expired(); });
  sweep_at_ = std::max<size_t>(1024, 2 * strings_.size());
}

}  // namespace kr::k8s
