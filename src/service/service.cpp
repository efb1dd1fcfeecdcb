// The mailbox service: API use cases and the set of live sessions.
#include "service/service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "core/log.hpp"
#include "service/fetcher.hpp"

namespace el::service {

namespace net = boost::asio;
namespace json = boost::json;
using core::SessionState;

MailboxService::MailboxService(net::io_context& ioc, store::Registry& registry,
                               queue::TaskQueue& queue, delivery::EventSink& sink, Fetcher* fetcher,
                               ServiceOptions opts)
    : ioc_(ioc),
      registry_(registry),
      queue_(queue),
      sink_(sink),
      fetcher_(fetcher),
      opts_(std::move(opts)) {}

MailboxService::~MailboxService() {
  stop();
  blocking_.join();
}

void MailboxService::start() {
  std::vector<store::MailboxRecord> all;
  for (std::string after;;) {
    auto page = registry_.list(after, 1000);
    if (page.empty()) break;
    after = page.back().config.id;
    for (auto& r : page) all.push_back(std::move(r));
  }
  std::mt19937_64 rng{std::random_device{}()};
  // Spread the logins over time so a restart with thousands of mailboxes does not stampede the
  // mail servers: the configured window, or by default 5 ms per mailbox, at most a minute.
  auto spread = opts_.session.start_spread.count();
  if (spread <= 0)
    spread = std::min<std::int64_t>(60000, static_cast<std::int64_t>(all.size()) * 5);
  for (const auto& r : all) {
    const auto delay = spread > 0 ? std::uniform_int_distribution<std::int64_t>(0, spread)(rng) : 0;
    start_session(r.config, r.epoch, std::chrono::milliseconds(delay));
  }
  log::info("sessions_started", {{"mailboxes", std::to_string(all.size())}});
  std::lock_guard lk(mu_);
  started_ = true;
}

void MailboxService::stop() {
  std::map<std::string, std::shared_ptr<MailboxSession>, std::less<>> sessions;
  {
    std::lock_guard lk(mu_);
    sessions.swap(sessions_);
    started_ = false;
  }
  for (auto& [id, s] : sessions) {
    s->stop();
    std::lock_guard lk(mu_);
    stopping_.push_back(s);
  }
}

bool MailboxService::sessions_ended() const {
  std::lock_guard lk(mu_);
  for (const auto& w : stopping_)
    if (!w.expired()) return false;
  return true;
}

void MailboxService::start_session(const core::MailboxConfig& cfg, std::uint64_t epoch,
                                   std::chrono::milliseconds delay) {
  auto s = std::make_shared<MailboxSession>(ioc_, SessionDeps{registry_, queue_, sink_, opts_}, cfg,
                                            epoch);
  std::shared_ptr<MailboxSession> old;
  {
    std::lock_guard lk(mu_);
    auto& slot = sessions_[cfg.id];
    old = std::move(slot);
    slot = s;
  }
  if (old) old->stop();
  s->start(delay);
}

void MailboxService::stop_session(const std::string& id) {
  std::shared_ptr<MailboxSession> s;
  {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    s = std::move(it->second);
    sessions_.erase(it);
  }
  s->stop();
}

net::awaitable<bool> MailboxService::flush() {
  auto ok = co_await net::co_spawn(
      blocking_,
      [this]() -> net::awaitable<bool> {
        try {
          registry_.flush();
          co_return true;
        } catch (const std::exception& e) {
          log::error("registry_flush_failed", {{"error", e.what()}});
          co_return false;
        }
      },
      net::use_awaitable);
  co_return ok;
}

json::object MailboxService::status_json(const store::MailboxRecord& r) const {
  const auto& c = r.config;
  SessionStatus st;
  st.state = SessionState::stopped;
  {
    std::lock_guard lk(mu_);
    if (auto it = sessions_.find(c.id); it != sessions_.end()) st = it->second->status();
  }
  json::array folders;
  for (const auto& name : c.folders) {
    json::object f{{"name", name}, {"uidvalidity", nullptr}, {"last_uid", nullptr}};
    if (auto* cp = r.checkpoint(name)) {
      f["uidvalidity"] = cp->uidvalidity;
      f["last_uid"] = cp->last_uid;
    }
    folders.push_back(std::move(f));
  }
  json::object o{{"id", c.id},
                 {"email", c.email},
                 {"state", core::to_string(st.state)},
                 {"folders", std::move(folders)},
                 {"delivered", r.delivered},
                 {"created_at", r.created_at},
                 {"imap", json::object{{"host", c.imap.host},
                                       {"port", c.imap.port},
                                       {"security", core::to_string(c.imap.security)},
                                       {"username", c.imap.username},
                                       {"tls_ca_file", c.imap.tls.ca_file},
                                       {"tls_insecure", c.imap.tls.insecure}}}};
  if (c.since) o["since"] = core::format_rfc3339(*c.since);
  if (c.webhook) o["webhook"] = json::object{{"url", c.webhook->url}};
  if (!st.last_error.empty()) o["last_error"] = st.last_error;
  if (st.connected_since) o["connected_since"] = core::format_rfc3339(*st.connected_since);
  return o;
}

net::awaitable<Outcome> MailboxService::add_mailbox(core::MailboxConfig cfg) {
  if (!webhook_for(cfg, opts_))
    co_return Outcome::fail(Errc::invalid_argument,
                            "no webhook: set \"webhook\" on the mailbox or start the service "
                            "with --webhook-url",
                            "webhook.url");
  if (cfg.id.empty()) cfg.id = core::random_event_id();
  store::MailboxRecord rec;
  rec.config = cfg;
  rec.created_at = core::format_rfc3339(std::chrono::system_clock::now());
  if (!registry_.add(rec))
    co_return Outcome::fail(Errc::already_exists, "a mailbox with this id exists", "id");
  // GCC 12 miscompiles co_await inside a condition (SIGILL): await into a variable first.
  const bool saved = co_await flush();
  if (!saved) {
    registry_.remove(cfg.id);
    co_return Outcome::fail(Errc::unavailable, "the registry could not be saved");
  }
  log::info("mailbox_added", {{"mailbox", cfg.id}, {"host", cfg.imap.host}});
  start_session(cfg, rec.epoch, {});
  Outcome out;
  out.body = {{"id", cfg.id}, {"state", "connecting"}};
  co_return out;
}

net::awaitable<Outcome> MailboxService::get_mailbox(std::string id) {
  auto rec = registry_.get(id);
  if (!rec) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  Outcome out;
  out.body = status_json(*rec);
  co_return out;
}

net::awaitable<Outcome> MailboxService::list_mailboxes(std::string cursor, std::size_t limit) {
  auto page = registry_.list(cursor, limit + 1);
  const bool more = page.size() > limit;
  if (more) page.resize(limit);
  json::array items;
  for (const auto& r : page) items.push_back(status_json(r));
  Outcome out;
  out.body["items"] = std::move(items);
  if (more) out.body["next_cursor"] = page.back().config.id;
  co_return out;
}

net::awaitable<Outcome> MailboxService::update_mailbox(core::MailboxConfig cfg, UpdateMask mask) {
  auto current = registry_.get(cfg.id);
  if (!current) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  if (mask.keep_password) cfg.imap.password = current->config.imap.password;
  if (mask.keep_webhook_secret && cfg.webhook && current->config.webhook)
    cfg.webhook->secret = current->config.webhook->secret;
  if (!webhook_for(cfg, opts_))
    co_return Outcome::fail(Errc::invalid_argument, "no webhook for this mailbox", "webhook.url");
  auto epoch = registry_.replace_config(cfg);
  if (!epoch) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  const bool saved = co_await flush();
  if (!saved) co_return Outcome::fail(Errc::unavailable, "the registry could not be saved");
  if (fetcher_) fetcher_->forget(cfg.id);
  log::info("mailbox_updated", {{"mailbox", cfg.id}, {"epoch", std::to_string(*epoch)}});
  start_session(cfg, *epoch, {});
  auto rec = registry_.get(cfg.id);
  if (!rec) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  Outcome out;
  out.body = status_json(*rec);
  co_return out;
}

net::awaitable<Outcome> MailboxService::remove_mailbox(std::string id) {
  if (!registry_.remove(id))
    co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  stop_session(id);
  if (fetcher_) fetcher_->forget(id);
  const bool saved = co_await flush();
  if (!saved) co_return Outcome::fail(Errc::unavailable, "the registry could not be saved");
  log::info("mailbox_removed", {{"mailbox", id}});
  Outcome out;
  co_return out;
}

bool MailboxService::ready() const {
  std::lock_guard lk(mu_);
  return started_;
}

std::string MailboxService::metrics_text() const {
  std::map<SessionState, std::size_t> by_state;
  for (auto s : {SessionState::connecting, SessionState::idle, SessionState::polling,
                 SessionState::backoff, SessionState::auth_failed, SessionState::stopped})
    by_state[s] = 0;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, s] : sessions_) ++by_state[s->status().state];
  }
  std::string out =
      "# HELP el_mailboxes Mailboxes served by this node, by session state.\n"
      "# TYPE el_mailboxes gauge\n";
  for (const auto& [s, n] : by_state)
    out += "el_mailboxes{state=\"" + std::string(core::to_string(s)) + "\"} " + std::to_string(n) +
           "\n";
  out +=
      "# HELP el_active_subscriptions Mailboxes with a live IDLE or polling session.\n"
      "# TYPE el_active_subscriptions gauge\n"
      "el_active_subscriptions " +
      std::to_string(by_state[SessionState::idle] + by_state[SessionState::polling]) + "\n";
  return out;
}

}  // namespace el::service
