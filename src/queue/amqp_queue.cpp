// RabbitMQ task queue: AmqpTaskQueue (api side: publish, await the result, fall back to running
// here) and AmqpWorker (consume, run, reply, ack; attempts and dead-lettering). Each owns one
// amqp::Link, whose thread does all the blocking rabbitmq-c work; coroutines only post to it.
#include "queue/amqp_queue.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "amqp/link.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "queue/task_codec.hpp"

namespace el::queue {

namespace {

using Clock = std::chrono::steady_clock;
using Strand = net::strand<net::any_io_executor>;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

constexpr std::chrono::milliseconds kPublishTimeout{10000};  // connection wait + confirm
constexpr auto kConsumersRefresh = std::chrono::seconds(1);
constexpr auto kRetryDelay = std::chrono::seconds(1);  // before a failed requeue is retried
constexpr std::string_view kAttemptsHeader = "x-el-attempts";
constexpr std::string_view kJson = "application/json";

struct Names {
  std::string tasks;
  std::string dead;
  std::string results;
};

// Never inlined into a coroutine: a thread_local's address must be computed on the thread that
// runs the call, not cached in a frame that resumes on another thread.
[[gnu::noinline]] std::string random_hex(std::size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(n, '0');
  for (auto& c : s) c = kHex[rng() & 0xf];
  return s;
}

AmqpQueueOptions validated(AmqpQueueOptions o) {
  if (o.type != "quorum" && o.type != "classic") {
    throw std::invalid_argument("amqp queue type must be quorum or classic, not \"" + o.type +
                                "\"");
  }
  if (o.max_attempts < 1) o.max_attempts = 1;
  o.prefetch = std::clamp<std::size_t>(o.prefetch, 1, std::numeric_limits<std::uint16_t>::max());
  // Results come to a queue named after the node; without a name, one per process.
  if (o.node_id.empty()) o.node_id = "node-" + random_hex(8);
  return o;
}

Names names_of(const AmqpQueueOptions& o) {
  return Names{o.prefix + "tasks", o.prefix + "tasks.dead", o.prefix + "results." + o.node_id};
}

// Both sides declare the same queues with the same arguments; a mismatch with an existing queue
// (another type, another limit) is refused by the broker (PRECONDITION_FAILED), logged and
// retried after the reconnect delay, and health_detail() shows it.
void declare_topology(amqp::Connection& c, const AmqpQueueOptions& o, const Names& n) {
  amqp::QueueSpec dead;
  dead.name = n.dead;
  amqp::set(dead.arguments, "x-queue-type", o.type);
  c.declare_queue(dead);

  amqp::QueueSpec tasks;
  tasks.name = n.tasks;
  amqp::set(tasks.arguments, "x-queue-type", o.type);
  // A task rejected without requeue (malformed) goes to the dead-letter queue.
  amqp::set(tasks.arguments, "x-dead-letter-exchange", std::string());
  amqp::set(tasks.arguments, "x-dead-letter-routing-key", n.dead);
  if (o.type == "quorum") {
    // Safety net only: the worker counts attempts itself (x-el-attempts, republishing), so a
    // message is normally returned to the queue at most once.
    amqp::set(tasks.arguments, "x-delivery-limit", static_cast<std::int64_t>(o.max_attempts));
  }
  c.declare_queue(tasks);
}

amqp::Link::Options link_options(const AmqpQueueOptions& o, std::string name) {
  amqp::Link::Options lo;
  lo.url = amqp::parse_url(o.url);  // throws std::invalid_argument: a configuration error
  lo.name = std::move(name);
  lo.reconnect_delay = o.reconnect_delay;
  return lo;
}

TaskResult retry_later(std::string error) {
  TaskResult r;
  r.status = TaskResult::Status::retry_later;
  r.error = std::move(error);
  return r;
}

std::string health_of(const amqp::Link& link, bool stopped, std::string_view what) {
  if (stopped) return std::string(what) + " stopped";
  if (link.connected()) return {};
  const auto err = link.last_error();
  return "amqp " + link.url().display() + ": " + (err.empty() ? "connecting" : err);
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------
// api side

struct AmqpTaskQueue::Impl {
  // One submit() waiting for its result. Touched only on the submit's strand: the link's thread
  // posts the result there and cancels the timer, which is how the wait ends early.
  struct Waiter {
    explicit Waiter(const Strand& s) : timer(s) {}
    net::steady_timer timer;
    std::optional<TaskResult> result;
    bool stopped = false;
  };
  struct Outstanding {
    std::uint64_t seq = 0;
    Clock::time_point since;
    std::shared_ptr<Waiter> waiter;  // null once the task was taken over here
    std::optional<Strand> strand;
  };
  // What the remote attempt decided; nullopt: run the task here.
  struct Remote {
    std::optional<TaskResult> result;
  };

  Impl(net::any_io_executor e, AmqpQueueOptions o, TaskQueue& fb)
      : ex(std::move(e)),
        opts(validated(std::move(o))),
        fallback(fb),
        names(names_of(opts)),
        instance(random_hex(8)) {
    amqp::Link::Hooks hooks;
    hooks.on_connect = [this](amqp::Connection& c) { on_connect(c); };
    hooks.on_delivery = [this](amqp::Connection&, amqp::Delivery&& d) { on_result(d); };
    hooks.on_idle = [this](amqp::Connection& c) { on_idle(c); };
    hooks.on_disconnect = [this](const std::string&) { consumers = 0; };
    link = std::make_unique<amqp::Link>(link_options(opts, "tasks-api " + opts.node_id),
                                        std::move(hooks));
  }

  // ---- the link's thread ----
  void on_connect(amqp::Connection& c) {
    c.confirm_select();
    declare_topology(c, opts, names);
    amqp::QueueSpec results;
    results.name = names.results;
    results.durable = false;
    results.exclusive = true;  // goes with this connection; a reconnect declares it again
    results.auto_delete = true;
    c.declare_queue(results);
    c.consume(names.results, true);
    refresh(c);
  }

  void on_idle(amqp::Connection& c) {
    const auto now = Clock::now();
    if (now - last_refresh < kConsumersRefresh) return;
    refresh(c);
    std::lock_guard lock(mu);
    // Tasks taken over here whose worker never answered: forgotten after task_timeout.
    for (auto it = by_age.begin(); it != by_age.end();) {
      auto o = outstanding.find(it->second);
      if (o != outstanding.end() && !o->second.waiter &&
          now - o->second.since > opts.task_timeout) {
        outstanding.erase(o);
        it = by_age.erase(it);
      } else {
        ++it;
      }
    }
  }

  void refresh(amqp::Connection& c) {
    consumers = c.declare_queue_passive(names.tasks).consumers;
    last_refresh = Clock::now();
  }

  void on_result(const amqp::Delivery& d) {
    const auto& corr = d.message.props.correlation_id;
    TaskResult r;
    try {
      r = decode_result(d.message.body);
    } catch (const TaskCodecError& e) {
      // Answering now beats leaving the submit to wait for max_wait.
      log::warn("task_result_malformed", {{"correlation_id", corr}, {"error", e.what()}});
      r = retry_later(std::string("malformed result: ") + e.what());
    }
    std::shared_ptr<Waiter> w;
    std::optional<Strand> strand;
    {
      std::lock_guard lock(mu);
      auto it = outstanding.find(corr);
      if (it == outstanding.end()) {
        log::debug("task_result_unknown", {{"correlation_id", corr}});
        return;
      }
      w = std::move(it->second.waiter);
      strand = std::move(it->second.strand);
      by_age.erase(it->second.seq);
      outstanding.erase(it);
    }
    if (!w) {
      // Taken over here meanwhile: both ran, with the same event ids; the registry's epoch
      // fencing keeps the checkpoint consistent. Nothing is waiting for this result.
      log::debug("task_result_late", {{"correlation_id", corr}});
      return;
    }
    net::post(*strand, [w, r = std::move(r)]() mutable {
      w->result = std::move(r);
      w->timer.cancel();
    });
  }

  // ---- any thread ----
  bool runs_here() const {
    if (!link->connected() || consumers.load() == 0) return true;
    std::lock_guard lock(mu);
    if (stopped) return true;
    if (by_age.empty()) return false;
    const auto it = outstanding.find(by_age.begin()->second);
    return it != outstanding.end() && Clock::now() - it->second.since > opts.max_wait;
  }

  std::string correlation_id() {
    return opts.node_id + "." + instance + "." + std::to_string(seq.fetch_add(1) + 1);
  }

  bool add(const std::string& corr, std::shared_ptr<Waiter> w, const Strand& strand,
           Clock::time_point since) {
    std::lock_guard lock(mu);
    if (stopped) return false;
    const auto s = ++age_seq;
    outstanding.emplace(corr, Outstanding{s, since, std::move(w), strand});
    by_age.emplace(s, corr);
    return true;
  }

  void remove(const std::string& corr) {
    std::lock_guard lock(mu);
    auto it = outstanding.find(corr);
    if (it == outstanding.end()) return;
    by_age.erase(it->second.seq);
    outstanding.erase(it);
  }

  // The task stays outstanding (its age keeps runs_here() true: the workers are behind) until
  // its late result arrives or task_timeout passes.
  void take_over(const std::string& corr) {
    std::lock_guard lock(mu);
    auto it = outstanding.find(corr);
    if (it == outstanding.end()) return;
    it->second.waiter.reset();
    it->second.strand.reset();
  }

  void stop() {
    std::vector<std::pair<std::shared_ptr<Waiter>, Strand>> waiting;
    {
      std::lock_guard lock(mu);
      if (stopped) return;
      stopped = true;
      for (auto& [corr, o] : outstanding) {
        if (o.waiter) waiting.emplace_back(std::move(o.waiter), *o.strand);
      }
      outstanding.clear();
      by_age.clear();
    }
    for (auto& [w, strand] : waiting) {
      net::post(strand, [w = w] {
        w->stopped = true;
        w->timer.cancel();
      });
    }
    link->stop();
  }

  // Publishes the task and waits for its result, on the submit's own strand.
  static net::awaitable<Remote> remote(std::shared_ptr<Impl> self, FetchTask task, Strand strand) {
    const auto corr = self->correlation_id();
    auto w = std::make_shared<Waiter>(strand);
    const auto since = Clock::now();
    if (!self->add(corr, w, strand, since)) co_return Remote{retry_later("task queue stopped")};

    amqp::Message m;
    m.routing_key = self->names.tasks;
    m.body = encode_task(task);
    m.props.content_type = kJson;
    m.props.persistent = true;
    m.props.message_id = corr;
    m.props.correlation_id = corr;
    m.props.reply_to = self->names.results;
    const auto publish_timeout = std::min(kPublishTimeout, self->opts.max_wait);
    // mandatory: a tasks queue deleted behind our back must not swallow the task.
    auto published = co_await amqp::async_publish(*self->link, std::move(m), true, publish_timeout,
                                                  net::use_awaitable);
    if (!published.ok) {
      self->remove(corr);
      log::warn(
          "task_publish_failed",
          {{"mailbox", task.mailbox_id}, {"folder", task.folder}, {"error", published.error}});
      co_return Remote{};
    }
    metrics::global().tasks_published.fetch_add(1, std::memory_order_relaxed);

    const bool take_over = self->opts.max_wait <= self->opts.task_timeout;
    const auto deadline = since + (take_over ? self->opts.max_wait : self->opts.task_timeout);
    // The result may have come already (it is posted to this strand): checked before waiting.
    while (!w->result && !w->stopped && Clock::now() < deadline) {
      w->timer.expires_at(deadline);
      co_await w->timer.async_wait(kTuple);
    }
    if (w->result) co_return Remote{std::move(w->result)};
    if (w->stopped) co_return Remote{retry_later("task queue stopped")};
    if (take_over) {
      self->take_over(corr);
      log::info("task_taken_over", {{"mailbox", task.mailbox_id},
                                    {"folder", task.folder},
                                    {"correlation_id", corr},
                                    {"reason", "no result within max_wait"}});
      co_return Remote{};
    }
    self->remove(corr);
    log::warn("task_timed_out",
              {{"mailbox", task.mailbox_id}, {"folder", task.folder}, {"correlation_id", corr}});
    co_return Remote{retry_later("no result within task_timeout")};
  }

  net::any_io_executor ex;
  const AmqpQueueOptions opts;
  TaskQueue& fallback;
  const Names names;
  const std::string instance;  // correlation ids stay unique across restarts of a node
  std::atomic<std::uint64_t> seq{0};
  std::atomic<std::size_t> consumers{0};
  Clock::time_point last_refresh;  // the link's thread only

  mutable std::mutex mu;  // guards everything below
  bool stopped = false;
  std::uint64_t age_seq = 0;
  std::unordered_map<std::string, Outstanding> outstanding;  // by correlation id
  std::map<std::uint64_t, std::string> by_age;               // begin(): the oldest

  // Last: destroyed (its thread joined) before what its hooks use.
  std::unique_ptr<amqp::Link> link;
};

AmqpTaskQueue::AmqpTaskQueue(net::any_io_executor ex, AmqpQueueOptions opts, TaskQueue& fallback)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(opts), fallback)) {
  impl_->link->start();
}

AmqpTaskQueue::~AmqpTaskQueue() {
  impl_->stop();
  impl_->link->join();  // submits still running hold impl_; the link answers them "stopped"
}

net::awaitable<TaskResult> AmqpTaskQueue::submit(FetchTask task) {
  auto impl = impl_;
  bool stopped = false;
  {
    std::lock_guard lock(impl->mu);
    stopped = impl->stopped;
  }
  if (stopped) co_return retry_later("task queue stopped");
  if (!impl->runs_here()) {
    auto strand = net::make_strand(impl->ex);
    auto remote =
        co_await net::co_spawn(strand, Impl::remote(impl, task, strand), net::use_awaitable);
    if (remote.result) co_return std::move(*remote.result);
  }
  // Here, the caller's own executor: a borrowed connection is usable.
  metrics::global().tasks_run_locally.fetch_add(1, std::memory_order_relaxed);
  co_return co_await impl->fallback.submit(std::move(task));
}

bool AmqpTaskQueue::runs_here() const { return impl_->runs_here(); }

bool AmqpTaskQueue::healthy() const {
  std::lock_guard lock(impl_->mu);
  return !impl_->stopped && impl_->link->connected();
}

std::string AmqpTaskQueue::health_detail() const {
  bool stopped = false;
  {
    std::lock_guard lock(impl_->mu);
    stopped = impl_->stopped;
  }
  return health_of(*impl_->link, stopped, "task queue");
}

std::size_t AmqpTaskQueue::consumers() const { return impl_->consumers.load(); }

void AmqpTaskQueue::stop() { impl_->stop(); }

// ------------------------------------------------------------------------------------------
// worker side

struct AmqpWorker::Impl : std::enable_shared_from_this<AmqpWorker::Impl> {
  Impl(net::any_io_executor e, AmqpQueueOptions o, TaskHandler h)
      : ex(std::move(e)),
        opts(validated(std::move(o))),
        handler(std::move(h)),
        names(names_of(opts)) {
    amqp::Link::Hooks hooks;
    hooks.on_connect = [this](amqp::Connection& c) { on_connect(c); };
    hooks.on_delivery = [this](amqp::Connection& c, amqp::Delivery&& d) {
      on_delivery(c, std::move(d));
    };
    hooks.on_idle = [this](amqp::Connection& c) {
      if (!deferred_nacks.empty()) nack_deferred(c);
      maybe_finish_drain();
    };
    hooks.on_disconnect = [this](const std::string&) {
      consumer_tag.clear();
      // Nothing left to acknowledge on a connection that is gone.
      if (draining) link->stop();
    };
    link = std::make_unique<amqp::Link>(link_options(opts, "tasks-worker " + opts.node_id),
                                        std::move(hooks));
  }

  // ---- the link's thread ----
  void on_connect(amqp::Connection& c) {
    c.confirm_select();
    declare_topology(c, opts, names);
    if (draining) {
      link->stop();
      return;
    }
    c.qos(static_cast<std::uint16_t>(opts.prefetch));
    consumer_tag = c.consume(names.tasks, false);
  }

  void nack_deferred(amqp::Connection& c) {
    const auto now = Clock::now();
    const auto gen = link->generation();
    std::erase_if(deferred_nacks, [&](const DeferredNack& d) {
      if (d.generation != gen) return true;  // that channel is gone, and the delivery with it
      if (d.due > now) return false;
      c.nack(d.tag, true);
      return true;
    });
  }

  void maybe_finish_drain() {
    if (draining && (in_flight.load() == 0 || Clock::now() >= drain_deadline())) link->stop();
  }

  void on_delivery(amqp::Connection& c, amqp::Delivery&& d) {
    // Left unacknowledged: it goes back to the queue when the channel closes.
    if (draining) return;
    FetchTask task;
    try {
      task = decode_task(d.message.body);
    } catch (const TaskCodecError& e) {
      // Requeueing would loop forever; the queue's dead-letter arguments move it to tasks.dead.
      log::error("task_malformed",
                 {{"correlation_id", d.message.props.correlation_id}, {"error", e.what()}});
      c.reject(d.delivery_tag, false);
      metrics::global().tasks_dead_lettered.fetch_add(1, std::memory_order_relaxed);
      reply(c, d.message.props, retry_later(std::string("malformed task: ") + e.what()));
      return;
    }
    if (d.redelivered) {
      count_attempt(c, std::move(d), task);
      return;
    }
    run(std::move(d), std::move(task));
  }

  // A redelivery means the previous holder died or failed mid-task. The count lives in the
  // message (x-el-attempts), so it survives every worker: the copy with attempts+1 is
  // published (or, past max_attempts, dead-lettered) and confirmed before the original is acked.
  void count_attempt(amqp::Connection& c, amqp::Delivery&& d, const FetchTask& task) {
    const auto previous = amqp::find_int(d.message.props.headers, kAttemptsHeader).value_or(0);
    const auto attempts = std::max<std::int64_t>(previous, 0) + 1;
    const bool dead = attempts >= static_cast<std::int64_t>(opts.max_attempts);
    amqp::Message copy = d.message;
    copy.exchange.clear();
    copy.routing_key = dead ? names.dead : names.tasks;
    copy.props.persistent = true;
    amqp::set(copy.props.headers, std::string(kAttemptsHeader), attempts);
    const auto tag = d.delivery_tag;
    const auto gen = link->generation();
    link->publish_here(
        c, std::move(copy), true, Clock::now() + kPublishTimeout,
        [this, tag, gen, dead, attempts, props = std::move(d.message.props),
         mailbox = task.mailbox_id](amqp::PublishResult r, amqp::Connection* conn) {
          // Connection gone: the original is back in the queue (and maybe a copy too).
          if (conn == nullptr || link->generation() != gen) return;
          if (!r.ok) {
            // Requeued at once it would come straight back (a blocked broker: a busy loop).
            log::warn("task_requeue_failed", {{"mailbox", mailbox}, {"error", r.error}});
            deferred_nacks.push_back({Clock::now() + kRetryDelay, gen, tag});
            return;
          }
          conn->ack(tag);
          const auto n = std::to_string(attempts);
          if (!dead) {
            log::info("task_attempt_counted", {{"mailbox", mailbox}, {"attempts", n}});
            return;
          }
          metrics::global().tasks_dead_lettered.fetch_add(1, std::memory_order_relaxed);
          log::error("task_dead_lettered",
                     {{"mailbox", mailbox}, {"attempts", n}, {"queue", names.dead}});
          // The owner must not wait for max_wait: it retries from its checkpoint later.
          reply(*conn, props, retry_later("dead-lettered after " + n + " attempts"));
        });
  }

  void reply(amqp::Connection& c, const amqp::Properties& task_props, const TaskResult& r) {
    if (task_props.reply_to.empty()) return;
    amqp::Message m;
    m.routing_key = task_props.reply_to;
    m.body = encode_result(r);
    m.props.content_type = kJson;
    m.props.correlation_id = task_props.correlation_id;
    // Not awaited: the result only saves the owner a wait (it falls back after max_wait).
    link->publish_here(c, std::move(m), false, Clock::now() + kPublishTimeout,
                       [](amqp::PublishResult res, amqp::Connection*) {
                         if (!res.ok) log::debug("task_result_unconfirmed", {{"error", res.error}});
                       });
  }

  void run(amqp::Delivery&& d, FetchTask task) {
    in_flight.fetch_add(1);
    const auto gen = link->generation();
    const auto tag = d.delivery_tag;
    auto mailbox = task.mailbox_id;
    net::co_spawn(net::make_strand(ex), run_handler(handler, std::move(task)),
                  [self = shared_from_this(), gen, tag, props = std::move(d.message.props),
                   mailbox = std::move(mailbox)](std::exception_ptr e, TaskResult r) mutable {
                    self->finish(gen, tag, std::move(props), std::move(mailbox), e, std::move(r));
                  });
  }

  // By value: the handler's coroutine may keep a reference to the task until it completes.
  static net::awaitable<TaskResult> run_handler(TaskHandler h, FetchTask t) {
    co_return co_await h(t);
  }

  // ---- an executor thread ----
  void finish(std::uint64_t gen, std::uint64_t tag, amqp::Properties props, std::string mailbox,
              std::exception_ptr e, TaskResult r) {
    auto self = shared_from_this();
    link->post([self, gen, tag, props = std::move(props), mailbox = std::move(mailbox), e,
                r = std::move(r)](amqp::Connection* c) {
      struct Done {
        Impl& impl;
        ~Done() { impl.in_flight.fetch_sub(1); }
      } done{*self};
      if (c == nullptr || self->link->generation() != gen) {
        log::warn("task_not_acknowledged",
                  {{"mailbox", mailbox}, {"reason", "connection lost; the task is redelivered"}});
        return;
      }
      if (e) {
        log::warn("task_failed", {{"mailbox", mailbox}, {"error", describe(e)}});
        c->nack(tag, true);  // redelivered: counts an attempt
        return;
      }
      self->reply(*c, props, r);
      c->ack(tag);
      metrics::global().tasks_consumed.fetch_add(1, std::memory_order_relaxed);
    });
  }

  Clock::time_point drain_deadline() const {
    return Clock::time_point(Clock::duration(drain_deadline_ticks.load()));
  }

  void stop(std::chrono::milliseconds grace) {
    if (draining.exchange(true)) return;
    drain_deadline_ticks = (Clock::now() + grace).time_since_epoch().count();
    log::info("worker_stopping", {{"in_flight", std::to_string(in_flight.load())}});
    link->post([this](amqp::Connection* c) {
      if (c == nullptr) {
        link->stop();
        return;
      }
      if (!consumer_tag.empty()) {
        c->cancel(consumer_tag);
        consumer_tag.clear();
      }
      maybe_finish_drain();
    });
  }

  net::any_io_executor ex;
  const AmqpQueueOptions opts;
  TaskHandler handler;
  const Names names;
  std::atomic<bool> draining{false};
  std::atomic<Clock::rep> drain_deadline_ticks{0};
  std::atomic<std::size_t> in_flight{0};  // handlers running or waiting for their ack to go out
  // The link's thread only.
  std::string consumer_tag;
  struct DeferredNack {
    Clock::time_point due;
    std::uint64_t generation = 0;
    std::uint64_t tag = 0;
  };
  std::vector<DeferredNack> deferred_nacks;

  // Last: destroyed (its thread joined) before what its hooks use.
  std::unique_ptr<amqp::Link> link;
};

AmqpWorker::AmqpWorker(net::any_io_executor ex, AmqpQueueOptions opts, TaskHandler handler)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(opts), std::move(handler))) {}

AmqpWorker::~AmqpWorker() {
  // Without a stop(grace) first: abrupt, like a crash (unacked tasks are redelivered).
  if (!impl_->draining.exchange(true)) impl_->link->stop();
  impl_->link->join();
}

void AmqpWorker::start() { impl_->link->start(); }

void AmqpWorker::stop(std::chrono::milliseconds grace) { impl_->stop(grace); }

bool AmqpWorker::healthy() const { return !impl_->draining && impl_->link->connected(); }

std::string AmqpWorker::health_detail() const {
  return health_of(*impl_->link, impl_->draining, "worker");
}

}  // namespace el::queue
