// Helpers for the AMQP tests: an io_context on background threads, running a coroutine to a
// future with a timeout, unique queue prefixes, a fake local queue, a direct broker connection.
#pragma once
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "amqp/connection.hpp"
#include "broker.hpp"
#include "queue/task_queue.hpp"

namespace el::test {

namespace net = boost::asio;
using namespace std::chrono_literals;

// Declare it before the objects under test: they post to it, so they must go first.
class IoThreads {
 public:
  explicit IoThreads(int n = 2) : work_(net::make_work_guard(ioc_)) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }
  ~IoThreads() {
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
  }
  net::any_io_executor executor() { return ioc_.get_executor(); }
  net::io_context& context() { return ioc_; }

 private:
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// Starts a coroutine now; get it with wait() (gtest assertions cannot run inside coroutines).
template <class T>
class Pending {
 public:
  Pending(IoThreads& io, net::awaitable<T> aw)
      : f_(net::co_spawn(io.executor(), std::move(aw), net::use_future)) {}
  std::optional<T> wait(std::chrono::milliseconds timeout = 20s) {
    if (f_.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return f_.get();
  }

 private:
  std::future<T> f_;
};

inline bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Every test its own queues, so tests and reruns never see each other's messages.
inline std::string unique_prefix(const std::string& name) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return "t." + name + "." + std::to_string(rng() % 1000000) + ".";
}

// The api node's own fallback: records what ran here.
class FakeLocal final : public queue::TaskQueue {
 public:
  net::awaitable<queue::TaskResult> submit(queue::FetchTask task) override {
    ++ran;
    queue::TaskResult r;
    r.last_uid = task.after_uid + 1000;
    r.error = "ran locally";
    co_return r;
  }
  std::atomic<int> ran{0};
};

// A connection of the test itself, to look at queues behind the adapters' backs.
inline std::unique_ptr<amqp::Connection> direct(std::uint16_t port = broker().port()) {
  amqp::Url u;
  u.host = "127.0.0.1";
  u.port = port;
  amqp::ConnectOptions o;
  o.name = "test";
  return std::make_unique<amqp::Connection>(u, o);
}

inline std::uint64_t metric(const std::atomic<std::uint64_t>& m) { return m.load(); }

}  // namespace el::test
