// Several sinks at once (--sink webhook,amqp://...): an event is accepted when every sink
// accepted it. A retry after a partial failure re-sends to all of them, under the same event
// id, which the application deduplicates anyway (at-least-once).
#pragma once
#include <vector>

#include "delivery/sink.hpp"

namespace el::delivery {

class FanoutSink final : public EventSink {
 public:
  explicit FanoutSink(std::vector<EventSink*> sinks) : sinks_(std::move(sinks)) {}
  net::awaitable<bool> deliver(const core::Event& event,
                               const core::WebhookTarget& target) override {
    bool all = true;
    for (auto* s : sinks_) {
      const bool ok = co_await s->deliver(event, target);  // not in a condition: GCC 12
      all = all && ok;
      if (!all) break;
    }
    co_return all;
  }
  void stop() override {
    for (auto* s : sinks_) s->stop();
  }
  bool healthy() const override {
    for (auto* s : sinks_)
      if (!s->healthy()) return false;
    return true;
  }

 private:
  std::vector<EventSink*> sinks_;
};

}  // namespace el::delivery
