// Process-wide counters for /metrics. Lock-free increments; http/ renders them as Prometheus text.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace el::metrics {

struct Histogram {
  // Upper bounds in seconds; the last bucket is +Inf.
  static constexpr std::array<double, 12> kBounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,   0.25,   0.5,   1.0,  2.5,   10.0};
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets{};
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> sum_micros{0};
  void observe(double seconds);
};

struct Registry {
  std::atomic<std::uint64_t> events_delivered{0};
  std::atomic<std::uint64_t> events_failed{0};   // delivery attempts that did not get a 2xx
  std::atomic<std::uint64_t> events_dropped{0};  // gave up after all attempts (retried later)
  std::atomic<std::uint64_t> imap_reconnects{0};
  std::atomic<std::uint64_t> imap_auth_failures{0};
  std::atomic<std::uint64_t> fetch_bytes{0};
  std::atomic<std::uint64_t> messages_fetched{0};
  std::atomic<std::uint64_t> parse_errors{0};
  Histogram webhook_latency;
};

Registry& global();

}  // namespace el::metrics
