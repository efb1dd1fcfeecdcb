#include "delivery/amqp_sink.hpp"

#include <gtest/gtest.h>

#include <utility>

#include "core/event.hpp"
#include "core/metrics.hpp"
#include "test_util.hpp"

using namespace el;
using namespace el::test;
using delivery::AmqpSink;
using delivery::AmqpSinkOptions;

namespace {

core::Event event(std::string type = "message.new") {
  core::Event e;
  e.id = core::random_event_id();
  e.type = std::move(type);
  e.mailbox_id = "mb-7";
  e.created_at = "2026-11-27T23:21:31.123Z";
  e.data["subject"] = "Hello";
  e.data["uid"] = 42;
  return e;
}

}  // namespace

TEST(AmqpSink, PublishesPersistentConfirmedEventsToTheExchange) {
  IoThreads io;
  const auto prefix = unique_prefix("sink");
  const auto exchange = prefix + "events";
  const auto queue = prefix + "app";
  auto c = direct();
  // The application's side: its queue bound to the routing key it wants.
  c->declare_exchange(exchange, "topic", true);
  amqp::QueueSpec q;
  q.name = queue;
  amqp::set(q.arguments, "x-queue-type", std::string("classic"));
  c->declare_queue(q);
  c->bind_queue(queue, exchange, "message.new");

  AmqpSinkOptions o;
  o.url = broker().url() + "/" + exchange;
  AmqpSink sink(io.executor(), o);
  const auto published0 = metric(metrics::global().events_published);
  const auto e = event();
  auto ok = Pending<bool>(io, sink.deliver(e, core::WebhookTarget{})).wait();
  ASSERT_TRUE(ok.has_value());
  EXPECT_TRUE(*ok);
  EXPECT_TRUE(sink.healthy());
  EXPECT_EQ(metric(metrics::global().events_published) - published0, 1u);

  auto got = c->get(queue, true);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->message.body, core::serialize(e));
  EXPECT_EQ(got->message.exchange, exchange);
  EXPECT_EQ(got->message.routing_key, "message.new");
  EXPECT_EQ(got->message.props.message_id, e.id);
  EXPECT_EQ(got->message.props.content_type, "application/json");
  EXPECT_TRUE(got->message.props.persistent);
  const auto* mailbox = amqp::find(got->message.props.headers, "x-el-mailbox-id");
  ASSERT_NE(mailbox, nullptr);
  EXPECT_EQ(std::get<std::string>(*mailbox), "mb-7");

  // Unbound routing keys are the application's choice: accepted, not routed to our queue.
  ok = Pending<bool>(io, sink.deliver(event("mailbox.state"), core::WebhookTarget{})).wait();
  ASSERT_TRUE(ok.has_value());
  EXPECT_TRUE(*ok);
  EXPECT_FALSE(c->get(queue, true).has_value());
}

TEST(AmqpSink, DeclaresItsExchange) {
  IoThreads io;
  const auto exchange = unique_prefix("sinkdecl") + "events";
  AmqpSinkOptions o;
  o.url = broker().url() + "/" + exchange;
  o.exchange_type = "fanout";
  AmqpSink sink(io.executor(), o);
  ASSERT_TRUE(wait_until([&] { return sink.healthy(); }));
  auto c = direct();
  amqp::QueueSpec q;
  q.name = exchange + ".q";
  c->declare_queue(q);
  EXPECT_NO_THROW(c->bind_queue(q.name, exchange, ""));  // a missing exchange: 404, throws
}

TEST(AmqpSink, UnreachableBrokerFailsAfterItsAttempts) {
  IoThreads io;
  AmqpSinkOptions o;
  o.url = "amqp://guest:guest@127.0.0.1:" + std::to_string(free_port()) + "/%2f/events";
  o.max_attempts = 3;
  o.backoff_initial = 1ms;
  o.backoff_max = 5ms;
  o.confirm_timeout = 200ms;
  AmqpSink sink(io.executor(), o);
  auto& m = metrics::global();
  const auto failed0 = metric(m.events_failed);
  const auto dropped0 = metric(m.events_dropped);
  const auto t0 = std::chrono::steady_clock::now();
  auto ok = Pending<bool>(io, sink.deliver(event(), core::WebhookTarget{})).wait();
  ASSERT_TRUE(ok.has_value());
  EXPECT_FALSE(*ok);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_FALSE(sink.healthy());
  EXPECT_EQ(metric(m.events_failed) - failed0, 3u);
  EXPECT_EQ(metric(m.events_dropped) - dropped0, 1u);
}

TEST(AmqpSink, StopEndsDeliveriesSoon) {
  IoThreads io;
  AmqpSinkOptions o;
  o.url = "amqp://guest:guest@127.0.0.1:" + std::to_string(free_port()) + "/%2f/events";
  o.max_attempts = 1000;
  o.backoff_initial = 50ms;
  o.backoff_max = 100ms;
  o.confirm_timeout = 5s;
  AmqpSink sink(io.executor(), o);
  Pending<bool> delivering(io, sink.deliver(event(), core::WebhookTarget{}));
  std::this_thread::sleep_for(300ms);
  const auto t0 = std::chrono::steady_clock::now();
  sink.stop();
  auto ok = delivering.wait(5s);
  ASSERT_TRUE(ok.has_value());
  EXPECT_FALSE(*ok);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  // Refuses new work.
  ok = Pending<bool>(io, sink.deliver(event(), core::WebhookTarget{})).wait(2s);
  ASSERT_TRUE(ok.has_value());
  EXPECT_FALSE(*ok);
}

TEST(AmqpSink, FailsFastWhileTheBrokerBlocksPublishers) {
  IoThreads io;
  const auto exchange = unique_prefix("blocked") + "events";
  AmqpSinkOptions o;
  o.url = broker().url() + "/" + exchange;
  o.max_attempts = 1;
  o.confirm_timeout = 2s;
  AmqpSink sink(io.executor(), o);
  auto deliver = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    auto ok = Pending<bool>(io, sink.deliver(event(), core::WebhookTarget{})).wait(10s);
    return std::make_pair(ok.value_or(false), std::chrono::steady_clock::now() - t0);
  };
  ASSERT_TRUE(deliver().first);

  // A memory alarm: the broker blocks publishing connections and says so (connection.blocked).
  struct Alarm {
    Alarm() { broker().ctl({"set_vm_memory_high_watermark", "0.0000001"}); }
    void clear() {
      if (std::exchange(on, false)) broker().ctl({"set_vm_memory_high_watermark", "0.4"});
    }
    ~Alarm() { clear(); }
    bool on = true;
  } alarm;
  // A publish racing the notification waits for its confirm (2 s); once the link knows, an
  // attempt fails at once instead of wedging the link's thread in a blocked send.
  bool failed_fast = false;
  for (int i = 0; i < 10 && !failed_fast; ++i) {
    const auto [ok, took] = deliver();
    failed_fast = !ok && took < 1s;
  }
  EXPECT_TRUE(failed_fast);

  alarm.clear();
  bool delivered = false;
  for (int i = 0; i < 10 && !delivered; ++i) delivered = deliver().first;
  EXPECT_TRUE(delivered);
}
