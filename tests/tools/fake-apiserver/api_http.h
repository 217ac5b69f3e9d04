// SPDX-License-Identifier: Apache-2.0
// What the API handlers share: JSON and Status answers, and what an API path names.
#pragma once

#include <httplib.h>

#include <optional>
#include <string>
#include <variant>

#include "object_store.h"

namespace fake_apiserver {

void SendJson(httplib::Response& res, int code, const json& body);
// A Status object with the error's code (429s carry Retry-After: 1).
void SendError(httplib::Response& res, const ApiError& e);

template <typename T>
void SendOutcome(httplib::Response& res, Outcome<T>& outcome, int ok_code = 200) {
  if (auto* e = std::get_if<ApiError>(&outcome)) return SendError(res, *e);
  SendJson(res, ok_code, std::get<T>(outcome));
}

// What an API path names: a collection, an object or its status.
struct Target {
  const ResourceType* type = nullptr;
  std::string namespace_;
  std::string name;
  bool status = false;
};

// /api/v1/... or /apis/<group>/<version>/...: nullopt if not a resource path.
std::optional<Target> ParseTarget(const std::string& path);

}  // namespace fake_apiserver
