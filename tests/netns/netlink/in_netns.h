// Runs a callable with the calling thread inside a named network namespace, then switches back.
// Netlink sockets (and /proc/sys/net files) opened inside stay bound to that namespace, so an
// adapter made this way keeps working on the namespace after the switch back.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace kr::testing {

template <typename F>
auto InNetns(const std::string& name, F&& f) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
    if (self >= 0) close(self);
    if (target >= 0) close(target);
    throw std::runtime_error("cannot enter netns " + name);
  }
  struct Restore {
    int self, target;
    ~Restore() {
      if (setns(self, CLONE_NEWNET) != 0) std::terminate();  // never continue in the wrong netns
      close(self);
      close(target);
    }
  } restore{self, target};
  return f();
}

}  // namespace kr::testing
