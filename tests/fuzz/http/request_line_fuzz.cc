// Fuzzes the request-head parser of the health/metrics HTTP server: never crashes, and an
// accepted request line always yields an upper-case method and an absolute path.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kube_router/http/server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string head(reinterpret_cast<const char*>(data), size);
  auto line = kr::http::ParseRequestLine(head);
  if (!line.ok()) return 0;
  if (line->method.empty() || line->path.empty() || line->path[0] != '/') std::abort();
  if (line->path.find('?') != std::string::npos || line->path.find(' ') != std::string::npos) {
    std::abort();
  }
  for (char c : line->method) {
    if (c < 'A' || c > 'Z') std::abort();
  }
  kr::http::Response response{200, "text/plain", line->path};
  std::string wire = kr::http::FormatResponse(response, line->method != "HEAD");
  if (wire.rfind("HTTP/1.1 200 OK\r\n", 0) != 0) std::abort();
  return 0;
}
