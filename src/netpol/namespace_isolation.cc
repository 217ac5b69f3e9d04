// The beta namespace annotation (see namespace_isolation.h).
#include "namespace_isolation.h"

#include <nlohmann/json.hpp>

#include "kube_router/netpol/compiler.h"

namespace kr::netpol::compiler_internal {

namespace {

// The beta values are a few dozen bytes; a longer one is not worth parsing (annotations may
// hold up to 256 KiB).
constexpr size_t kMaxAnnotationBytes = 1024;

BetaIsolation Broken(const k8s::Namespace& ns, const std::string& why) {
  return {true, "Namespace " + ns.meta.name + ": annotation " + kBetaIsolationAnnotation + " " +
                    why +
                    "; its pods' ingress is isolated (fail closed) until the annotation is fixed "
                    "or removed (the beta API defines only {\"ingress\": {\"isolation\": "
                    "\"DefaultDeny\"}})"};
}

}  // namespace

BetaIsolation ReadBetaIsolation(const k8s::Namespace& ns) {
  auto found = ns.meta.annotations.find(kBetaIsolationAnnotation);
  if (found == ns.meta.annotations.end()) return {};
  const std::string& text = found->second;
  if (text.size() > kMaxAnnotationBytes) {
    return Broken(ns, "is longer than " + std::to_string(kMaxAnnotationBytes) + " bytes");
  }
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Broken(ns, "is not JSON");
  if (!value.is_object()) return Broken(ns, "is not a JSON object");
  auto ingress = value.find("ingress");
  if (ingress == value.end()) return {};
  if (!ingress->is_object()) return Broken(ns, "has an \"ingress\" that is not an object");
  auto isolation = ingress->find("isolation");
  if (isolation == ingress->end()) return {};
  if (!isolation->is_string()) return Broken(ns, "has an \"isolation\" that is not a string");
  if (isolation->get_ref<const std::string&>() == "DefaultDeny") return {true, ""};
  return Broken(ns, "has the unknown isolation " + isolation->dump());
}

}  // namespace kr::netpol::compiler_internal
