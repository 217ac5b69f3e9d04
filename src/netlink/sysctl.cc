// Sysctl over /proc/sys files.
#include "kube_router/netlink/sysctl.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kr::netlink {
namespace {

std::string Trim(const std::string& text) {
  const char* space = " \t\r\n";
  auto begin = text.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

class ProcSysctl : public Sysctl {
 public:
  explicit ProcSysctl(std::string root) : root_(std::move(root)) {}

  Result<std::string> Get(const std::string& key) override {
    const std::string path = root_ + "/" + SysctlPath(key);
    std::ifstream in(path);
    if (!in)
      return Status::Error("sysctl " + key + ": cannot read " + path + ": " + strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    return Trim(text.str());
  }

  Status Set(const std::string& key, const std::string& value) override {
    const std::string path = root_ + "/" + SysctlPath(key);
    // No O_CREAT: a missing sysctl is an error (wrong key or module not loaded), not a new file.
    std::ofstream out(path, std::ios::in | std::ios::out);
    if (!out)
      return Status::Error("sysctl " + key + ": cannot open " + path + ": " + strerror(errno));
    out << value << "\n";
    out.flush();
    if (!out) {
      return Status::Error("sysctl " + key + ": writing '" + value +
                           "' failed: " + strerror(errno));
    }
    return Status::Ok();
  }

 private:
  std::string root_;
};

}  // namespace

std::unique_ptr<Sysctl> MakeProcSysctl(std::string root) {
  return std::make_unique<ProcSysctl>(std::move(root));
}

}  // namespace kr::netlink
