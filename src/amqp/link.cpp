// The link's thread: connect, serve (inbox, frames, confirms), reconnect after a delay.
#include "amqp/link.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "core/metrics.hpp"

namespace el::amqp {

namespace {

using namespace std::chrono_literals;

// While nothing happens, the loop still turns this often: hooks' periodic work, confirm
// deadlines, and rabbitmq-c's heartbeats (it only sends them from inside its read calls).
constexpr auto kIdleTurn = 200ms;
// Frames handled per turn before the inbox gets a look again (acks must not starve).
constexpr int kFramesPerTurn = 64;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

struct Link::Impl {
  struct Item {
    Request fn;
    Clock::time_point deadline;
  };
  struct Pending {
    Clock::time_point deadline;
    std::string message_id;
    std::string returned;  // why the broker returned it (mandatory, unroutable)
    PublishDone done;
  };

  Impl(Options o, Hooks h) : opts(std::move(o)), hooks(std::move(h)) {
    if (opts.connect.name.empty()) opts.connect.name = "email-listener " + opts.name;
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }

  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void wake() {
    const std::uint64_t one = 1;
    const auto n = ::write(wake_fd, &one, sizeof one);
    (void)n;  // a full counter still wakes the poll
  }

  void post(Request fn, Clock::time_point deadline) {
    std::unique_lock lock(mu);
    if (finished) {
      lock.unlock();
      fn(nullptr);
      return;
    }
    inbox.push_back(Item{std::move(fn), deadline});
    lock.unlock();
    cv.notify_all();
    wake();
  }

  void stop() {
    {
      std::lock_guard lock(mu);
      stop_requested = true;
    }
    cv.notify_all();
    wake();
  }

  std::string not_connected_reason() const {
    std::lock_guard lock(mu);
    if (stop_requested || finished) return "amqp link stopped";
    return last_error.empty() ? "not connected to " + opts.url.display()
                              : "not connected to " + opts.url.display() + ": " + last_error;
  }

  void run() {
    std::string previous_error;
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stop_requested) break;
      }
      std::unique_ptr<Connection> conn;
      std::string why;
      try {
        conn = std::make_unique<Connection>(opts.url, opts.connect);
        generation.fetch_add(1);
        blocked = false;
        if (hooks.on_connect) hooks.on_connect(*conn);
        {
          std::lock_guard lock(mu);
          last_error.clear();
        }
        connected = true;
        log::info("amqp_connected", {{"link", opts.name}, {"broker", opts.url.display()}});
        previous_error.clear();
        serve(*conn);
        fail_pending("amqp link stopped", nullptr);
        conn->close();
      } catch (const std::exception& e) {
        why = e.what();
        if (why.empty()) why = "unknown error";
      }
      const bool was_connected = connected.exchange(false);
      conn.reset();  // without close(): the broker sees the socket go, as after a crash
      if (!why.empty()) {
        metrics::global().amqp_errors.fetch_add(1, std::memory_order_relaxed);
        {
          std::lock_guard lock(mu);
          last_error = why;
        }
        // While the broker stays down, one warning per distinct error, not one per retry.
        if (was_connected || why != previous_error) {
          log::warn("amqp_connection_failed",
                    {{"link", opts.name}, {"broker", opts.url.display()}, {"error", why}});
        } else {
          log::debug("amqp_connection_failed",
                     {{"link", opts.name}, {"broker", opts.url.display()}, {"error", why}});
        }
        previous_error = why;
      } else if (was_connected) {
        log::info("amqp_closed", {{"link", opts.name}, {"broker", opts.url.display()}});
      }
      fail_pending(why.empty() ? "amqp link stopped" : "connection lost: " + why, nullptr);
      if (hooks.on_disconnect) run_guarded([&] { hooks.on_disconnect(why); });
      if (!wait_reconnect()) break;
    }
    std::deque<Item> rest;
    {
      std::lock_guard lock(mu);
      finished = true;
      rest.swap(inbox);
    }
    for (auto& item : rest) run_guarded([&] { item.fn(nullptr); });
    fail_pending("amqp link stopped", nullptr);
  }

  // Sleeps reconnect_delay, meanwhile failing the requests whose deadline passes. False when
  // the link is stopping.
  bool wait_reconnect() {
    const auto until = Clock::now() + opts.reconnect_delay;
    std::unique_lock lock(mu);
    for (;;) {
      if (stop_requested) return false;
      const auto now = Clock::now();
      std::vector<Item> expired;
      for (auto it = inbox.begin(); it != inbox.end();) {
        if (it->deadline <= now) {
          expired.push_back(std::move(*it));
          it = inbox.erase(it);
        } else {
          ++it;
        }
      }
      if (!expired.empty()) {
        lock.unlock();
        for (auto& item : expired) run_guarded([&] { item.fn(nullptr); });
        lock.lock();
        continue;
      }
      if (now >= until) return true;
      auto wake_at = until;
      for (const auto& item : inbox) wake_at = std::min(wake_at, item.deadline);
      cv.wait_until(lock, wake_at);
    }
  }

  void serve(Connection& c) {
    bool was_idle = false;  // the last wait ended by its timeout: nothing was happening
    for (;;) {
      std::deque<Item> items;
      bool stopping = false;
      {
        std::lock_guard lock(mu);
        items.swap(inbox);
        stopping = stop_requested;
      }
      run_items(c, items);
      if (stopping) return;  // what was posted before stop() has run
      expire_confirms(c);
      if (hooks.on_idle) hooks.on_idle(c);

      for (int i = 0; i < kFramesPerTurn; ++i) {
        // While idle, a non-zero wait on the first read lets rabbitmq-c notice a missed broker
        // heartbeat (it checks that deadline only when it may wait); busy turns do not wait.
        const auto wait = (i == 0 && was_idle && !c.buffered()) ? 1ms : 0ms;
        auto ev = c.poll(wait);
        if (!ev) break;
        handle(c, std::move(*ev));
      }
      if (c.buffered()) continue;
      {
        std::lock_guard lock(mu);
        if (!inbox.empty() || stop_requested) continue;
      }
      auto timeout = kIdleTurn;
      const auto now = Clock::now();
      for (const auto& [tag, p] : pending) {
        timeout = std::min(timeout, std::chrono::ceil<std::chrono::milliseconds>(
                                        std::max(p.deadline - now, Clock::duration::zero())));
      }
      pollfd fds[2] = {{c.fd(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
      was_idle = ::poll(fds, 2, static_cast<int>(timeout.count())) == 0;
      if ((fds[1].revents & POLLIN) != 0) {
        std::uint64_t v = 0;
        const auto n = ::read(wake_fd, &v, sizeof v);
        (void)n;
      }
    }
  }

  void run_items(Connection& c, std::deque<Item>& items) {
    while (!items.empty()) {
      auto item = std::move(items.front());
      items.pop_front();
      try {
        item.fn(&c);
      } catch (...) {
        // The connection is broken: the requests not yet run wait for the next one.
        std::lock_guard lock(mu);
        inbox.insert(inbox.begin(), std::make_move_iterator(items.begin()),
                     std::make_move_iterator(items.end()));
        throw;
      }
    }
  }

  void handle(Connection& c, Event&& ev) {
    std::visit(Overloaded{
                   [](std::monostate) {},
                   [&](Delivery& d) {
                     if (hooks.on_delivery) hooks.on_delivery(c, std::move(d));
                   },
                   [&](Confirm& cf) { confirm(c, cf); },
                   [&](Returned& r) { returned(r); },
                   [&](Blocked& b) { set_blocked(b); },
               },
               ev);
  }

  void confirm(Connection& c, const Confirm& cf) {
    std::vector<std::pair<std::uint64_t, Pending>> done;
    if (cf.multiple) {
      const auto end = pending.upper_bound(cf.tag);
      for (auto it = pending.begin(); it != end; ++it)
        done.emplace_back(it->first, std::move(it->second));
      pending.erase(pending.begin(), end);
    } else if (auto it = pending.find(cf.tag); it != pending.end()) {
      done.emplace_back(it->first, std::move(it->second));
      pending.erase(it);
    }
    // Callbacks may publish again (pending changes): they run after the bookkeeping.
    complete(c, done, [&](const Pending& p) {
      PublishResult r;
      r.ok = cf.ack && p.returned.empty();
      if (!cf.ack) {
        r.error = "rejected by the broker (basic.nack)";
      } else if (!p.returned.empty()) {
        r.error = "returned by the broker: " + p.returned;
      }
      return r;
    });
  }

  // Runs the callbacks of `done`. One that throws (its ack found the connection broken) leaves
  // the others pending, so that the disconnect fails them rather than losing them.
  template <class MakeResult>
  void complete(Connection& c, std::vector<std::pair<std::uint64_t, Pending>>& done,
                MakeResult make_result) {
    for (std::size_t i = 0; i < done.size(); ++i) {
      try {
        done[i].second.done(make_result(done[i].second), &c);
      } catch (...) {
        for (std::size_t j = i + 1; j < done.size(); ++j) {
          pending.emplace(done[j].first, std::move(done[j].second));
        }
        throw;
      }
    }
  }

  // A basic.return precedes the confirm of the same publish; message ids pair them up.
  void returned(const Returned& r) {
    const auto& id = r.message.props.message_id;
    for (auto& [tag, p] : pending) {
      if (!id.empty() && p.message_id == id && p.returned.empty()) {
        p.returned = std::to_string(r.reply_code) + " " + r.reply_text;
        return;
      }
    }
    log::debug("amqp_return_unmatched",
               {{"link", opts.name}, {"routing_key", r.message.routing_key}});
  }

  void set_blocked(const Blocked& b) {
    blocked = b.blocked;
    blocked_reason = b.reason;
    if (b.blocked) {
      log::warn("amqp_blocked",
                {{"link", opts.name}, {"broker", opts.url.display()}, {"reason", b.reason}});
    } else {
      log::info("amqp_unblocked", {{"link", opts.name}, {"broker", opts.url.display()}});
    }
  }

  void expire_confirms(Connection& c) {
    const auto now = Clock::now();
    std::vector<std::pair<std::uint64_t, Pending>> expired;
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline <= now) {
        expired.emplace_back(it->first, std::move(it->second));
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    complete(c, expired, [](const Pending&) {
      return PublishResult{false, "no publisher confirm in time"};
    });
  }

  // Without a connection: nothing a callback does can throw for a broken connection.
  void fail_pending(const std::string& why, Connection* c) {
    auto all = std::move(pending);
    pending.clear();
    for (auto& [tag, p] : all) run_guarded([&] { p.done(PublishResult{false, why}, c); });
  }

  // For callbacks that get no connection: a throw there is a bug, logged, not fatal.
  template <class F>
  void run_guarded(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      log::error("amqp_callback_failed", {{"link", opts.name}, {"error", e.what()}});
    }
  }

  void publish_here(Connection& c, Message m, bool mandatory, Clock::time_point deadline,
                    PublishDone done) {
    if (blocked) {
      // Sending now would block this thread (and every other request) until the alarm ends.
      done(PublishResult{false, "the broker blocks publishers: " + blocked_reason}, &c);
      return;
    }
    std::uint64_t tag = 0;
    try {
      tag = c.publish(m, mandatory);
    } catch (const std::exception& e) {
      done(PublishResult{false, e.what()}, nullptr);
      throw;
    }
    if (tag == 0) {  // no confirms on this connection: sent is all we can know
      done(PublishResult{true, {}}, &c);
      return;
    }
    pending.emplace(tag, Pending{deadline, m.props.message_id, {}, std::move(done)});
  }

  Options opts;
  Hooks hooks;

  mutable std::mutex mu;  // guards inbox, stop_requested, finished, last_error
  std::condition_variable cv;
  std::deque<Item> inbox;
  bool stop_requested = false;
  bool finished = false;
  std::string last_error;

  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> generation{0};
  int wake_fd = -1;  // eventfd: post() interrupts the thread's poll()
  std::thread thread;

  // The link's thread only.
  std::map<std::uint64_t, Pending> pending;  // by confirm tag
  bool blocked = false;                      // connection.blocked until unblocked
  std::string blocked_reason;
};

Link::Link(Options opts, Hooks hooks)
    : impl_(std::make_unique<Impl>(std::move(opts), std::move(hooks))) {}

Link::~Link() {
  stop();
  join();
  // Never started: nobody else will answer what was posted.
  std::deque<Impl::Item> rest;
  {
    std::lock_guard lock(impl_->mu);
    impl_->finished = true;
    rest.swap(impl_->inbox);
  }
  for (auto& item : rest) item.fn(nullptr);
}

void Link::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

void Link::stop() { impl_->stop(); }

void Link::join() {
  auto& t = impl_->thread;
  if (!t.joinable()) return;
  if (t.get_id() == std::this_thread::get_id()) {
    // Only reachable if a hook dropped the last owner of the link: a bug (the owners join
    // from their own destructors first); detaching beats std::terminate.
    t.detach();
  } else {
    t.join();
  }
}

void Link::post(Request fn, Clock::time_point deadline) { impl_->post(std::move(fn), deadline); }

void Link::publish(Message m, bool mandatory, std::chrono::milliseconds timeout, PublishDone done) {
  const auto deadline = Clock::now() + timeout;
  auto* impl = impl_.get();
  impl->post(
      [impl, m = std::move(m), mandatory, deadline, done = std::move(done)](Connection* c) mutable {
        if (c == nullptr) {
          done(PublishResult{false, impl->not_connected_reason()}, nullptr);
          return;
        }
        impl->publish_here(*c, std::move(m), mandatory, deadline, std::move(done));
      },
      deadline);
}

void Link::publish_here(Connection& c, Message m, bool mandatory, Clock::time_point deadline,
                        PublishDone done) {
  impl_->publish_here(c, std::move(m), mandatory, deadline, std::move(done));
}

bool Link::connected() const { return impl_->connected.load(); }

std::uint64_t Link::generation() const { return impl_->generation.load(); }

std::string Link::last_error() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_error;
}

const Url& Link::url() const { return impl_->opts.url; }

const std::string& Link::name() const { return impl_->opts.name; }

}  // namespace el::amqp
