// SPDX-License-Identifier: Apache-2.0
#include "api_http.h"

#include <sstream>
#include <vector>

#include "resources.h"

namespace fake_apiserver {
namespace {

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/'))
    if (!part.empty()) out.push_back(part);
  return out;
}

}  // namespace

void SendJson(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

void SendError(httplib::Response& res, const ApiError& e) {
  if (e.code == 429) res.set_header("Retry-After", "1");
  SendJson(res, e.code, StatusBody(e));
}

std::optional<Target> ParseTarget(const std::string& path) {
  auto parts = Split(path);
  std::string group, version;
  size_t i;
  if (parts.size() >= 3 && parts[0] == "api") {
    version = parts[1];
    i = 2;
  } else if (parts.size() >= 4 && parts[0] == "apis") {
    group = parts[1];
    version = parts[2];
    i = 3;
  } else {
    return std::nullopt;
  }
  std::vector<std::string> rest(parts.begin() + i, parts.end());
  Target t;
  // namespaces/<ns>/<resource>/... addresses a namespaced resource.
  if (rest.size() >= 3 && rest[0] == "namespaces") {
    t.namespace_ = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
    t.type = FindByPath(group, version, rest[0]);
    if (!t.type || !t.type->namespaced) return std::nullopt;
  } else {
    t.type = FindByPath(group, version, rest[0]);
    if (!t.type) return std::nullopt;
  }
  if (rest.size() >= 2) t.name = rest[1];
  if (rest.size() == 3) {
    if (rest[2] != "status") return std::nullopt;
    t.status = true;
  }
  if (rest.size() > 3) return std::nullopt;
  return t;
}

}  // namespace fake_apiserver
