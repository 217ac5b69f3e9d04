// KR_ASAN()/KR_TSAN() must say which sanitizer runtime this executable carries, whichever
// compiler built it: a check that skips or shortens itself under ASan (RSS and descriptor
// bounds, fuzz mutation counts) would otherwise run its unsanitized form there (clang 14 has no
// __SANITIZE_ADDRESS__), or the release tier's checks would be skipped.
#include "kube_router/base/sanitizers.h"

#include <gtest/gtest.h>

// Weak: null unless the sanitizer's runtime is linked in (GCC's libasan/libtsan or clang's).
extern "C" int __asan_address_is_poisoned(void const volatile* addr) __attribute__((weak));
extern "C" void __tsan_acquire(void* addr) __attribute__((weak));

namespace kr::base::sanitizers_test {
namespace {

TEST(Sanitizers, MacrosMatchTheRuntimeLinkedIn) {
  const bool asan_runtime = &__asan_address_is_poisoned != nullptr;
  const bool tsan_runtime = &__tsan_acquire != nullptr;
  EXPECT_EQ(KR_ASAN() == 1, asan_runtime);
  EXPECT_EQ(KR_TSAN() == 1, tsan_runtime);
}

}  // namespace
}  // namespace kr::base::sanitizers_test
