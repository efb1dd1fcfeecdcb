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
  // Fetch tasks through RabbitMQ (issue 3).
  std::atomic<std::uint64_t> tasks_published{0};      // by this api node, confirmed by the broker
  std::atomic<std::uint64_t> tasks_run_locally{0};    // no worker, broker down, or too slow
  std::atomic<std::uint64_t> tasks_consumed{0};       // by this worker, acknowledged
  std::atomic<std::uint64_t> tasks_dead_lettered{0};  // moved to the dead-letter queue
  std::atomic<std::uint64_t> amqp_errors{0};          // connection or channel failures
  std::atomic<std::uint64_t> events_published{0};     // events confirmed by the AMQP sink
  std::atomic<std::uint64_t> registry_errors{0};      // registry calls that failed (Redis down)
  std::atomic<std::uint64_t> ownership_claims{0};
  std::atomic<std::uint64_t> ownership_losses{0};    // leases lost to expiry or another node
  std::atomic<std::uint64_t> ownership_releases{0};  // handed over (rebalance, shutdown)
  Histogram webhook_latency;
};

Registry& global();

}  // namespace el::metrics
