// FanoutSink (--sink webhook,amqp://...): an event counts as delivered only when every sink
// accepted it; a refusal stops at the refusing sink.
#include "delivery/fanout_sink.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

using namespace el;
namespace net = boost::asio;

namespace {

class Recording : public delivery::EventSink {
 public:
  explicit Recording(bool accept, bool healthy = true) : accept_(accept), healthy_(healthy) {}
  net::awaitable<bool> deliver(const core::Event& e, const core::WebhookTarget&) override {
    ids.push_back(e.id);
    co_return accept_;
  }
  void stop() override { stopped = true; }
  bool healthy() const override { return healthy_; }
  std::vector<std::string> ids;
  bool stopped = false;

 private:
  bool accept_, healthy_;
};

bool deliver(delivery::EventSink& sink, const std::string& id) {
  net::io_context ioc;
  bool result = false;
  core::Event e;
  e.id = id;
  e.type = "message.new";
  net::co_spawn(ioc, sink.deliver(e, {}), [&](std::exception_ptr ep, bool ok) {
    if (ep) std::rethrow_exception(ep);
    result = ok;
  });
  ioc.run();
  return result;
}

}  // namespace

TEST(FanoutSink, AcceptedOnlyWhenEverySinkAccepted) {
  Recording a(true), b(true);
  delivery::FanoutSink both({&a, &b});
  EXPECT_TRUE(deliver(both, "e1"));
  EXPECT_EQ(a.ids, std::vector<std::string>{"e1"});
  EXPECT_EQ(b.ids, std::vector<std::string>{"e1"});

  Recording refuses(false), never(true);
  delivery::FanoutSink partial({&refuses, &never});
  EXPECT_FALSE(deliver(partial, "e2"));
  EXPECT_TRUE(never.ids.empty());  // retried later as a whole, under the same id
}

TEST(FanoutSink, HealthAndStopCoverEverySink) {
  Recording a(true), down(true, /*healthy=*/false);
  delivery::FanoutSink fan({&a, &down});
  EXPECT_FALSE(fan.healthy());
  fan.stop();
  EXPECT_TRUE(a.stopped);
  EXPECT_TRUE(down.stopped);
  delivery::FanoutSink ok({&a});
  EXPECT_TRUE(ok.healthy());
}
