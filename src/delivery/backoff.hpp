// Retry delays shared by the sinks (webhook, RabbitMQ exchange).
#pragma once
#include <chrono>

namespace el::delivery {

// "Full jitter": the cap doubles per attempt (1-based) from `initial` up to `max`, and the delay
// is uniform in [0, cap], so that many mailboxes failing together against one destination spread
// their retries out. Thread-safe.
std::chrono::milliseconds full_jitter(int attempt, std::chrono::milliseconds initial,
                                      std::chrono::milliseconds max);

}  // namespace el::delivery
