// Private to the netpol compiler: NetworkPolicy beta semantics for namespaces. A namespace
// annotated net.beta.kubernetes.io/network-policy={"ingress":{"isolation":"DefaultDeny"}}
// isolates the ingress of all its pods (--netpol-beta-namespace-isolation; docs/netpol.md).
#pragma once

#include <string>

#include "kube_router/k8s/types.h"

namespace kr::netpol::compiler_internal {

struct BetaIsolation {
  bool ingress_isolated = false;
  // Non-empty when the annotation could not be read: "Namespace <name>: ..." (it then isolates:
  // the annotation has no other meaning than DefaultDeny, so a broken one fails closed).
  std::string problem;
};

// What the namespace's beta annotation says. No annotation, `{}` or an `ingress` without
// `isolation`: not isolated. `"isolation": "DefaultDeny"`: isolated. Anything else: a problem.
BetaIsolation ReadBetaIsolation(const k8s::Namespace& ns);

}  // namespace kr::netpol::compiler_internal
