// Webhook adapter: HTTP(S) POST with HMAC-SHA256 signature, keep-alive pool per endpoint,
// retries with exponential backoff and jitter, bounded in attempts and total time.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "delivery/sink.hpp"

namespace el::delivery {

struct WebhookOptions {
  std::chrono::milliseconds request_timeout{10000};     // connect + send + response
  int max_attempts = 10;                                // per deliver() call
  std::chrono::milliseconds max_total{15 * 60 * 1000};  // per deliver() call
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{60000};
  std::size_t max_idle_per_endpoint = 8;  // kept-alive connections per scheme://host:port
  std::size_t max_concurrent = 256;       // requests in flight, all endpoints together
  std::string ca_file;                    // extra CA for https webhooks (empty: system store)
  bool tls_insecure = false;              // skip verification of the webhook's certificate
};

// "sha256=" + lower-case hex HMAC-SHA256(secret, body).
std::string sign(std::string_view body, std::string_view secret);

class WebhookSink final : public EventSink {
 public:
  WebhookSink(net::any_io_executor ex, WebhookOptions opts);
  ~WebhookSink() override;
  // POST serialize(event) to target.url with headers Content-Type: application/json,
  // X-Email-Listener-Event-Id, X-Email-Listener-Signature, X-Email-Listener-Attempt (1-based).
  net::awaitable<bool> deliver(const core::Event& event,
                               const core::WebhookTarget& target) override;
  void stop() override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace el::delivery
