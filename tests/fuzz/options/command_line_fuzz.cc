// Fuzzes the command line: the input is split at newlines into argv. Whatever the input,
// parsing must not crash, and a rejection must be exactly one line (the exit-2 contract).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "kube_router/options/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args{"kube-router"};
  size_t start = 0;
  while (start <= input.size() && args.size() < 64) {
    size_t nl = input.find('\n', start);
    if (nl == std::string::npos) nl = input.size();
    args.push_back(input.substr(start, nl - start));
    start = nl + 1;
  }
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  auto options = kr::ParseOptions(static_cast<int>(argv.size()), argv.data());
  if (!options.ok()) {
    if (options.error().empty() || options.error().find('\n') != std::string::npos) std::abort();
    return 0;
  }
  (void)kr::ValidateForRun(*options);
  // Every accepted duration prints back in a form the parser accepts.
  auto again = kr::ParseGoDurationNanos(kr::FormatGoDuration(options->iptables_sync_period));
  if (!again.ok() || *again / 1'000'000 != options->iptables_sync_period.count()) std::abort();
  return 0;
}
