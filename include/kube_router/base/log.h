// Logging facade over spdlog. Verbosity follows klog's -v: 0 = info and above, higher levels
// enable KR_VLOG(n) lines. Never log credentials (tokens, passwords, keys).
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <string>

#include "kube_router/base/log_text.h"

namespace kr::log {

// Current -v level; set once from the options at start-up.
inline std::atomic<int> g_verbosity{0};

inline void SetVerbosity(int v) {
  g_verbosity = v;
  spdlog::set_level(v > 0 ? spdlog::level::debug : spdlog::level::info);
}
inline bool V(int level) { return g_verbosity.load(std::memory_order_relaxed) >= level; }

}  // namespace kr::log

// Messages are formatted first and then made safe as a whole (log_text.h), so no call site
// can forget to escape object data it quotes.
#define KR_LOG_AT_(lvl, ...) spdlog::log(lvl, "{}", ::kr::log::SafeForLog(fmt::format(__VA_ARGS__)))
#define KR_LOG_INFO(...) KR_LOG_AT_(spdlog::level::info, __VA_ARGS__)
#define KR_LOG_WARN(...) KR_LOG_AT_(spdlog::level::warn, __VA_ARGS__)
#define KR_LOG_ERROR(...) KR_LOG_AT_(spdlog::level::err, __VA_ARGS__)
#define KR_VLOG(verbosity, ...)                                                 \
  do {                                                                          \
    if (::kr::log::V(verbosity)) KR_LOG_AT_(spdlog::level::debug, __VA_ARGS__); \
  } while (0)
