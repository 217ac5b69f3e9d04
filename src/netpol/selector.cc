#include "kube_router/netpol/selector.h"

#include <algorithm>

namespace kr::netpol {

Status ValidateSelector(const k8s::LabelSelector& selector) {
  for (const auto& req : selector.match_expressions) {
    if (req.key.empty()) return Status::Error("a matchExpressions entry has an empty key");
    if (req.op == "In" || req.op == "NotIn") {
      if (req.values.empty()) {
        return Status::Error("operator " + req.op + " on key " + req.key + " needs values");
      }
    } else if (req.op == "Exists" || req.op == "DoesNotExist") {
      if (!req.values.empty()) {
        return Status::Error("operator " + req.op + " on key " + req.key + " takes no values");
      }
    } else {
      return Status::Error("unknown selector operator \"" + req.op + "\" on key " + req.key);
    }
  }
  return Status::Ok();
}

bool SelectorMatches(const k8s::LabelSelector& selector, const k8s::Labels& labels) {
  for (const auto& [key, value] : selector.match_labels) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  for (const auto& req : selector.match_expressions) {
    auto it = labels.find(req.key);
    bool has = it != labels.end();
    auto in_values = [&] {
      return has && std::find(req.values.begin(), req.values.end(), it->second) != req.values.end();
    };
    if (req.op == "In") {
      if (req.values.empty() || !in_values()) return false;
    } else if (req.op == "NotIn") {
      if (req.values.empty() || in_values()) return false;
    } else if (req.op == "Exists") {
      if (!req.values.empty() || !has) return false;
    } else if (req.op == "DoesNotExist") {
      if (!req.values.empty() || has) return false;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace kr::netpol
