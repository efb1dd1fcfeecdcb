#include "queue/inproc_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <thread>

namespace net = boost::asio;
using namespace el::queue;

TEST(InprocQueue, BoundsConcurrencyAndRunsEverything) {
  net::io_context ioc(2);
  std::atomic<int> running{0}, peak{0}, done{0};
  InprocQueue q(
      ioc.get_executor(),
      [&](const FetchTask& t) -> net::awaitable<TaskResult> {
        int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        net::steady_timer timer(co_await net::this_coro::executor, std::chrono::milliseconds(5));
        co_await timer.async_wait(net::use_awaitable);
        --running;
        TaskResult r;
        r.last_uid = t.after_uid + 1;
        co_return r;
      },
      3);
  for (int i = 0; i < 40; ++i) {
    net::co_spawn(
        net::make_strand(ioc),
        [&, i]() -> net::awaitable<void> {
          FetchTask t;
          t.after_uid = static_cast<std::uint32_t>(i);
          auto r = co_await q.submit(t);
          EXPECT_EQ(r.last_uid, static_cast<std::uint32_t>(i + 1));
          ++done;
        },
        net::detached);
  }
  std::thread other([&] { ioc.run(); });
  ioc.run();
  other.join();
  EXPECT_EQ(done.load(), 40);
  EXPECT_LE(peak.load(), 3);
  EXPECT_EQ(peak.load(), 3);
  EXPECT_EQ(q.running(), 0u);
  EXPECT_EQ(q.waiting(), 0u);
}
