// A mutex and scoped lock that clang's -Wthread-safety analysis understands, so that a member
// marked KR_GUARDED_BY(mu_) read or written without mu_ held is a compile error in CI
// (scripts/check-tidy.sh). Under gcc the annotations compile to nothing.
#pragma once

#include <mutex>

#if defined(__clang__)
#define KR_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define KR_THREAD_ANNOTATION(x)
#endif

#define KR_CAPABILITY(name) KR_THREAD_ANNOTATION(capability(name))
#define KR_SCOPED_CAPABILITY KR_THREAD_ANNOTATION(scoped_lockable)
#define KR_GUARDED_BY(mu) KR_THREAD_ANNOTATION(guarded_by(mu))
#define KR_PT_GUARDED_BY(mu) KR_THREAD_ANNOTATION(pt_guarded_by(mu))
#define KR_REQUIRES(...) KR_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define KR_EXCLUDES(...) KR_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define KR_ACQUIRE(...) KR_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define KR_RELEASE(...) KR_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define KR_TRY_ACQUIRE(...) KR_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define KR_ASSERT_CAPABILITY(mu) KR_THREAD_ANNOTATION(assert_capability(mu))

namespace kr {

class KR_CAPABILITY("mutex") Mutex {
 public:
  void lock() KR_ACQUIRE() { mu_.lock(); }
  void unlock() KR_RELEASE() { mu_.unlock(); }
  // Holds the mutex when it returns true (a Lockable: std::try_lock and tests probing whether
  // another thread holds it).
  bool try_lock() KR_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds the mutex: for the predicate of a condition-variable
  // wait, a lambda the analysis sees as a separate function.
  void AssertHeld() const KR_ASSERT_CAPABILITY(this) {}

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope. Also a BasicLockable, so std::condition_variable_any can release
// and retake it while waiting (it always holds it again when the wait returns).
class KR_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) KR_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() KR_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void lock() KR_ACQUIRE() { mu_.lock(); }
  void unlock() KR_RELEASE() { mu_.unlock(); }

 private:
  Mutex& mu_;
};

}  // namespace kr
