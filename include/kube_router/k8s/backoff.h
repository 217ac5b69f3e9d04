// SPDX-License-Identifier: Apache-2.0
// Exponential backoff with jitter, with client-go reflector's numbers: 0.8 s doubling up to
// 30 s, up to 100 % random jitter added, back to 0.8 s after 2 minutes without a failure
// (k8s.io/apimachinery wait.NewExponentialBackoffManager as used in tools/cache/reflector.go).
// Reads no clock itself, so tests drive it. Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace kr::k8s {

struct BackoffParams {
  std::chrono::milliseconds initial{800};
  std::chrono::milliseconds cap{30000};
  std::chrono::milliseconds reset_after{120000};
  double factor = 2.0;
  double jitter = 1.0;  // delay = step * (1 + jitter * U[0,1))
};

class Backoff {
 public:
  using Clock = std::chrono::steady_clock;
  using Params = BackoffParams;
  explicit Backoff(Params params = {}, uint64_t seed = std::random_device{}())
      : params_(params), step_(params.initial), rng_(seed) {}

  // The delay to wait after a failure observed at `now`.
  std::chrono::milliseconds Next(Clock::time_point now) {
    if (has_failed_ && now - last_ > params_.reset_after) step_ = params_.initial;
    has_failed_ = true;
    last_ = now;
    auto base = step_;
    auto next = std::chrono::milliseconds(static_cast<int64_t>(step_.count() * params_.factor));
    step_ = std::min(next, params_.cap);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    return std::chrono::milliseconds(
        static_cast<int64_t>(base.count() * (1.0 + params_.jitter * u(rng_))));
  }

 private:
  Params params_;
  std::chrono::milliseconds step_;
  bool has_failed_ = false;
  Clock::time_point last_;
  std::mt19937_64 rng_;
};

}  // namespace kr::k8s
