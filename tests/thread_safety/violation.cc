// Not part of any build target: scripts/check-tidy.sh runs clang-tidy on it and
// expects -Wthread-safety to reject it, proving the check catches an unguarded access.
#include "kube_router/base/mutex.h"

namespace {

class Counter {
 public:
  void Add() {
    kr::MutexLock lock(mu_);
    ++value_;
  }
  int Read() const { return value_; }  // the violation: value_ read without mu_

 private:
  mutable kr::Mutex mu_;
  int value_ KR_GUARDED_BY(mu_) = 0;
};

}  // namespace

int main() {
  Counter c;
  c.Add();
  return c.Read();
}
