// SPDX-License-Identifier: Apache-2.0
// The sandbox node agent's API client: JSON requests to the sandbox's API server, with the
// address and credentials of a kubeconfig (token or client certificate). Every request has a
// deadline.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kube_router/base/status.h"
#include "kube_router/net/http_client.h"

namespace sandbox {

using nlohmann::json;

struct Reply {
  int status = 0;
  json body;  // null when the body was not JSON
};

class Api {
 public:
  static kr::Result<std::unique_ptr<Api>> FromKubeconfig(const std::string& path);

  // One request; transport failures are errors, HTTP errors are in Reply::status.
  kr::Result<Reply> Call(const std::string& method, const std::string& path,
                         const json& body = nullptr,
                         const std::string& content_type = "application/json");
  // The items of a list (GET of a collection); an error unless the server answered 200.
  kr::Result<json> List(const std::string& path);
  kr::Result<Reply> MergePatch(const std::string& path, const json& patch) {
    return Call("PATCH", path, patch, "application/merge-patch+json");
  }

 private:
  std::shared_ptr<kr::net::HttpClient> http_;
  std::string token_;
};

}  // namespace sandbox
