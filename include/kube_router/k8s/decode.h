// SPDX-License-Identifier: Apache-2.0
// Decoders from Kubernetes JSON (as sent by the API server) into the plain types of types.h.
// Tolerant: unknown fields are ignored, `kind`/`apiVersion` may be missing (list items omit
// them), null counts as absent. Strict where the controllers would be misled: a field of the
// wrong JSON type, an out-of-range number or an object without metadata.name is an error that
// names the object (when its name is readable) and the offending field. Never throws.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "kube_router/base/status.h"
#include "kube_router/k8s/types.h"

namespace kr::k8s {

Result<Service> DecodeService(const nlohmann::json& object);
Result<EndpointSlice> DecodeEndpointSlice(const nlohmann::json& object);
Result<Pod> DecodePod(const nlohmann::json& object);
Result<Node> DecodeNode(const nlohmann::json& object);
Result<Namespace> DecodeNamespace(const nlohmann::json& object);
Result<NetworkPolicy> DecodeNetworkPolicy(const nlohmann::json& object);

// Decodes one object of `kind` into the matching AnyObject alternative.
Result<AnyObject> DecodeObject(ResourceKind kind, const nlohmann::json& object);
// Same from JSON text (a parse error is an error, not an exception).
Result<AnyObject> DecodeObjectText(ResourceKind kind, std::string_view json_text);

// metadata of any object (used for keys and resourceVersions of items that fail to decode).
Result<ObjectMeta> DecodeObjectMeta(const nlohmann::json& object);

// The metadata every AnyObject alternative carries (null for monostate).
const ObjectMeta* MetaOf(const AnyObject& object);

}  // namespace kr::k8s
