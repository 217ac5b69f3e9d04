// Fuzz target: the watch-stream decoder and the gzip body decoder (chunked transfer decoding
// is cpp-httplib's now; this corpus keeps exercising what remains ours). Besides not crashing,
// it checks the split property of both: the result of decoding the whole input equals that of
// the same bytes fed in pieces (piece sizes derived from the input).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "kube_router/k8s/watch_stream.h"
#include "kube_router/net/gzip.h"

namespace {

std::vector<std::string> Decode(std::string_view data, size_t piece) {
  kr::k8s::WatchStreamDecoder decoder(4096);
  std::vector<kr::Result<kr::k8s::WatchEvent>> events;
  for (size_t pos = 0; pos < data.size(); pos += piece)
    decoder.Feed(data.substr(pos, piece), &events);
  std::vector<std::string> out;
  for (const auto& e : events)
    out.push_back(e.ok() ? std::to_string(static_cast<int>(e->type)) + e->object.dump() : "error");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t piece = size == 0 ? 1 : 1 + data[0] % 17;
  if (Decode(input, input.size() + 1) != Decode(input, piece)) std::abort();

  auto inflate = [&](size_t step) {
    kr::net::GzipDecoder gzip;
    std::string out;
    for (size_t pos = 0; pos < input.size(); pos += step) {
      if (!gzip.Feed(input.substr(pos, step), &out).ok()) return std::string("error");
    }
    return out + (gzip.done() ? "|done" : "|open");
  };
  if (inflate(input.size() + 1) != inflate(piece)) std::abort();
  return 0;
}
