// MailboxSession: IDLE/poll loops per folder, baselines, fetch-task hand-off, reconnects.
#include "service/session.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "service/fetcher.hpp"
#include "service/imap_connect.hpp"
#include "service/mail_tools.hpp"
#include "service/ownership.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
using core::SessionState;
using queue::TaskResult;
using std::chrono::milliseconds;

struct MailboxSession::Folder {
  explicit Folder(const net::any_io_executor& ex, std::string n)
      : name(std::move(n)), sleep_timer(ex), retry_timer(ex) {}
  std::string name;
  SessionState state = SessionState::connecting;
  std::string error;
  std::optional<std::chrono::system_clock::time_point> connected_since;
  imap::Client* client = nullptr;  // the live connection, while connected
  bool idling = false;
  bool reconnect = false;  // a task saw a new UIDVALIDITY: take a new baseline
  std::uint32_t uidvalidity = 0;
  std::uint32_t baseline = 0;  // checkpoint taken at connect, used if the registry has none
  bool in_flight = false;      // separate connection: a fetch task runs or waits to be retried
  bool pending = false;        // separate connection: new mail announced while a task ran
  bool want_fetch = false;     // same connection: there is mail above the checkpoint
  std::chrono::steady_clock::time_point retry_at{};  // same connection: not before this
  int task_failures = 0;
  bool status_polled = false;  // beyond the IDLE limit: watched by the poller, by design
  net::steady_timer sleep_timer;
  net::steady_timer retry_timer;
};

namespace {
// Never inlined into a coroutine: a thread_local's address must be computed on the thread that
// runs the call, not cached in a frame that resumes on another thread.
[[gnu::noinline]] double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
}

int severity(SessionState s) {
  switch (s) {
    case SessionState::auth_failed:
      return 5;
    case SessionState::backoff:
      return 4;
    case SessionState::connecting:
      return 3;
    case SessionState::polling:
      return 2;
    case SessionState::idle:
      return 1;
    case SessionState::stopped:
      return 0;
  }
  return 0;
}
}  // namespace

MailboxSession::MailboxSession(net::io_context& ioc, SessionDeps deps, core::MailboxConfig cfg,
                               std::uint64_t epoch)
    : strand_(net::make_strand(ioc)), deps_(deps), cfg_(std::move(cfg)), epoch_(epoch) {}

void MailboxSession::add_folder(const std::string& name) {
  for (const auto& f : folders_)
    if (f->name == name) return;
  auto f = std::make_shared<Folder>(strand_, name);
  folders_.push_back(f);
  if (idle_loops_ < std::max<std::size_t>(1, deps_.opts.session.max_idle_connections)) {
    ++idle_loops_;
    net::co_spawn(strand_, run_folder(f), net::detached);
    return;
  }
  f->status_polled = true;
  polled_.push_back(f);
  if (!poller_running_) {
    poller_running_ = true;
    net::co_spawn(strand_, run_poller(), net::detached);
  }
}

MailboxSession::~MailboxSession() = default;

void MailboxSession::start(milliseconds delay) {
  auto self = shared_from_this();
  // A new owner's session replaces whatever the previous one published ("stopped" after a
  // hand-over): status from any node says "connecting" until this session reports otherwise.
  if (deps_.ownership)
    deps_.ownership->publish_state({cfg_.id, epoch_, std::string(core::to_string(status().state)),
                                    std::string(), std::string()});
  net::co_spawn(
      strand_,
      [self, delay]() -> net::awaitable<void> {
        if (delay.count() > 0) {
          net::steady_timer t(self->strand_, delay);
          self->start_timer_ = &t;
          co_await t.async_wait(net::as_tuple(net::use_awaitable));
          self->start_timer_ = nullptr;
        }
        if (self->stopped_) co_return;
        self->started_ = true;
        for (const auto& name : self->cfg_.folders) self->add_folder(name);
        if (self->cfg_.all_folders)
          net::co_spawn(self->strand_, self->run_discovery(), net::detached);
      },
      net::detached);
}

void MailboxSession::stop() {
  net::post(strand_, [self = shared_from_this()] {
    if (self->stopped_) return;
    self->stopped_ = true;
    if (self->start_timer_) self->start_timer_->cancel();
    if (self->poller_client_) self->poller_client_->interrupt();
    if (self->discovery_timer_) self->discovery_timer_->cancel();
    for (auto& f : self->folders_) {
      if (f->client && f->idling) f->client->interrupt();
      f->sleep_timer.cancel();
      f->retry_timer.cancel();
    }
  });
}

SessionStatus MailboxSession::status() const {
  std::lock_guard lk(status_mu_);
  return status_;
}

milliseconds MailboxSession::backoff(int attempt) const {
  const auto& o = deps_.opts.session;
  double base = static_cast<double>(o.backoff_initial.count());
  for (int i = 0; i < attempt && base < static_cast<double>(o.backoff_max.count()); ++i) base *= 2;
  base = std::min(base, static_cast<double>(o.backoff_max.count()));
  return milliseconds(static_cast<std::int64_t>(base * jitter()));
}

net::awaitable<void> MailboxSession::sleep(Folder& f, milliseconds d) {
  f.sleep_timer.expires_after(d);
  co_await f.sleep_timer.async_wait(net::as_tuple(net::use_awaitable));
}

void MailboxSession::emit(core::Event ev) {
  auto target = webhook_for(cfg_, deps_.opts);
  if (!target && deps_.opts.webhook_sink) return;
  if (!target) target.emplace();  // the sink does not use it
  auto self = shared_from_this();
  net::co_spawn(
      strand_,
      [self, ev = std::move(ev), target = std::move(*target)]() -> net::awaitable<void> {
        co_await self->deps_.sink.deliver(ev, target);
      },
      net::detached);
}

void MailboxSession::set_state(Folder& f, SessionState s, std::string error) {
  f.state = s;
  if (!error.empty()) f.error = std::move(error);
  if (s == SessionState::idle || s == SessionState::polling) {
    f.error.clear();
    if (!f.connected_since) f.connected_since = std::chrono::system_clock::now();
  } else {
    f.connected_since.reset();
  }
  update_aggregate();
}

void MailboxSession::update_aggregate() {
  SessionStatus next;
  next.state = SessionState::stopped;
  for (const auto& f : folders_) {
    // A folder polled by design beside IDLE folders does not make the mailbox "polling".
    const auto st =
        f->status_polled && f->state == SessionState::polling ? SessionState::idle : f->state;
    if (severity(st) > severity(next.state)) next.state = st;
    if (!f->error.empty()) next.last_error = f->name + ": " + f->error;
    if (f->connected_since &&
        (!next.connected_since || *f->connected_since < *next.connected_since))
      next.connected_since = f->connected_since;
  }
  if (folders_.empty()) next.state = SessionState::stopped;
  SessionState previous;
  {
    std::lock_guard lk(status_mu_);
    previous = status_.state;
    const bool changed = previous != next.state;
    status_ = next;
    if (!changed) return;
  }
  if (deps_.ownership) {
    store::StateUpdate u;
    u.id = cfg_.id;
    u.epoch = epoch_;
    u.state = core::to_string(next.state);
    u.last_error = next.last_error;
    if (next.connected_since) u.connected_since = core::format_rfc3339(*next.connected_since);
    deps_.ownership->publish_state(std::move(u));
  }
  log::info("mailbox_state", {{"mailbox", cfg_.id},
                              {"state", std::string(core::to_string(next.state))},
                              {"previous", std::string(core::to_string(previous))},
                              {"error", next.last_error}});
  if (next.state == SessionState::stopped) return;  // the application asked for it
  core::Event ev;
  ev.id = core::random_event_id();
  ev.type = "mailbox.state";
  ev.mailbox_id = cfg_.id;
  ev.created_at = core::format_rfc3339(std::chrono::system_clock::now());
  ev.data = {{"state", core::to_string(next.state)},
             {"previous", core::to_string(previous)},
             {"email", cfg_.email}};
  if (!next.last_error.empty()) ev.data["error"] = next.last_error;
  emit(std::move(ev));
}

net::awaitable<std::uint32_t> MailboxSession::checkpoint_uid(Folder& f) {
  try {
    auto rec = co_await store::call(deps_.registry, [&] { return deps_.registry.get(cfg_.id); });
    if (rec) {
      if (auto* cp = rec->checkpoint(f.name); cp && cp->uidvalidity == f.uidvalidity)
        f.baseline = std::max(cp->last_uid, f.baseline);
    }
  } catch (const store::Unavailable&) {
    // Registry down: go on from what this session knows; a task then waits for the registry
    // to save its checkpoint, and nothing is acknowledged that was not saved.
  }
  co_return f.baseline;
}

net::awaitable<void> MailboxSession::take_baseline(Folder& f, imap::Client& c,
                                                   std::uint32_t uidvalidity,
                                                   std::uint32_t uidnext) {
  auto rec = co_await store::call(deps_.registry, [&] { return deps_.registry.get(cfg_.id); });
  const core::FolderCheckpoint* cp = rec ? rec->checkpoint(f.name) : nullptr;
  f.uidvalidity = uidvalidity;
  if (cp && cp->uidvalidity == uidvalidity) {
    f.baseline = cp->last_uid;  // resume where delivery stopped
    co_return;
  }
  std::uint32_t last = 0;
  if (uidnext > 0) {
    last = uidnext - 1;
  } else {  // the server did not say: ask for the highest UID
    auto all = co_await c.uid_search("UID 1:*");
    if (!all.empty()) last = *std::max_element(all.begin(), all.end());
  }
  if (!cp && cfg_.since) {
    // Backfill: everything received since the date (IMAP SEARCH has day granularity).
    auto uids = co_await c.uid_search("SINCE " + imap::format_search_date(*cfg_.since));
    if (!uids.empty()) last = *std::min_element(uids.begin(), uids.end()) - 1;
  }
  if (cp) {
    // UIDVALIDITY changed: old UIDs mean nothing now. One reset event, then a new baseline;
    // never a replay of the folder.
    log::warn("mailbox_reset", {{"mailbox", cfg_.id},
                                {"folder", f.name},
                                {"previous_uidvalidity", std::to_string(cp->uidvalidity)},
                                {"uidvalidity", std::to_string(uidvalidity)}});
    core::Event ev;
    ev.id = core::random_event_id();
    ev.type = "mailbox.reset";
    ev.mailbox_id = cfg_.id;
    ev.created_at = core::format_rfc3339(std::chrono::system_clock::now());
    ev.data = {{"folder", f.name},
               {"previous_uidvalidity", cp->uidvalidity},
               {"uidvalidity", uidvalidity},
               {"last_uid", last}};
    emit(std::move(ev));
  }
  f.baseline = last;
  const core::FolderCheckpoint cp_new{f.name, uidvalidity, last};
  co_await store::call(deps_.registry,
                       [&] { return deps_.registry.save_checkpoint(cfg_.id, epoch_, cp_new, 0); });
}

net::awaitable<void> MailboxSession::check_new(const std::shared_ptr<Folder>& f, imap::Client& c) {
  const std::uint32_t last = co_await checkpoint_uid(*f);
  auto uids = co_await c.uid_search("UID " + std::to_string(last + 1) + ":*");
  if (std::any_of(uids.begin(), uids.end(), [&](std::uint32_t u) { return u > last; }))
    request_fetch(f);
}

void MailboxSession::request_fetch(const std::shared_ptr<Folder>& f) {
  // Downloads on the folder's own connection only when the task runs in this process; with
  // workers consuming from RabbitMQ the connection stays in IDLE while a worker downloads.
  if (deps_.opts.session.fetch_on_idle_connection && deps_.queue.runs_here())
    f->want_fetch = true;  // the folder loop downloads once out of IDLE (after any backoff)
  else
    trigger_task(f);
}

milliseconds MailboxSession::retry_delay(Folder& f, const TaskResult& r) {
  // The sink refused or the download failed: the backlog waits on the mail server, not in
  // memory, and is retried from the checkpoint after a growing delay.
  ++f.task_failures;
  const auto delay = backoff(f.task_failures);
  log::warn("fetch_task_retry", {{"mailbox", cfg_.id},
                                 {"folder", f.name},
                                 {"error", r.error},
                                 {"last_uid", std::to_string(r.last_uid)},
                                 {"retry_in_ms", std::to_string(delay.count())}});
  return delay;
}

net::awaitable<void> MailboxSession::fetch_inline(Folder& f, imap::Client& c) {
  const std::uint32_t after = co_await checkpoint_uid(f);  // not inside the braces: GCC 12
  queue::FetchTask task{cfg_.id, f.name, f.uidvalidity, after, epoch_, &c};
  const TaskResult r = co_await deps_.queue.submit(task);
  switch (r.status) {
    case TaskResult::Status::done:
      f.want_fetch = false;
      f.task_failures = 0;
      break;
    case TaskResult::Status::retry_later: {
      if (r.connection_failed) throw imap::Error(imap::ErrorKind::io, r.error);
      f.retry_at = std::chrono::steady_clock::now() + retry_delay(f, r);
      break;
    }
    case TaskResult::Status::reset:
      f.want_fetch = false;
      f.reconnect = true;
      break;
    case TaskResult::Status::stale:
      f.want_fetch = false;
      break;
  }
}

void MailboxSession::trigger_task(const std::shared_ptr<Folder>& f) {
  if (stopped_) return;
  if (f->in_flight) {
    f->pending = true;
    return;
  }
  f->in_flight = true;
  f->pending = false;
  net::co_spawn(strand_, run_task(f), net::detached);
}

net::awaitable<void> MailboxSession::run_task(std::shared_ptr<Folder> f) {
  auto self = shared_from_this();
  const std::uint32_t after = co_await checkpoint_uid(*f);  // not inside the braces: GCC 12
  queue::FetchTask task{cfg_.id, f->name, f->uidvalidity, after, epoch_};
  TaskResult r;
  try {
    r = co_await deps_.queue.submit(task);
  } catch (const std::exception& e) {
    r.status = TaskResult::Status::retry_later;
    r.error = e.what();
  }
  if (stopped_) {
    f->in_flight = false;
    co_return;
  }
  switch (r.status) {
    case TaskResult::Status::done:
      f->task_failures = 0;
      f->in_flight = false;
      if (f->pending) trigger_task(f);
      break;
    case TaskResult::Status::retry_later: {
      f->retry_timer.expires_after(retry_delay(*f, r));
      co_await f->retry_timer.async_wait(net::as_tuple(net::use_awaitable));
      f->in_flight = false;
      if (!stopped_) trigger_task(f);
      break;
    }
    case TaskResult::Status::reset:
      f->in_flight = false;
      f->reconnect = true;
      if (f->client && f->idling) f->client->interrupt();
      break;
    case TaskResult::Status::stale:
      f->in_flight = false;
      break;
  }
}

net::awaitable<void> MailboxSession::run_discovery() {
  auto self = shared_from_this();
  const auto& o = deps_.opts.session;
  const ImapTimeouts timeouts{o.connect_timeout, o.command_timeout, o.done_timeout, 64 * 1024};
  net::steady_timer timer(strand_);
  discovery_timer_ = &timer;
  int attempt = 0;
  while (!stopped_) {
    milliseconds next = o.folder_rescan;
    try {
      auto client = co_await open_imap(cfg_, timeouts, deps_.credentials);
      auto names = co_await resolve_folders(*client, cfg_, 1000);
      co_await client->logout();
      if (stopped_) break;
      const std::size_t before = folders_.size();
      for (const auto& n : names) add_folder(n);
      if (folders_.size() != before)
        log::info("folders_discovered", {{"mailbox", cfg_.id},
                                         {"folders", std::to_string(folders_.size())},
                                         {"polled", std::to_string(polled_.size())}});
      attempt = 0;
    } catch (const std::exception& e) {
      // The INBOX loop reports connection problems; here only the next try is planned.
      next = backoff(attempt++);
      log::warn("folder_discovery_failed", {{"mailbox", cfg_.id}, {"error", e.what()}});
    }
    timer.expires_after(next);
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  }
  discovery_timer_ = nullptr;
}

net::awaitable<void> MailboxSession::run_poller() {
  auto self = shared_from_this();
  const auto& o = deps_.opts.session;
  const ImapTimeouts timeouts{o.connect_timeout, o.command_timeout, o.done_timeout, 64 * 1024};
  int attempt = 0;
  while (!stopped_ && !polled_.empty()) {
    auto& first = *polled_.front();  // its timer paces the poller
    std::string error;
    try {
      auto client = co_await open_imap(cfg_, timeouts, deps_.credentials);
      // NOTIFY (RFC 5465) where offered: the server tells this one connection when any of the
      // folders changes; STATUS rounds then run on news (and every recheck), not on a timer.
      const bool notify =
          o.use_notify && client->has_capability("NOTIFY") && client->has_capability("IDLE");
      std::size_t notified_for = 0;  // folders covered by the last NOTIFY SET
      bool selected = false;
      while (!stopped_) {
        if (notify && notified_for != polled_.size()) {
          std::vector<std::string> names;
          for (const auto& f : polled_) names.push_back(f->name);
          co_await client->notify_set(names);
          notified_for = names.size();
        }
        // STATUS of the selected folder reports the connection's view, which only a command
        // like NOOP brings up to date (Dovecot): refresh it first.
        if (selected) co_await client->noop();
        for (std::size_t i = 0; i < polled_.size() && !stopped_; ++i) {
          auto f = polled_[i];
          const auto st = co_await client->status(f->name);
          if (f->uidvalidity != st.uidvalidity) {
            // First sight, or the folder was recreated: a baseline (reset event if so). A
            // "since" baseline searches, which needs the folder selected.
            imap::SelectInfo info{st.uidvalidity, st.uidnext, st.messages};
            if (cfg_.since || st.uidnext == 0) {
              info = co_await client->select(f->name, /*read_only=*/true);
              selected = true;
            }
            co_await take_baseline(*f, *client, info.uidvalidity, info.uidnext);
            set_state(*f, SessionState::polling);
            log::info("folder_watching", {{"mailbox", cfg_.id},
                                          {"folder", f->name},
                                          {"mode", notify ? "notify" : "status-polling"},
                                          {"uidvalidity", std::to_string(info.uidvalidity)},
                                          {"last_uid", std::to_string(f->baseline)}});
            continue;  // the STATUS answer predates the baseline: look again next round
          }
          const std::uint32_t last = co_await checkpoint_uid(*f);
          if (st.uidnext > 0 && st.uidnext - 1 > last) trigger_task(f);
          if (f->state != SessionState::polling) set_state(*f, SessionState::polling);
        }
        attempt = 0;
        if (stopped_) break;
        if (notify) {
          const bool baselines_pending = std::any_of(
              polled_.begin(), polled_.end(), [](const auto& f) { return f->uidvalidity == 0; });
          if (baselines_pending) continue;
          poller_client_ = client.get();
          auto r = co_await client->idle(std::min(o.idle_refresh, o.recheck_interval));
          poller_client_ = nullptr;
          if (!r.notified.empty())
            log::debug("folders_notified",
                       {{"mailbox", cfg_.id}, {"folders", std::to_string(r.notified.size())}});
        } else {
          co_await sleep(first, o.status_poll_interval);
        }
      }
      poller_client_ = nullptr;
      co_await client->logout();
      continue;
    } catch (const std::exception& e) {
      error = e.what();
    }
    poller_client_ = nullptr;
    const auto delay = backoff(attempt++);
    for (auto& f : polled_) set_state(*f, SessionState::backoff, error);
    log::warn(
        "folder_poll_failed",
        {{"mailbox", cfg_.id}, {"error", error}, {"retry_in_ms", std::to_string(delay.count())}});
    co_await sleep(first, delay);
  }
  for (auto& f : polled_) set_state(*f, SessionState::stopped);
  poller_running_ = false;
}

net::awaitable<void> MailboxSession::run_folder(std::shared_ptr<Folder> f) {
  auto self = shared_from_this();
  const auto& o = deps_.opts.session;
  // The session's connection also downloads (fetch_inline): literals up to the message limit.
  const ImapTimeouts timeouts{o.connect_timeout, o.command_timeout, o.done_timeout,
                              deps_.opts.fetch.max_message_bytes + 64 * 1024};
  int attempt = 0;
  while (!stopped_) {
    // A retry after a failure keeps reporting the failure until it succeeds: no event per try.
    if (f->state != SessionState::backoff && f->state != SessionState::auth_failed)
      set_state(*f, SessionState::connecting);
    std::unique_ptr<imap::Client> client;
    std::string error;
    bool auth_refused = false;
    try {
      client = co_await open_imap(cfg_, timeouts, deps_.credentials);
      auto info = co_await client->select(f->name, /*read_only=*/true);
      co_await take_baseline(*f, *client, info.uidvalidity, info.uidnext);
      f->reconnect = false;
      const bool has_idle = client->has_capability("IDLE");
      f->client = client.get();
      set_state(*f, has_idle ? SessionState::idle : SessionState::polling);
      log::info("folder_watching", {{"mailbox", cfg_.id},
                                    {"folder", f->name},
                                    {"mode", has_idle ? "idle" : "polling"},
                                    {"uidvalidity", std::to_string(info.uidvalidity)},
                                    {"last_uid", std::to_string(f->baseline)}});
      co_await check_new(f, *client);  // catch up on what arrived while we were away
      const bool inline_fetch = o.fetch_on_idle_connection;
      const auto recheck_every = std::min(o.idle_refresh, o.recheck_interval);
      auto last_check = std::chrono::steady_clock::now();
      while (!stopped_ && !f->reconnect) {
        auto now = std::chrono::steady_clock::now();
        if (inline_fetch && f->want_fetch && now >= f->retry_at) {
          co_await fetch_inline(*f, *client);
          attempt = 0;  // the connection works: the next failure starts a fresh backoff
          continue;
        }
        // Wait for news: until the re-check is due, or a download retry is.
        auto wait = std::chrono::duration_cast<milliseconds>(recheck_every - (now - last_check));
        if (inline_fetch && f->want_fetch)
          wait = std::min(wait, std::chrono::duration_cast<milliseconds>(f->retry_at - now));
        wait = std::max(wait, milliseconds(1));
        bool news = false;
        if (has_idle) {
          f->idling = true;
          auto r = co_await client->idle(wait);
          f->idling = false;
          attempt = 0;
          if (stopped_ || f->reconnect) break;
          news = r.new_mail;
        } else {
          co_await sleep(*f, std::min(wait, o.poll_interval));
          if (stopped_) break;
          news = co_await client->noop();
          attempt = 0;
        }
        if (news) {
          request_fetch(f);
        } else if (std::chrono::steady_clock::now() - last_check >= recheck_every) {
          co_await check_new(f, *client);  // catch pushes the server missed
          last_check = std::chrono::steady_clock::now();
        }
      }
      f->client = nullptr;
      co_await client->logout();
      continue;  // stopped, or a new baseline is needed after a UIDVALIDITY change
    } catch (const imap::Error& e) {
      error = e.what();
      auth_refused = e.kind() == imap::ErrorKind::auth;
    } catch (const std::exception& e) {
      error = e.what();
    }
    f->client = nullptr;
    f->idling = false;
    client.reset();
    if (stopped_) break;
    if (auth_refused) {
      // Never a reconnect loop against a server that refuses the password.
      metrics::global().imap_auth_failures.fetch_add(1, std::memory_order_relaxed);
      set_state(*f, SessionState::auth_failed, "authentication refused: " + error);
      co_await sleep(*f, o.auth_retry);
    } else {
      metrics::global().imap_reconnects.fetch_add(1, std::memory_order_relaxed);
      const auto delay = backoff(attempt++);
      set_state(*f, SessionState::backoff, error);
      log::warn("imap_disconnected", {{"mailbox", cfg_.id},
                                      {"folder", f->name},
                                      {"error", error},
                                      {"retry_in_ms", std::to_string(delay.count())}});
      co_await sleep(*f, delay);
    }
  }
  f->client = nullptr;
  set_state(*f, SessionState::stopped);
}

}  // namespace el::service
