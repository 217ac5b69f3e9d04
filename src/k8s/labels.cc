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
  out.labels_ = sets_.Intern(hash, std::move(labels));
  return out;
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
  out.text_ = strings_.Intern(std::hash<std::string_view>()(text), text);
  return out;
}

}  // namespace kr::k8s
