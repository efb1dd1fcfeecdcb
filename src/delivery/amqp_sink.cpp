// RabbitMQ exchange sink: publishes each event with publisher confirms through an amqp::Link
// (its thread does the blocking work) and retries with backoff like the webhook.
#include "delivery/amqp_sink.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unordered_set>

#include "amqp/link.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "delivery/backoff.hpp"

namespace el::delivery {

namespace {

using Clock = std::chrono::steady_clock;
using Strand = net::strand<net::any_io_executor>;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);
constexpr std::chrono::milliseconds kReconnectDelay{1000};
constexpr std::string_view kMailboxHeader = "x-el-mailbox-id";

// What one deliver() needs, copied before the first suspension so the caller's event may go.
struct Job {
  std::string body;
  std::string event_id;
  std::string type;
  std::string mailbox_id;
};

// One deliver() call; its timer is touched only on its strand (stop() posts there).
struct Call {
  explicit Call(const Strand& s) : strand(s), wake(s) {}
  Strand strand;
  net::steady_timer wake;  // backoff sleeps
};

net::awaitable<bool> caller_cancelled() {
  auto state = co_await net::this_coro::cancellation_state;
  co_return state.cancelled() != net::cancellation_type::none;
}

}  // namespace

struct AmqpSink::Impl {
  Impl(net::any_io_executor e, AmqpSinkOptions o) : ex(std::move(e)), opts(std::move(o)) {
    if (opts.max_attempts < 1) opts.max_attempts = 1;
    if (opts.exchange_type.empty()) throw std::invalid_argument("amqp sink: empty exchange type");
    amqp::Link::Options lo;
    lo.url = amqp::parse_exchange_url(opts.url);  // throws std::invalid_argument: configuration
    lo.name = "events " + lo.url.exchange;
    lo.reconnect_delay = kReconnectDelay;
    exchange = lo.url.exchange;
    amqp::Link::Hooks hooks;
    hooks.on_connect = [this](amqp::Connection& c) {
      c.confirm_select();
      // Idempotent; a differently typed existing exchange is refused, logged and retried.
      c.declare_exchange(exchange, opts.exchange_type, true);
    };
    link = std::make_unique<amqp::Link>(std::move(lo), std::move(hooks));
    link->start();
  }

  static net::awaitable<bool> deliver(std::shared_ptr<Impl> self, Job job) {
    if (self->stopped) co_return false;
    auto strand = net::make_strand(self->ex);
    auto call = std::make_shared<Call>(strand);
    co_return co_await net::co_spawn(strand, run(self, std::move(job), call), net::use_awaitable);
  }

  void stop() {
    stopped = true;
    std::vector<std::shared_ptr<Call>> active;
    {
      std::lock_guard lock(mu);
      active.assign(calls.begin(), calls.end());
    }
    for (auto& c : active) net::post(c->strand, [c] { c->wake.cancel(); });
    link->stop();  // publishes waiting for a connection or a confirm fail at once
  }

  // Registers a call so stop() can wake its sleep.
  struct Registration {
    Registration(Impl& i, std::shared_ptr<Call> c) : impl(i), call(std::move(c)) {
      std::lock_guard lock(impl.mu);
      impl.calls.insert(call);
    }
    ~Registration() {
      std::lock_guard lock(impl.mu);
      impl.calls.erase(call);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    Impl& impl;
    std::shared_ptr<Call> call;
  };

  amqp::Message message(const Job& job) const {
    amqp::Message m;
    m.exchange = exchange;
    m.routing_key = job.type;
    m.body = job.body;
    m.props.content_type = "application/json";
    m.props.persistent = true;
    m.props.message_id = job.event_id;
    m.props.type = job.type;
    amqp::set(m.props.headers, std::string(kMailboxHeader), job.mailbox_id);
    return m;
  }

  static net::awaitable<bool> run(std::shared_ptr<Impl> self, Job job, std::shared_ptr<Call> call) {
    Registration reg(*self, call);
    const auto& opts = self->opts;
    auto& m = metrics::global();
    const auto deadline = Clock::now() + opts.max_total;
    for (int attempt = 1;; ++attempt) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      // Waiting for a connection counts too; never past max_total.
      const auto timeout =
          std::max(std::min(opts.confirm_timeout, left), std::chrono::milliseconds(1));
      auto published = co_await amqp::async_publish(*self->link, self->message(job), false, timeout,
                                                    net::use_awaitable);
      if (published.ok) {
        m.events_published.fetch_add(1, std::memory_order_relaxed);
        m.events_delivered.fetch_add(1, std::memory_order_relaxed);
        log::debug("amqp_sink_delivered", {{"mailbox", job.mailbox_id},
                                           {"event_id", job.event_id},
                                           {"attempt", std::to_string(attempt)}});
        co_return true;
      }
      // An attempt cut short by stop() says nothing about the broker: not counted.
      if (self->stopped) co_return false;
      const bool cancelled = co_await caller_cancelled();
      if (cancelled) co_return false;

      m.events_failed.fetch_add(1, std::memory_order_relaxed);
      log::warn("amqp_sink_attempt_failed", {{"mailbox", job.mailbox_id},
                                             {"event_id", job.event_id},
                                             {"attempt", std::to_string(attempt)},
                                             {"exchange", self->exchange},
                                             {"error", published.error}});
      const auto delay = full_jitter(attempt, opts.backoff_initial, opts.backoff_max);
      const bool out_of_attempts = attempt >= opts.max_attempts;
      // Sleeping past max_total only to give up afterwards would just hold the caller.
      if (out_of_attempts || Clock::now() + delay >= deadline) {
        m.events_dropped.fetch_add(1, std::memory_order_relaxed);
        log::error("amqp_sink_gave_up",
                   {{"mailbox", job.mailbox_id},
                    {"event_id", job.event_id},
                    {"attempt", std::to_string(attempt)},
                    {"exchange", self->exchange},
                    {"error", out_of_attempts ? "max_attempts reached" : "max_total reached"}});
        co_return false;
      }
      const bool slept = co_await self->sleep(*call, delay);
      if (!slept) co_return false;
      const bool cancelled_in_sleep = co_await caller_cancelled();
      if (cancelled_in_sleep) co_return false;
    }
  }

  net::awaitable<bool> sleep(Call& call, std::chrono::milliseconds delay) {
    // Checked and armed in one strand turn, so stop()'s posted cancel cannot slip in between.
    if (stopped) co_return false;
    call.wake.expires_after(delay);
    co_await call.wake.async_wait(kTuple);
    co_return !stopped;
  }

  net::any_io_executor ex;
  AmqpSinkOptions opts;
  std::string exchange;
  std::atomic<bool> stopped{false};
  std::mutex mu;  // guards calls
  std::unordered_set<std::shared_ptr<Call>> calls;

  // Last: destroyed (its thread joined) before what its hooks use.
  std::unique_ptr<amqp::Link> link;
};

AmqpSink::AmqpSink(net::any_io_executor ex, AmqpSinkOptions opts)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(opts))) {}

// Deliveries in flight own the Impl; stopping makes them finish soon without us.
AmqpSink::~AmqpSink() {
  impl_->stop();
  impl_->link->join();
}

net::awaitable<bool> AmqpSink::deliver(const core::Event& event, const core::WebhookTarget&) {
  // Not a coroutine itself: everything is copied now, so the caller's event may go away.
  return Impl::deliver(impl_, Job{core::serialize(event), event.id, event.type, event.mailbox_id});
}

void AmqpSink::stop() { impl_->stop(); }

bool AmqpSink::healthy() const { return !impl_->stopped && impl_->link->connected(); }

}  // namespace el::delivery
