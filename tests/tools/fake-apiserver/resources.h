// SPDX-License-Identifier: Apache-2.0
// The resource types fake-apiserver serves: REST names, kinds and scopes, as the real API
// server's discovery documents describe them.
#pragma once

#include <string>
#include <vector>

namespace fake_apiserver {

struct ResourceType {
  std::string group;  // "" for the core group
  std::string version;
  std::string plural;  // REST path segment
  std::string singular;
  std::string kind;
  bool namespaced = true;
  std::vector<std::string> short_names;

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
  std::string ListKind() const { return kind + "List"; }
};

const std::vector<ResourceType>& AllResources();
// Serves NetworkPolicies under extensions/v1beta1 only, as API servers before 1.7 did (call
// before serving anything).
void ServeNetworkPoliciesAsBeta();
// nullptr when unknown.
const ResourceType* FindByPath(const std::string& group, const std::string& version,
                               const std::string& plural);
const ResourceType* FindByKind(const std::string& api_version, const std::string& kind);

}  // namespace fake_apiserver
