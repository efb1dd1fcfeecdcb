// A RabbitMQ connection kept up by its own thread, for callers that must never block.
//
// rabbitmq-c is blocking and not thread-safe, so a Link owns one Connection and one std::thread
// that does everything on it: connects (again after reconnect_delay on any failure), runs the
// requests other threads post to its inbox, reads frames (deliveries, publisher confirms) and
// hands them to the hooks. Hooks, requests and publish completions run on that thread and must
// be quick; async_publish() carries a completion to the caller's executor instead.
//
// Thread-safety: post(), publish(), stop(), connected(), last_error() from any thread; the rest
// as documented. Everything posted or published gets its callback exactly once, with nullptr /
// a failure when there is no connection (the link is down past the deadline, or stopped).
// Lifetime: join() (or the destructor) before destroying the executors that callbacks post to.
#pragma once
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "amqp/connection.hpp"
#include "amqp/url.hpp"

namespace el::amqp {

struct PublishResult {
  bool ok = false;  // the broker confirmed it (basic.ack, and routed if it was mandatory)
  std::string error;
};

class Link {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    Url url;
    std::string name;  // for logs and the broker's connection list
    std::chrono::milliseconds reconnect_delay{1000};
    ConnectOptions connect;
  };

  // All run on the link's thread. A hook that throws drops the connection (reconnect follows).
  struct Hooks {
    // After each (re)connect, before any request runs on it: declare, consume, confirm_select.
    std::function<void(Connection&)> on_connect;
    std::function<void(Connection&, Delivery&&)> on_delivery;
    // Every turn of the loop while connected, at least every 200 ms: periodic work.
    std::function<void(Connection&)> on_idle;
    // The connection is gone (why is empty after a requested stop); pending publishes failed.
    std::function<void(const std::string& why)> on_disconnect;
  };

  // nullptr: no connection came up before the request's deadline, or the link stopped.
  using Request = std::function<void(Connection*)>;
  // The Connection is the one the publish went out on, nullptr once it is gone.
  using PublishDone = std::function<void(PublishResult, Connection*)>;

  Link(Options opts, Hooks hooks);
  ~Link();  // stop() and join()
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  void start();
  // Non-blocking: requests already posted still run, then the thread closes the connection
  // politely and ends. Requests posted later get nullptr at once, on the caller's thread.
  void stop();
  // Waits for the thread; a connect attempt in progress is not interrupted (it is bounded by
  // ConnectOptions::timeout).
  void join();

  // Runs fn on the link's thread. While the link is down, fn waits for a connection until
  // `deadline` (the default: not at all).
  void post(Request fn, Clock::time_point deadline = {});
  // Publishes with publisher confirms (on_connect must have called confirm_select()); done gets
  // ok only for a basic.ack within `timeout`, counted from now (waiting for a connection too).
  void publish(Message m, bool mandatory, std::chrono::milliseconds timeout, PublishDone done);
  // The same, from the link's thread (hooks, requests, completions) on its connection `c`.
  // Rethrows what the publish threw, after failing `done`.
  void publish_here(Connection& c, Message m, bool mandatory, Clock::time_point deadline,
                    PublishDone done);

  bool connected() const;  // connected and on_connect succeeded
  // Counts connections; delivery tags are valid only within the one they came from.
  std::uint64_t generation() const;
  std::string last_error() const;  // empty while connected
  const Url& url() const;
  const std::string& name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Publishes through `link` and completes `token` on its associated executor (a coroutine's, for
// use_awaitable), keeping that executor busy meanwhile. Signature: void(PublishResult).
template <class Token>
auto async_publish(Link& link, Message m, bool mandatory, std::chrono::milliseconds timeout,
                   Token&& token) {
  namespace net = boost::asio;
  return net::async_initiate<Token, void(PublishResult)>(
      [&link](auto handler, Message msg, bool mand, std::chrono::milliseconds t) {
        using Handler = std::decay_t<decltype(handler)>;
        auto work = net::make_work_guard(net::get_associated_executor(handler));
        using Work = decltype(work);
        // std::function needs copyable callables; the handler and the guard are move-only.
        auto h = std::make_shared<Handler>(std::move(handler));
        auto w = std::make_shared<Work>(std::move(work));
        link.publish(std::move(msg), mand, t, [h, w](PublishResult r, Connection*) {
          net::post(w->get_executor(), [h, w, r = std::move(r)]() mutable {
            auto fn = std::move(*h);
            w->reset();
            std::move(fn)(std::move(r));
          });
        });
      },
      token, std::move(m), mandatory, timeout);
}

}  // namespace el::amqp
