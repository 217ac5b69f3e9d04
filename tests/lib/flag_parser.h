// The command line of the test tools (fake-apiserver, sandbox-node): `--name VALUE` options,
// `--name` switches and `--name A B ...` lists, declared once per tool and parsed by one loop,
// so both tools accept and reject arguments the same way and every error names the argument.
// Values are the next argument as it is (no `--name=VALUE`, the tools never took it).
#pragma once

#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/status.h"

namespace kr::testing {

class FlagParser {
 public:
  // --name VALUE.
  FlagParser& Text(const std::string& name, std::string* out);
  // --name N: a whole decimal number from `min` to `max`, else the error names the flag.
  template <typename Int>
  FlagParser& Number(const std::string& name, Int* out, Int min = 0,
                     Int max = std::numeric_limits<Int>::max()) {
    constexpr long long kLargest = std::numeric_limits<long long>::max();
    const long long top = std::cmp_less(max, kLargest) ? static_cast<long long>(max) : kLargest;
    return Whole(name, static_cast<long long>(min), top,
                 [out](long long v) { *out = static_cast<Int>(v); });
  }
  // --name: no value; sets *out.
  FlagParser& Switch(const std::string& name, bool* out);
  // --name A B ...: every following argument up to the next one starting with '-' (none is
  // fine; the flag may repeat).
  FlagParser& List(const std::string& name, std::vector<std::string>* out);
  // --name VALUE given to `take`; when it returns false the error says the flag wants `wants`.
  FlagParser& Custom(const std::string& name, const std::string& wants,
                     std::function<bool(const std::string&)> take);
  // `alias` is another spelling of the already declared `name` ("-v" for "--verbose").
  FlagParser& Alias(const std::string& alias, const std::string& name);

  // Parses argv[1..argc). Stops at the first error: "unknown argument X", "--name needs a
  // value", "--name wants <what>, got <value>".
  Status Parse(int argc, const char* const* argv) const;

 private:
  enum class Kind { kValue, kSwitch, kList };
  struct Flag {
    Kind kind = Kind::kValue;
    std::string wants;                             // what a bad value is told it should be
    std::function<bool(const std::string&)> take;  // false: the value is bad
  };
  FlagParser& Whole(const std::string& name, long long min, long long max,
                    std::function<void(long long)> set);
  FlagParser& Declare(const std::string& name, Flag flag);

  std::map<std::string, Flag> flags_;
};

}  // namespace kr::testing
