// Event sink port: where events go. Adapters: webhook (here), RabbitMQ exchange (later).
#pragma once
#include <boost/asio/awaitable.hpp>

#include "core/event.hpp"
#include "core/types.hpp"

namespace el::delivery {

namespace net = boost::asio;

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Delivers one event, retrying as the adapter's options allow. Returns true only when the
  // destination accepted it (webhook: a 2xx); false when attempts or time ran out or the sink
  // was stopped. target: the mailbox's webhook (adapters that do not use it ignore it).
  // Thread-safe: may be called concurrently from many sessions.
  virtual net::awaitable<bool> deliver(const core::Event& event,
                                       const core::WebhookTarget& target) = 0;
  // Stops retries in progress (their deliver() returns false soon) and refuses new work.
  virtual void stop() = 0;
  // Readiness: false while the destination is known to be unusable (a broker connection is
  // down). A webhook is always "ready": its failures are per event. Thread-safe, no I/O.
  virtual bool healthy() const { return true; }
};

}  // namespace el::delivery
