// Kubernetes label selector semantics (matchLabels AND matchExpressions).
#pragma once

#include "kube_router/base/status.h"
#include "kube_router/k8s/types.h"

namespace kr::netpol {

// Rejects what the API server would reject: an unknown operator, In/NotIn without values,
// Exists/DoesNotExist with values, an empty key.
Status ValidateSelector(const k8s::LabelSelector& selector);

// An empty selector matches everything. Callers validate first; an invalid requirement
// matches nothing (so a broken peer allows nothing).
bool SelectorMatches(const k8s::LabelSelector& selector, const k8s::Labels& labels);

}  // namespace kr::netpol
