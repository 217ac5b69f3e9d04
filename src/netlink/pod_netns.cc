// The /proc + /run/netns pod namespace finder (see pod_netns.h).
#include "kube_router/netlink/pod_netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "kube_router/base/unique_fd.h"
#include "kube_router/net/sockaddr.h"

namespace kr::netlink {
namespace {

struct Candidate {
  ino_t inode = 0;
  dev_t device = 0;
  std::string path;
};

// The link of the calling thread's namespace holding `ip`, if any.
std::optional<std::string> DeviceHolding(const IpAddress& ip) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (ifaddrs* a = list; a != nullptr && !found; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_name == nullptr) continue;
    const int family = a->ifa_addr->sa_family;
    if (family != (ip.is_v4() ? AF_INET : AF_INET6)) continue;
    // getifaddrs gives no length: the address is a whole sockaddr_in / sockaddr_in6.
    const auto length =
        static_cast<socklen_t>(family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    auto address = net::FromSockaddr(a->ifa_addr, length);
    if (address && address->first == ip) found = a->ifa_name;
  }
  freeifaddrs(list);
  return found;
}

bool AllDigits(const char* name) {
  if (*name == '\0') return false;
  for (const char* c = name; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9') return false;
  }
  return true;
}

class ProcPodNetns : public PodNetns {
 public:
  explicit ProcPodNetns(ProcPodNetnsOptions options) : options_(std::move(options)) {}

  Status RunInPodNetns(const IpAddress& pod_ip, const PodNetnsWork& work) override {
    std::vector<Candidate> candidates = Candidates(pod_ip);
    Status result = Status::Error("no network namespace holds " + pod_ip.ToString());
    std::optional<Candidate> hit;
    // A fresh thread: it moves between candidate namespaces and ends in the pod's; the caller's
    // threads never change namespace.
    std::thread worker([&] {
      for (const Candidate& c : candidates) {
        UniqueFd fd(open(c.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) continue;  // the process exited or the namespace was deleted meanwhile
        struct stat st {};
        const bool same =
            fstat(fd.get(), &st) == 0 && st.st_ino == c.inode && st.st_dev == c.device;
        const bool entered = same && setns(fd.get(), CLONE_NEWNET) == 0;
        fd.reset();
        if (!entered) continue;
        auto device = DeviceHolding(pod_ip);
        if (!device) continue;
        hit = c;
        try {
          result = work(PodNetnsContext{*device, c.path});
        } catch (const std::exception& e) {
          result = Status::Error(std::string("work in the pod namespace threw: ") + e.what());
        }
        return;
      }
    });
    worker.join();
    std::lock_guard lock(mu_);
    if (hit) {
      last_seen_[pod_ip] = hit->path;
    } else {
      last_seen_.erase(pod_ip);
    }
    return result.Context("pod " + pod_ip.ToString() + " network namespace");
  }

 private:
  // Distinct namespaces other than the agent's own, the one that last held `pod_ip` first.
  std::vector<Candidate> Candidates(const IpAddress& pod_ip) {
    std::vector<std::string> paths;
    {
      std::lock_guard lock(mu_);
      auto it = last_seen_.find(pod_ip);
      if (it != last_seen_.end()) paths.push_back(it->second);
    }
    if (DIR* dir = opendir(options_.run_netns_dir.c_str())) {
      while (dirent* e = readdir(dir)) {
        if (e->d_name[0] != '.') paths.push_back(options_.run_netns_dir + "/" + e->d_name);
      }
      closedir(dir);
    }
    if (DIR* dir = opendir(options_.proc_root.c_str())) {
      while (dirent* e = readdir(dir)) {
        if (AllDigits(e->d_name)) paths.push_back(options_.proc_root + "/" + e->d_name + "/ns/net");
      }
      closedir(dir);
    }
    std::set<std::pair<dev_t, ino_t>> seen;
    struct stat own {};
    if (stat("/proc/thread-self/ns/net", &own) == 0) seen.insert({own.st_dev, own.st_ino});
    std::vector<Candidate> out;
    for (const std::string& path : paths) {
      if (out.size() >= options_.max_namespaces) break;
      struct stat st {};
      if (stat(path.c_str(), &st) != 0) continue;
      if (!seen.insert({st.st_dev, st.st_ino}).second) continue;
      out.push_back(Candidate{st.st_ino, st.st_dev, path});
    }
    return out;
  }

  const ProcPodNetnsOptions options_;
  std::mutex mu_;
  std::map<IpAddress, std::string> last_seen_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<PodNetns> MakeProcPodNetns(ProcPodNetnsOptions options) {
  return std::make_unique<ProcPodNetns>(std::move(options));
}

}  // namespace kr::netlink
