#include "lib/flag_parser.h"

#include <charconv>
#include <utility>

namespace kr::testing {

FlagParser& FlagParser::Declare(const std::string& name, Flag flag) {
  flags_[name] = std::move(flag);
  return *this;
}

FlagParser& FlagParser::Text(const std::string& name, std::string* out) {
  return Declare(name, {Kind::kValue, "", [out](const std::string& v) {
                          *out = v;
                          return true;
                        }});
}

FlagParser& FlagParser::Whole(const std::string& name, long long min, long long max,
                              std::function<void(long long)> set) {
  std::string wants = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  return Declare(name, {Kind::kValue, std::move(wants),
                        [min, max, set = std::move(set)](const std::string& v) {
                          long long n = 0;
                          const char* end = v.data() + v.size();
                          auto [stop, error] = std::from_chars(v.data(), end, n);
                          if (v.empty() || error != std::errc() || stop != end) return false;
                          if (n < min || n > max) return false;
                          set(n);
                          return true;
                        }});
}

FlagParser& FlagParser::Switch(const std::string& name, bool* out) {
  return Declare(name, {Kind::kSwitch, "", [out](const std::string&) {
                          *out = true;
                          return true;
                        }});
}

FlagParser& FlagParser::List(const std::string& name, std::vector<std::string>* out) {
  return Declare(name, {Kind::kList, "", [out](const std::string& v) {
                          out->push_back(v);
                          return true;
                        }});
}

FlagParser& FlagParser::Custom(const std::string& name, const std::string& wants,
                               std::function<bool(const std::string&)> take) {
  return Declare(name, {Kind::kValue, wants, std::move(take)});
}

FlagParser& FlagParser::Alias(const std::string& alias, const std::string& name) {
  return Declare(alias, flags_.at(name));
}

Status FlagParser::Parse(int argc, const char* const* argv) const {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto it = flags_.find(arg);
    if (it == flags_.end()) return Status::Error("unknown argument " + arg);
    const Flag& flag = it->second;
    switch (flag.kind) {
      case Kind::kSwitch:
        flag.take("");
        break;
      case Kind::kList:
        while (i + 1 < argc && argv[i + 1][0] != '-') flag.take(argv[++i]);
        break;
      case Kind::kValue: {
        if (i + 1 >= argc) return Status::Error(arg + " needs a value");
        const std::string value = argv[++i];
        if (!flag.take(value))
          return Status::Error(arg + " wants " + flag.wants + ", got " + value);
        break;
      }
    }
  }
  return Status::Ok();
}

}  // namespace kr::testing
