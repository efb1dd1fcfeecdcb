#include "queue/amqp_queue.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <stdexcept>

#include "core/metrics.hpp"
#include "queue/task_codec.hpp"
#include "test_util.hpp"

using namespace el;
using namespace el::test;
using queue::AmqpQueueOptions;
using queue::AmqpTaskQueue;
using queue::AmqpWorker;
using queue::FetchTask;
using queue::TaskResult;

namespace {

AmqpQueueOptions options(const std::string& prefix, const std::string& type = "quorum") {
  AmqpQueueOptions o;
  o.url = broker().url();
  o.type = type;
  o.prefix = prefix;
  o.node_id = "api-1";
  o.max_wait = 20s;
  o.task_timeout = 60s;
  o.reconnect_delay = 200ms;
  return o;
}

FetchTask task(std::uint32_t after_uid, std::string mailbox = "mb-1") {
  FetchTask t;
  t.mailbox_id = std::move(mailbox);
  t.folder = "INBOX";
  t.uidvalidity = 42;
  t.after_uid = after_uid;
  t.epoch = 7;
  return t;
}

// A worker's handler: done, last_uid = after_uid + 5.
struct Counting {
  std::atomic<int> runs{0};
  queue::TaskHandler handler() {
    return [this](const FetchTask& t) -> net::awaitable<TaskResult> {
      ++runs;
      TaskResult r;
      r.last_uid = t.after_uid + 5;
      r.delivered = 5;
      co_return r;
    };
  }
};

// A handler that never finishes on its own: it polls until release().
struct Hanging {
  queue::TaskHandler handler() {
    return [this](const FetchTask&) -> net::awaitable<TaskResult> {
      ++started;
      net::steady_timer t(co_await net::this_coro::executor);
      while (!released) {
        t.expires_after(20ms);
        co_await t.async_wait(net::as_tuple(net::use_awaitable));
      }
      TaskResult r;
      r.error = "released";
      co_return r;
    };
  }
  void release() { released = true; }
  std::atomic<bool> released{false};
  std::atomic<int> started{0};
};

bool connected_with_consumers(const AmqpTaskQueue& q, std::size_t n) {
  return wait_until([&] { return q.healthy() && q.consumers() == n; });
}

class AmqpRoundTrip : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(AmqpRoundTrip, WorkerRunsTheTaskAndTheResultComesBack) {
  IoThreads io;
  const auto prefix = unique_prefix("rt-" + GetParam());
  FakeLocal local;
  auto& m = metrics::global();
  const auto published0 = metric(m.tasks_published);
  const auto consumed0 = metric(m.tasks_consumed);
  Counting work;
  AmqpWorker worker(io.executor(), options(prefix, GetParam()), work.handler());
  worker.start();
  AmqpTaskQueue q(io.executor(), options(prefix, GetParam()), local);
  ASSERT_TRUE(connected_with_consumers(q, 1)) << q.health_detail();
  EXPECT_TRUE(worker.healthy()) << worker.health_detail();
  EXPECT_FALSE(q.runs_here());
  EXPECT_EQ(q.health_detail(), "");

  constexpr int kTasks = 8;
  std::vector<std::unique_ptr<Pending<TaskResult>>> pending;
  for (int i = 0; i < kTasks; ++i) {
    pending.push_back(std::make_unique<Pending<TaskResult>>(
        io, q.submit(task(static_cast<std::uint32_t>(100 * i), "mb-" + std::to_string(i)))));
  }
  for (int i = 0; i < kTasks; ++i) {
    auto r = pending[static_cast<std::size_t>(i)]->wait();
    ASSERT_TRUE(r.has_value()) << "task " << i;
    EXPECT_EQ(r->status, TaskResult::Status::done);
    EXPECT_EQ(r->last_uid, static_cast<std::uint32_t>(100 * i + 5));
    EXPECT_EQ(r->delivered, 5u);
  }
  EXPECT_EQ(work.runs.load(), kTasks);
  EXPECT_EQ(local.ran.load(), 0);
  EXPECT_EQ(metric(m.tasks_published) - published0, static_cast<std::uint64_t>(kTasks));
  EXPECT_TRUE(wait_until([&] { return metric(m.tasks_consumed) - consumed0 == kTasks; }));
  auto c = direct();
  EXPECT_EQ(c->declare_queue_passive(prefix + "tasks").messages, 0u);
}

INSTANTIATE_TEST_SUITE_P(QueueTypes, AmqpRoundTrip, ::testing::Values("classic", "quorum"));

TEST(AmqpTaskQueue, RunsHereWhenNoWorkerConsumes) {
  IoThreads io;
  const auto prefix = unique_prefix("noworker");
  FakeLocal local;
  const auto local0 = metric(metrics::global().tasks_run_locally);
  AmqpTaskQueue q(io.executor(), options(prefix), local);
  ASSERT_TRUE(wait_until([&] { return q.healthy(); })) << q.health_detail();
  EXPECT_EQ(q.consumers(), 0u);
  EXPECT_TRUE(q.runs_here());
  auto r = Pending<TaskResult>(io, q.submit(task(10))).wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->last_uid, 1010u);
  EXPECT_EQ(r->error, "ran locally");
  EXPECT_EQ(local.ran.load(), 1);
  EXPECT_EQ(metric(metrics::global().tasks_run_locally) - local0, 1u);
  auto c = direct();
  EXPECT_EQ(c->declare_queue_passive(prefix + "tasks").messages, 0u);  // nothing was published
}

TEST(AmqpTaskQueue, BrokerUnavailableRunsHere) {
  IoThreads io;
  FakeLocal local;
  auto o = options(unique_prefix("down"));
  o.url = "amqp://guest:hunter2@127.0.0.1:" + std::to_string(free_port()) + "/%2f";
  const auto errors0 = metric(metrics::global().amqp_errors);
  const auto local0 = metric(metrics::global().tasks_run_locally);
  AmqpTaskQueue q(io.executor(), o, local);
  EXPECT_TRUE(q.runs_here());
  EXPECT_FALSE(q.healthy());
  ASSERT_TRUE(wait_until([&] { return metric(metrics::global().amqp_errors) > errors0; }));
  const auto detail = q.health_detail();
  EXPECT_NE(detail.find("127.0.0.1"), std::string::npos) << detail;
  EXPECT_EQ(detail.find("hunter2"), std::string::npos) << detail;
  auto r = Pending<TaskResult>(io, q.submit(task(1))).wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error, "ran locally");
  EXPECT_EQ(local.ran.load(), 1);
  EXPECT_EQ(metric(metrics::global().tasks_run_locally) - local0, 1u);
}

TEST(AmqpWorker, TaskOfAWorkerThatDiedIsRedeliveredToAnother) {
  IoThreads io;
  const auto prefix = unique_prefix("died");
  FakeLocal local;
  Hanging hang;
  auto first = std::make_unique<AmqpWorker>(io.executor(), options(prefix), hang.handler());
  first->start();
  AmqpTaskQueue q(io.executor(), options(prefix), local);
  ASSERT_TRUE(connected_with_consumers(q, 1)) << q.health_detail();

  Pending<TaskResult> submitted(io, q.submit(task(500)));
  ASSERT_TRUE(wait_until([&] { return hang.started.load() == 1; }));
  first.reset();  // gone without acknowledging: the broker requeues the task, flagged redelivered

  Counting work;
  AmqpWorker second(io.executor(), options(prefix), work.handler());
  second.start();
  auto r = submitted.wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, TaskResult::Status::done);
  EXPECT_EQ(r->last_uid, 505u);
  EXPECT_EQ(work.runs.load(), 1);
  EXPECT_EQ(local.ran.load(), 0);
  hang.release();
}

TEST(AmqpWorker, PoisonTaskEndsInTheDeadLetterQueue) {
  IoThreads io;
  const auto prefix = unique_prefix("poison");
  FakeLocal local;
  auto o = options(prefix);
  o.max_attempts = 3;
  std::atomic<int> runs{0};
  const auto dead0 = metric(metrics::global().tasks_dead_lettered);
  AmqpWorker worker(io.executor(), o, [&runs](const FetchTask&) -> net::awaitable<TaskResult> {
    ++runs;
    throw std::runtime_error("poison");
    co_return TaskResult{};
  });
  worker.start();
  AmqpTaskQueue q(io.executor(), o, local);
  ASSERT_TRUE(connected_with_consumers(q, 1)) << q.health_detail();

  auto r = Pending<TaskResult>(io, q.submit(task(9))).wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, TaskResult::Status::retry_later);
  EXPECT_EQ(r->error, "dead-lettered after 3 attempts");
  EXPECT_EQ(runs.load(), 3);
  EXPECT_EQ(local.ran.load(), 0);
  EXPECT_EQ(metric(metrics::global().tasks_dead_lettered) - dead0, 1u);

  auto c = direct();
  EXPECT_EQ(c->declare_queue_passive(prefix + "tasks.dead").messages, 1u);
  EXPECT_EQ(c->declare_queue_passive(prefix + "tasks").messages, 0u);
  auto dead = c->get(prefix + "tasks.dead", true);
  ASSERT_TRUE(dead.has_value());
  EXPECT_EQ(amqp::find_int(dead->message.props.headers, "x-el-attempts"), 3);
  EXPECT_TRUE(dead->message.props.persistent);
  EXPECT_EQ(queue::decode_task(dead->message.body).after_uid, 9u);
}

TEST(AmqpWorker, MalformedTaskIsDeadLetteredNotRequeued) {
  IoThreads io;
  const auto prefix = unique_prefix("malformed");
  Counting work;
  const auto dead0 = metric(metrics::global().tasks_dead_lettered);
  AmqpWorker worker(io.executor(), options(prefix, "classic"), work.handler());
  worker.start();
  auto c = direct();
  ASSERT_TRUE(wait_until([&] {
    try {
      return c->declare_queue_passive(prefix + "tasks").consumers == 1;
    } catch (const amqp::Error&) {
      c = direct();  // not declared yet: the broker closed our channel
      return false;
    }
  }));
  amqp::Message m;
  m.routing_key = prefix + "tasks";
  m.body = "{not json";
  m.props.persistent = true;
  c->publish(m, false);
  ASSERT_TRUE(
      wait_until([&] { return c->declare_queue_passive(prefix + "tasks.dead").messages == 1; }));
  EXPECT_EQ(work.runs.load(), 0);
  EXPECT_EQ(metric(metrics::global().tasks_dead_lettered) - dead0, 1u);
  auto dead = c->get(prefix + "tasks.dead", true);
  ASSERT_TRUE(dead.has_value());
  EXPECT_EQ(dead->message.body, "{not json");
}

TEST(AmqpTaskQueue, TakesOverATaskNoWorkerAnsweredWithinMaxWait) {
  IoThreads io;
  const auto prefix = unique_prefix("takeover");
  FakeLocal local;
  Hanging hang;
  auto o = options(prefix);
  o.max_wait = 700ms;
  AmqpWorker worker(io.executor(), o, hang.handler());
  worker.start();
  AmqpTaskQueue q(io.executor(), o, local);
  ASSERT_TRUE(connected_with_consumers(q, 1)) << q.health_detail();

  const auto t0 = std::chrono::steady_clock::now();
  auto r = Pending<TaskResult>(io, q.submit(task(3))).wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 700ms);
  EXPECT_EQ(r->error, "ran locally");
  EXPECT_EQ(local.ran.load(), 1);
  EXPECT_EQ(hang.started.load(), 1);
  // The workers are behind: new tasks run here until the late result arrives.
  EXPECT_TRUE(q.runs_here());
  hang.release();
  EXPECT_TRUE(wait_until([&] { return !q.runs_here(); }));
}

TEST(AmqpTaskQueue, StopCompletesOutstandingSubmitsWithRetryLater) {
  IoThreads io;
  const auto prefix = unique_prefix("stop");
  FakeLocal local;
  Hanging hang;
  AmqpWorker worker(io.executor(), options(prefix), hang.handler());
  worker.start();
  AmqpTaskQueue q(io.executor(), options(prefix), local);
  ASSERT_TRUE(connected_with_consumers(q, 1)) << q.health_detail();
  Pending<TaskResult> submitted(io, q.submit(task(1)));
  ASSERT_TRUE(wait_until([&] { return hang.started.load() == 1; }));
  q.stop();
  auto r = submitted.wait(5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, TaskResult::Status::retry_later);
  EXPECT_FALSE(q.healthy());
  EXPECT_EQ(local.ran.load(), 0);
  hang.release();
}

TEST(AmqpWorker, GracefulStopFinishesTasksInProgress) {
  IoThreads io;
  const auto prefix = unique_prefix("graceful");
  FakeLocal local;
  Hanging hang;
  const auto consumed0 = metric(metrics::global().tasks_consumed);
  AmqpWorker worker(io.executor(), options(prefix), hang.handler());
  worker.start();
  AmqpTaskQueue q(io.executor(), options(prefix), local);
  ASSERT_TRUE(connected_with_consumers(q, 1)) << q.health_detail();
  Pending<TaskResult> submitted(io, q.submit(task(1)));
  ASSERT_TRUE(wait_until([&] { return hang.started.load() == 1; }));
  worker.stop(5s);
  EXPECT_FALSE(worker.healthy());
  std::this_thread::sleep_for(200ms);  // stopping, the task still in progress...
  hang.release();                      // ... finishes, and is acknowledged before the close
  auto r = submitted.wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error, "released");
  // The result reaches the owner before the worker's ack is counted.
  EXPECT_TRUE(
      wait_until([&] { return metric(metrics::global().tasks_consumed) - consumed0 == 1u; }));
  auto c = direct();
  EXPECT_EQ(c->declare_queue_passive(prefix + "tasks").messages, 0u);
}
