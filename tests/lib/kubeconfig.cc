#include "lib/kubeconfig.h"

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <system_error>

namespace kr::testing {
namespace {

struct Found {
  KubeconfigServer server;
  size_t at = 0;           // where the URL starts in the text
  size_t host_at = 0;      // where its host (brackets included) starts in the URL
  size_t host_length = 0;  // and how long it is
};

bool IsKeyStart(const std::string& text, size_t at) {
  return at == 0 || text[at - 1] == ' ' || text[at - 1] == '\n' || text[at - 1] == '{';
}

std::optional<Found> Find(const std::string& text) {
  const std::string key = "server:";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    if (!IsKeyStart(text, at)) continue;  // "tls-server-name:" and the like
    size_t begin = text.find_first_not_of(' ', at + key.size());
    if (begin == std::string::npos) return std::nullopt;
    if (text[begin] == '"' || text[begin] == '\'') ++begin;
    size_t end = text.find_first_of("\"' \t\r\n,}", begin);
    if (end == std::string::npos) end = text.size();
    const std::string url = text.substr(begin, end - begin);
    const size_t scheme = url.find("://");
    if (scheme == std::string::npos) continue;
    const size_t host_at = scheme + 3;
    const size_t authority_end = std::min(url.find('/', host_at), url.size());
    const size_t colon = url.rfind(':', authority_end);
    if (colon == std::string::npos || colon < host_at) continue;
    int port = 0;
    const char* port_end = url.data() + authority_end;
    auto [stop, error] = std::from_chars(url.data() + colon + 1, port_end, port);
    if (error != std::errc() || stop != port_end || port <= 0 || port > 65535) continue;
    std::string host = url.substr(host_at, colon - host_at);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (host.empty()) continue;
    return Found{{url, host, port}, begin, host_at, colon - host_at};
  }
  return std::nullopt;
}

}  // namespace

std::optional<KubeconfigServer> ParseKubeconfigServer(const std::string& kubeconfig) {
  auto found = Find(kubeconfig);
  if (!found) return std::nullopt;
  return found->server;
}

std::string KubeconfigWithServerHost(const std::string& kubeconfig, const std::string& host) {
  auto found = Find(kubeconfig);
  if (!found) return kubeconfig;
  const std::string bracketed = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::string text = kubeconfig;
  text.replace(found->at + found->host_at, found->host_length, bracketed);
  return text;
}

}  // namespace kr::testing
