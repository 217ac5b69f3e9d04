// Logging facade over spdlog. Verbosity follows klog's -v: 0 = info and above, higher levels
// enable KR_VLOG(n) lines. Never log credentials (tokens, passwords, keys).
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>

namespace kr::log {

// Current -v level; set once from the options at start-up.
inline std::atomic<int> g_verbosity{0};

inline void SetVerbosity(int v) {
  g_verbosity = v;
  spdlog::set_level(v > 0 ? spdlog::level::debug : spdlog::level::info);
}
inline bool V(int level) { return g_verbosity.load(std::memory_order_relaxed) >= level; }

}  // namespace kr::log

#define KR_LOG_INFO(...) spdlog::info(__VA_ARGS__)
#define KR_LOG_WARN(...) spdlog::warn(__VA_ARGS__)
#define KR_LOG_ERROR(...) spdlog::error(__VA_ARGS__)
#define KR_VLOG(level, ...)                      \
  do {                                           \
    if (::kr::log::V(level)) spdlog::debug(__VA_ARGS__); \
  } while (0)
