// Ownership: leases, fair share, hand-over, state publishing.
#include "service/ownership.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
using std::chrono::milliseconds;

namespace {
constexpr std::size_t kMaxReleasePerTick = 200;  // hand back gradually: no reconnect storm
constexpr milliseconds kStateDelay{200};         // coalescing of published states
constexpr milliseconds kStateRetry{1000};
constexpr std::size_t kMaxClaimsPerTick = 100;  // keeps a tick short: renewals come first
}  // namespace

Ownership::Ownership(net::io_context& ioc, store::Registry& registry, OwnershipOptions opts,
                     OwnedSessions& sessions)
    : strand_(net::make_strand(ioc)),
      registry_(registry),
      opts_(std::move(opts)),
      sessions_(sessions),
      timer_(strand_),
      started_at_(core::format_rfc3339(std::chrono::system_clock::now())) {}

Ownership::~Ownership() = default;

void Ownership::start() {
  net::co_spawn(
      strand_, [self = shared_from_this()] { return self->run(); }, net::detached);
}

std::size_t Ownership::held() const {
  std::lock_guard lk(mu_);
  return held_.size();
}

store::NodeInfo Ownership::info() const {
  store::NodeInfo n;
  n.id = opts_.node_id;
  n.role = opts_.role;
  n.capacity = holds_sessions() ? opts_.capacity : 0;
  n.held = held();
  n.version = opts_.version;
  n.started_at = started_at_;
  return n;
}

std::size_t Ownership::fair_share(std::size_t total, std::size_t live) const {
  live = std::max<std::size_t>(live, 1);
  return std::min(opts_.capacity, (total + live - 1) / live);
}

net::awaitable<void> Ownership::run() {
  auto self = shared_from_this();
  const auto period = this->period();
  // In a fleet, a node's first tick only announces it: claiming waits until the others can
  // count it, or the first node up would take every mailbox and hand most of them back.
  bool first = registry_.kind() != "memory";
  bool outage = false;
  while (!stopped_) {
    try {
      if (first) {
        co_await store::call(registry_, [&] { registry_.heartbeat(info(), opts_.lease); });
        first = false;
      } else {
        co_await tick();
      }
      if (outage) log::info("registry_available", {{"node", opts_.node_id}});
      outage = false;
    } catch (const std::exception& e) {
      metrics::global().registry_errors.fetch_add(1, std::memory_order_relaxed);
      // Sessions keep running through a registry outage: nobody can claim their mailboxes
      // while it lasts, and their checkpoints wait for it.
      if (!outage)
        log::warn("registry_unavailable", {{"node", opts_.node_id}, {"error", e.what()}});
      outage = true;
    }
    if (stopped_) break;
    timer_.expires_after(period);
    co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> Ownership::tick() {
  const auto started = std::chrono::steady_clock::now();
  co_await store::call(registry_, [&] { registry_.heartbeat(info(), opts_.lease); });
  if (!holds_sessions() || stopped_) co_return;
  co_await renew();
  std::size_t total = 0, live = 0;
  co_await store::call(registry_, [&] {
    total = registry_.size();
    for (const auto& n : registry_.nodes())
      if (n.role != "worker") ++live;
  });
  live = std::max<std::size_t>(live, 1);  // this node, even before its heartbeat shows
  last_total_ = total;
  last_live_ = live;
  if (!stopped_) co_await rebalance(total, live);
  const auto took = std::chrono::steady_clock::now() - started;
  if (took > period())
    log::warn("ownership_tick_slow",
              {{"node", opts_.node_id},
               {"ms", std::to_string(std::chrono::duration_cast<milliseconds>(took).count())},
               {"lease_ms", std::to_string(opts_.lease.count())}});
}

milliseconds Ownership::period() const { return std::max(milliseconds(100), opts_.lease / 3); }

net::awaitable<void> Ownership::renew() {
  last_renew_ = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  std::vector<std::uint64_t> epochs;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, e] : held_) {
      ids.push_back(id);
      epochs.push_back(e);
    }
  }
  if (ids.empty()) co_return;
  auto renewed = co_await store::call(
      registry_, [&] { return registry_.renew(opts_.node_id, ids, opts_.lease); });
  if (stopped_) co_return;
  for (std::size_t i = 0; i < ids.size() && i < renewed.size(); ++i) {
    const auto& id = ids[i];
    if (!renewed[i]) {
      // Expired and taken by another node (this one was frozen or cut off), or removed.
      metrics::global().ownership_losses.fetch_add(1, std::memory_order_relaxed);
      log::warn("lease_lost", {{"mailbox", id}, {"node", opts_.node_id}});
      {
        std::lock_guard lk(mu_);
        held_.erase(id);
      }
      sessions_.drop(id);
      continue;
    }
    if (*renewed[i] == epochs[i]) continue;
    // The settings changed through another node: serve the new ones.
    auto rec = co_await store::call(registry_, [&] { return registry_.get(id); });
    if (stopped_) co_return;
    if (!rec) continue;  // removed meanwhile: the next renewal drops it
    {
      std::lock_guard lk(mu_);
      held_[id] = rec->epoch;
    }
    log::info("mailbox_settings_changed", {{"mailbox", id}, {"epoch", std::to_string(rec->epoch)}});
    sessions_.serve(*rec, rec->epoch, milliseconds(0));
  }
}

net::awaitable<void> Ownership::rebalance(std::size_t total, std::size_t live) {
  const std::size_t fair = fair_share(total, live);
  const std::size_t slack = std::max<std::size_t>(1, fair / 10);
  std::size_t have = held();
  log::debug("ownership_tick", {{"node", opts_.node_id},
                                {"mailboxes", std::to_string(total)},
                                {"live_nodes", std::to_string(live)},
                                {"fair_share", std::to_string(fair)},
                                {"held", std::to_string(have)}});
  if (have > fair + slack) {
    // Hand back the excess (a node joined, or capacity shrank): the others claim it at their
    // next tick and resume from the checkpoints.
    std::vector<std::string> give;
    {
      std::lock_guard lk(mu_);
      const std::size_t n = std::min(have - fair, kMaxReleasePerTick);
      for (auto it = held_.rbegin(); it != held_.rend() && give.size() < n; ++it)
        give.push_back(it->first);
      for (const auto& id : give) held_.erase(id);
    }
    for (const auto& id : give) sessions_.drop(id);
    co_await store::call(registry_, [&] { registry_.release(opts_.node_id, give); });
    metrics::global().ownership_releases.fetch_add(give.size(), std::memory_order_relaxed);
    log::info("mailboxes_handed_back", {{"node", opts_.node_id},
                                        {"count", std::to_string(give.size())},
                                        {"fair_share", std::to_string(fair)}});
    co_return;
  }
  if (have >= fair) co_return;
  auto candidates = co_await store::call(registry_, [&] { return registry_.unowned(fair - have); });
  // Spread the logins of a large claim (start-up, a dead node's share) so that thousands of
  // sessions do not stampede the mail servers: 5 ms per mailbox, at most a minute.
  const auto spread =
      opts_.start_spread.count() > 0
          ? opts_.start_spread.count()
          : std::min<std::int64_t>(60000, static_cast<std::int64_t>(candidates.size()) * 5);
  std::size_t claimed = 0;
  for (const auto& id : candidates) {
    if (stopped_ || held() >= fair || claimed >= kMaxClaimsPerTick) break;
    // A slow registry or a large claim must not starve the renewal of what is already held:
    // a lease that expires under a live session costs a hand-over for nothing.
    if (std::chrono::steady_clock::now() - last_renew_ >= period()) co_await renew();
    const milliseconds delay(
        candidates.size() > 1 ? std::uniform_int_distribution<std::int64_t>(0, spread)(rng_) : 0);
    const bool ok = co_await try_claim(id, delay);
    if (ok) ++claimed;
  }
  if (claimed > 0)
    log::info("mailboxes_claimed", {{"node", opts_.node_id},
                                    {"count", std::to_string(claimed)},
                                    {"held", std::to_string(held())},
                                    {"fair_share", std::to_string(fair)}});
}

net::awaitable<bool> Ownership::try_claim(const std::string& id, milliseconds delay) {
  auto epoch = co_await store::call(
      registry_, [&] { return registry_.claim(id, opts_.node_id, opts_.lease); });
  if (!epoch) co_return false;  // another node was faster
  auto rec = co_await store::call(registry_, [&] { return registry_.get(id); });
  if (!rec || stopped_) {
    co_await store::call(registry_, [&] { registry_.release(opts_.node_id, {id}); });
    co_return false;
  }
  {
    std::lock_guard lk(mu_);
    held_[id] = rec->epoch;
  }
  metrics::global().ownership_claims.fetch_add(1, std::memory_order_relaxed);
  sessions_.serve(*rec, rec->epoch, delay);
  co_return true;
}

net::awaitable<void> Ownership::claim_new(std::string id) {
  auto self = shared_from_this();
  // GCC 12 destroys temporaries of a co_await expression twice: the closure (which owns
  // `self`) and the operation are named locals.
  auto fn = [self, id]() -> net::awaitable<void> {
    if (self->stopped_ || !self->holds_sessions()) co_return;
    // Registrations between two ticks grow the total the last tick saw.
    const auto fair = self->fair_share(++self->last_total_, self->last_live_);
    if (self->held() >= fair) co_return;  // another node claims it at its next tick
    co_await self->try_claim(id, milliseconds(0));
  };
  auto op = net::co_spawn(strand_, std::move(fn), net::use_awaitable);
  co_await std::move(op);
}

net::awaitable<void> Ownership::refresh(std::string id) {
  auto self = shared_from_this();
  // GCC 12 destroys temporaries of a co_await expression twice: the closure (which owns
  // `self`) and the operation are named locals.
  auto fn = [self, id]() -> net::awaitable<void> {
    {
      std::lock_guard lk(self->mu_);
      if (self->stopped_ || !self->held_.contains(id)) co_return;
    }
    auto rec = co_await store::call(self->registry_, [&] { return self->registry_.get(id); });
    if (!rec || self->stopped_) co_return;
    {
      std::lock_guard lk(self->mu_);
      if (!self->held_.contains(id)) co_return;
      self->held_[id] = rec->epoch;
    }
    self->sessions_.serve(*rec, rec->epoch, milliseconds(0));
  };
  auto op = net::co_spawn(strand_, std::move(fn), net::use_awaitable);
  co_await std::move(op);
}

void Ownership::forget(const std::string& id) {
  std::lock_guard lk(mu_);
  held_.erase(id);
}

net::awaitable<void> Ownership::release_all() {
  auto self = shared_from_this();
  // GCC 12 destroys temporaries of a co_await expression twice: the closure (which owns
  // `self`) and the operation are named locals.
  auto fn = [self]() -> net::awaitable<void> {
    self->stopped_ = true;
    self->timer_.cancel();
    std::vector<std::string> ids;
    {
      std::lock_guard lk(self->mu_);
      for (const auto& [id, e] : self->held_) ids.push_back(id);
      self->held_.clear();
    }
    for (const auto& id : ids) self->sessions_.drop(id);
    try {
      co_await store::call(self->registry_, [&] {
        self->registry_.release(self->opts_.node_id, ids);
        self->registry_.remove_node(self->opts_.node_id);
      });
      metrics::global().ownership_releases.fetch_add(ids.size(), std::memory_order_relaxed);
      log::info("leases_released",
                {{"node", self->opts_.node_id}, {"count", std::to_string(ids.size())}});
    } catch (const std::exception& e) {
      // They expire after the lease time instead.
      log::warn("leases_not_released", {{"node", self->opts_.node_id}, {"error", e.what()}});
    }
  };
  auto op = net::co_spawn(strand_, std::move(fn), net::use_awaitable);
  co_await std::move(op);
}

void Ownership::publish_state(store::StateUpdate update) {
  {
    std::lock_guard lk(mu_);
    const auto id = update.id;
    pending_states_[id] = std::move(update);
    if (flush_scheduled_) return;
    flush_scheduled_ = true;
  }
  net::co_spawn(
      strand_, [self = shared_from_this()] { return self->flush_states(); }, net::detached);
}

net::awaitable<void> Ownership::flush_states() {
  net::steady_timer t(strand_);
  auto delay = kStateDelay;
  while (true) {
    t.expires_after(delay);
    co_await t.async_wait(net::as_tuple(net::use_awaitable));
    std::map<std::string, store::StateUpdate> batch;
    {
      std::lock_guard lk(mu_);
      batch.swap(pending_states_);
      if (batch.empty()) {
        flush_scheduled_ = false;
        co_return;
      }
    }
    std::vector<store::StateUpdate> updates;
    for (auto& [id, u] : batch) updates.push_back(std::move(u));
    try {
      co_await store::call(registry_, [&] { registry_.publish_states(updates); });
      delay = kStateDelay;
    } catch (const std::exception&) {
      std::lock_guard lk(mu_);
      for (auto& u : updates) pending_states_.try_emplace(u.id, std::move(u));  // newer wins
      delay = kStateRetry;
    }
  }
}

}  // namespace el::service
