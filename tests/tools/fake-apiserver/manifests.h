// SPDX-License-Identifier: Apache-2.0
// Reads Kubernetes manifests (YAML with several documents, or JSON; `kind: List` is expanded)
// from files and directories into JSON objects.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fake_apiserver {

// Objects from a file, or from every *.yaml/*.yml/*.json file of a directory (sorted by
// name). On error returns false and sets `error` to a message naming the file.
bool LoadManifests(const std::string& path, std::vector<nlohmann::json>* objects,
                   std::string* error);

}  // namespace fake_apiserver
