// Event sink to a RabbitMQ exchange: each event is published as persistent JSON (the same body
// as the webhook's), routing key = event type ("message.new", "mailbox.state",
// "mailbox.reset"), message id = event id, and counts as accepted only once the broker
// confirmed it (publisher confirms). Retries with backoff like the webhook.
// One connection with its own thread (rabbitmq-c blocks); the constructor throws
// std::invalid_argument for a malformed url. Destroy it before the executor's io_context.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "delivery/sink.hpp"

namespace el::delivery {

struct AmqpSinkOptions {
  std::string url;                      // amqp://user:password@host:port/vhost/exchange
  std::string exchange_type = "topic";  // declared durable if it does not exist
  int max_attempts = 10;
  std::chrono::milliseconds max_total{15 * 60 * 1000};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{60000};
  std::chrono::milliseconds confirm_timeout{10000};
};

class AmqpSink final : public EventSink {
 public:
  AmqpSink(net::any_io_executor ex, AmqpSinkOptions opts);
  ~AmqpSink() override;
  net::awaitable<bool> deliver(const core::Event& event,
                               const core::WebhookTarget& target) override;
  void stop() override;
  bool healthy() const override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace el::delivery
