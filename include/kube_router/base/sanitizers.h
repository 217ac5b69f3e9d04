// Which sanitizer instruments this translation unit, the same way under both compilers: GCC
// defines __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__, clang (14) defines neither and answers
// __has_feature(address_sanitizer / thread_sanitizer) instead. Code that skips or shortens a
// check under a sanitizer asks `#if KR_ASAN()` / `#if KR_TSAN()`.
//
// Function-like on purpose: in `#if`, an undefined name silently reads as 0, so a file that
// forgot this include would behave as an unsanitized build; `KR_ASAN()` without the include is
// a preprocessor error instead.
#pragma once

#if defined(__has_feature)
#define KR_HAS_FEATURE_(x) __has_feature(x)
#else
#define KR_HAS_FEATURE_(x) 0
#endif

#if defined(__SANITIZE_ADDRESS__) || KR_HAS_FEATURE_(address_sanitizer)
#define KR_ASAN() 1
#else
#define KR_ASAN() 0
#endif

#if defined(__SANITIZE_THREAD__) || KR_HAS_FEATURE_(thread_sanitizer)
#define KR_TSAN() 1
#else
#define KR_TSAN() 0
#endif
