// Retry delays shared by the sinks.
#include "delivery/backoff.hpp"

#include <algorithm>
#include <cstdint>
#include <random>

namespace el::delivery {

// Out of line on purpose: a thread_local's address must be computed on the thread that runs the
// call, never cached in a coroutine frame that resumes on another thread.
std::chrono::milliseconds full_jitter(int attempt, std::chrono::milliseconds initial,
                                      std::chrono::milliseconds max) {
  double cap = static_cast<double>(initial.count());
  for (int i = 1; i < attempt && cap < static_cast<double>(max.count()); ++i) cap *= 2;
  const auto cap_ms = std::min<std::int64_t>(static_cast<std::int64_t>(cap), max.count());
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> dist(0, std::max<std::int64_t>(cap_ms, 0));
  return std::chrono::milliseconds(dist(rng));
}

}  // namespace el::delivery
