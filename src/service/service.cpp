// The mailbox service: API use cases and the set of live sessions.
#include "service/service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "service/backfill.hpp"
#include "service/credentials.hpp"
#include "service/fetcher.hpp"
#include "service/mail_tools.hpp"
#include "service/sender.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
namespace json = boost::json;
using core::SessionState;

namespace {
Outcome unavailable(const std::exception& e) {
  return Outcome::fail(Errc::unavailable, std::string("the registry is unavailable: ") + e.what());
}
}  // namespace

MailboxService::MailboxService(net::io_context& ioc, store::Registry& registry,
                               queue::TaskQueue& queue, delivery::EventSink& sink, Fetcher* fetcher,
                               ServiceOptions opts, Credentials* credentials)
    : ioc_(ioc),
      registry_(registry),
      queue_(queue),
      sink_(sink),
      fetcher_(fetcher),
      opts_(std::move(opts)),
      ownership_(std::make_shared<Ownership>(ioc, registry, opts_.ownership,
                                             static_cast<OwnedSessions&>(*this))) {
  if (credentials == nullptr) {
    CredentialsOptions co;
    co.default_webhook = opts_.default_webhook;
    own_credentials_ = std::make_unique<Credentials>(registry_, co);
    credentials = own_credentials_.get();
  }
  credentials_ = credentials;
  sender_ = std::make_shared<Sender>(ioc_, registry_, sink_, opts_, credentials_);
  backfill_ = std::make_shared<Backfill>(ioc_, registry_, sink_, opts_, credentials_);
}

MailboxService::~MailboxService() {
  stop();
  blocking_.join();
}

template <class F>
net::awaitable<std::optional<std::invoke_result_t<F&>>> MailboxService::guarded(F f,
                                                                                Outcome& failure) {
  try {
    auto r = co_await store::call(registry_, std::move(f));
    co_return std::optional<std::invoke_result_t<F&>>(std::move(r));
  } catch (const store::Unavailable& e) {
    metrics::global().registry_errors.fetch_add(1, std::memory_order_relaxed);
    failure = unavailable(e);
  }
  co_return std::nullopt;
}

void MailboxService::start() {
  ownership_->start();
  if (opts_.ownership.role != "worker") sender_->start();
  log::info("node_started", {{"node", opts_.ownership.node_id},
                             {"role", opts_.ownership.role},
                             {"registry", std::string(registry_.kind())},
                             {"capacity", std::to_string(opts_.ownership.capacity)},
                             {"lease_ms", std::to_string(opts_.ownership.lease.count())}});
  std::lock_guard lk(mu_);
  started_ = true;
}

net::awaitable<void> MailboxService::shutdown() {
  co_await ownership_->release_all();
  stop();
}

void MailboxService::stop() {
  sender_->stop();
  backfill_->stop();
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

void MailboxService::serve(const store::MailboxRecord& record, std::uint64_t epoch,
                           std::chrono::milliseconds delay) {
  if (fetcher_) fetcher_->forget(record.config.id);  // pooled connections of older settings
  start_session(record.config, epoch, delay);
}

void MailboxService::drop(const std::string& id) {
  stop_session(id);
  credentials_->forget(id);
  if (fetcher_) fetcher_->forget(id);
}

void MailboxService::start_session(const core::MailboxConfig& cfg, std::uint64_t epoch,
                                   std::chrono::milliseconds delay) {
  SessionDeps deps{registry_, queue_, sink_, opts_, ownership_.get(), credentials_};
  auto s = std::make_shared<MailboxSession>(ioc_, deps, cfg, epoch);
  std::shared_ptr<MailboxSession> old;
  {
    std::lock_guard lk(mu_);
    auto& slot = sessions_[cfg.id];
    old = std::move(slot);
    slot = s;
  }
  if (old) {
    old->stop();
    std::lock_guard lk(mu_);
    stopping_.push_back(old);
  }
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
    stopping_.push_back(s);
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
  // The owner's live session when this node is the owner; otherwise the state the owner
  // published to the registry; "unassigned" while no node holds the mailbox.
  std::optional<SessionStatus> local;
  {
    std::lock_guard lk(mu_);
    if (auto it = sessions_.find(c.id); it != sessions_.end()) local = it->second->status();
  }
  std::string state = "unassigned", last_error, connected_since;
  if (local && (r.owner.empty() || r.owner == opts_.ownership.node_id)) {
    state = core::to_string(local->state);
    last_error = local->last_error;
    if (local->connected_since) connected_since = core::format_rfc3339(*local->connected_since);
  } else if (!r.owner.empty()) {
    state = r.state.empty() ? std::string(core::to_string(SessionState::connecting)) : r.state;
    last_error = r.last_error;
    connected_since = r.connected_since;
  }
  json::array folders;
  std::vector<std::string> names = c.folders;
  if (c.all_folders) {  // every folder the session found and took a baseline of
    for (const auto& cp : r.checkpoints)
      if (std::find(names.begin(), names.end(), cp.name) == names.end()) names.push_back(cp.name);
  }
  for (const auto& name : names) {
    json::object f{{"name", name}, {"uidvalidity", nullptr}, {"last_uid", nullptr}};
    if (auto* cp = r.checkpoint(name)) {
      f["uidvalidity"] = cp->uidvalidity;
      f["last_uid"] = cp->last_uid;
    }
    folders.push_back(std::move(f));
  }
  json::object o{{"id", c.id},
                 {"email", c.email},
                 {"state", state},
                 {"owner", r.owner.empty() ? json::value(nullptr) : json::value(r.owner)},
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
  if (c.all_folders) o["all_folders"] = true;
  if (!c.sent_folder.empty()) o["sent_folder"] = c.sent_folder;
  if (c.smtp) {
    o["smtp"] =
        json::object{{"host", c.smtp->host},
                     {"port", c.smtp->effective_port()},
                     {"security", core::to_string(c.smtp->security)},
                     {"username", c.smtp->username.empty() ? c.imap.username : c.smtp->username},
                     {"save_to_sent", c.smtp->save_to_sent}};
  }
  if (c.oauth2) {
    json::object a{{"mechanism", c.oauth2->mechanism},
                   {"refresh", !c.oauth2->refresh_url.empty() ? "refresh_url"
                               : c.oauth2->can_refresh()      ? "token_url"
                                                              : "none"}};
    if (c.oauth2->expires_at) a["expires_at"] = core::format_rfc3339(*c.oauth2->expires_at);
    if (!c.oauth2->token_url.empty()) a["token_url"] = c.oauth2->token_url;
    if (!c.oauth2->refresh_url.empty()) a["refresh_url"] = c.oauth2->refresh_url;
    if (!c.oauth2->client_id.empty()) a["client_id"] = c.oauth2->client_id;
    o["oauth2"] = std::move(a);
  }
  if (!r.sync.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(r.sync, ec);
    if (!ec) o["sync"] = std::move(v);
  }
  if (!last_error.empty()) o["last_error"] = last_error;
  if (!connected_since.empty()) o["connected_since"] = connected_since;
  return o;
}

net::awaitable<Outcome> MailboxService::add_mailbox(core::MailboxConfig cfg) {
  if (opts_.webhook_sink && !webhook_for(cfg, opts_))
    co_return Outcome::fail(Errc::invalid_argument,
                            "no webhook: set \"webhook\" on the mailbox or start the service "
                            "with --webhook-url",
                            "webhook.url");
  if (cfg.id.empty()) cfg.id = core::random_event_id();
  store::MailboxRecord rec;
  rec.config = cfg;
  rec.created_at = core::format_rfc3339(std::chrono::system_clock::now());
  Outcome failure;
  auto added = co_await guarded([&] { return registry_.add(rec); }, failure);
  if (!added) co_return failure;
  if (!*added) co_return Outcome::fail(Errc::already_exists, "a mailbox with this id exists", "id");
  // GCC 12 miscompiles co_await inside a condition (SIGILL): await into a variable first.
  const bool saved = co_await flush();
  if (!saved) {
    registry_.remove(cfg.id);
    co_return Outcome::fail(Errc::unavailable, "the registry could not be saved");
  }
  log::info("mailbox_added", {{"mailbox", cfg.id}, {"host", cfg.imap.host}});
  try {
    co_await ownership_->claim_new(cfg.id);
  } catch (const std::exception& e) {
    // Registered; a node claims it at its next tick.
    log::warn("claim_failed", {{"mailbox", cfg.id}, {"error", e.what()}});
  }
  Outcome out;
  out.body = {{"id", cfg.id}, {"state", "connecting"}};
  co_return out;
}

net::awaitable<Outcome> MailboxService::get_mailbox(std::string id) {
  Outcome failure;
  auto rec = co_await guarded([&] { return registry_.get(id); }, failure);
  if (!rec) co_return failure;
  if (!*rec) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  Outcome out;
  out.body = status_json(**rec);
  co_return out;
}

net::awaitable<Outcome> MailboxService::list_mailboxes(std::string cursor, std::size_t limit) {
  Outcome failure;
  auto page = co_await guarded([&] { return registry_.list(cursor, limit + 1); }, failure);
  if (!page) co_return failure;
  const bool more = page->size() > limit;
  if (more) page->resize(limit);
  json::array items;
  for (const auto& r : *page) items.push_back(status_json(r));
  Outcome out;
  out.body["items"] = std::move(items);
  if (more) out.body["next_cursor"] = page->back().config.id;
  co_return out;
}

net::awaitable<Outcome> MailboxService::update_mailbox(core::MailboxConfig cfg, UpdateMask mask) {
  Outcome failure;
  auto current = co_await guarded([&] { return registry_.get(cfg.id); }, failure);
  if (!current) co_return failure;
  if (!*current) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  const auto& cur = **current;
  if (mask.keep_password) cfg.imap.password = cur.config.imap.password;
  if (mask.keep_webhook_secret && cfg.webhook && cur.config.webhook)
    cfg.webhook->secret = cur.config.webhook->secret;
  if (mask.keep_smtp_password && cfg.smtp && cur.config.smtp)
    cfg.smtp->password = cur.config.smtp->password;
  if (cfg.oauth2 && cur.config.oauth2) {
    // Each secret left out keeps its stored value (the service may have refreshed it since
    // the application last saw it).
    auto& a = *cfg.oauth2;
    const auto& old = *cur.config.oauth2;
    if (mask.keep_oauth2_tokens || a.access_token.empty()) {
      a.access_token = old.access_token;
      if (!a.expires_at) a.expires_at = old.expires_at;
    }
    if (a.refresh_token.empty()) a.refresh_token = old.refresh_token;
    if (a.client_secret.empty()) a.client_secret = old.client_secret;
  }
  if (opts_.webhook_sink && !webhook_for(cfg, opts_))
    co_return Outcome::fail(Errc::invalid_argument, "no webhook for this mailbox", "webhook.url");
  auto epoch = co_await guarded([&] { return registry_.replace_config(cfg); }, failure);
  if (!epoch) co_return failure;
  if (!*epoch) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  const bool saved = co_await flush();
  if (!saved) co_return Outcome::fail(Errc::unavailable, "the registry could not be saved");
  log::info("mailbox_updated", {{"mailbox", cfg.id}, {"epoch", std::to_string(**epoch)}});
  // The owner serves the new settings: here at once; on another node at its next renewal,
  // when it sees the epoch moved.
  credentials_->forget(cfg.id);
  co_await ownership_->refresh(cfg.id);
  auto rec = co_await guarded([&] { return registry_.get(cfg.id); }, failure);
  if (!rec) co_return failure;
  if (!*rec) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  Outcome out;
  out.body = status_json(**rec);
  co_return out;
}

net::awaitable<Outcome> MailboxService::remove_mailbox(std::string id) {
  Outcome failure;
  auto removed = co_await guarded([&] { return registry_.remove(id); }, failure);
  if (!removed) co_return failure;
  if (!*removed) co_return Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
  // Here at once; an owner elsewhere stops at its next renewal (the lease is gone).
  ownership_->forget(id);
  drop(id);
  const bool saved = co_await flush();
  if (!saved) co_return Outcome::fail(Errc::unavailable, "the registry could not be saved");
  log::info("mailbox_removed", {{"mailbox", id}});
  Outcome out;
  co_return out;
}

net::awaitable<std::optional<core::MailboxConfig>> MailboxService::config_of(const std::string& id,
                                                                             Outcome& failure) {
  auto rec = co_await guarded([&] { return registry_.get(id); }, failure);
  if (!rec) co_return std::nullopt;
  if (!*rec) {
    failure = Outcome::fail(Errc::not_found, "no mailbox with this id", "id");
    co_return std::nullopt;
  }
  co_return (*rec)->config;
}

net::awaitable<Outcome> MailboxService::send_message(std::string mailbox_id, SendRequest req) {
  Outcome failure;
  auto cfg = co_await config_of(mailbox_id, failure);
  if (!cfg) co_return failure;
  co_return co_await sender_->submit(*cfg, std::move(req));
}

net::awaitable<Outcome> MailboxService::get_send(std::string send_id) {
  co_return co_await sender_->status(std::move(send_id));
}

net::awaitable<Outcome> MailboxService::list_folders(std::string mailbox_id) {
  Outcome failure;
  auto cfg = co_await config_of(mailbox_id, failure);
  if (!cfg) co_return failure;
  co_return co_await folders_of(*cfg, opts_, credentials_);
}

net::awaitable<Outcome> MailboxService::sync_mailbox(std::string mailbox_id, SyncRequest req) {
  Outcome failure;
  auto cfg = co_await config_of(mailbox_id, failure);
  if (!cfg) co_return failure;
  if (opts_.webhook_sink && !webhook_for(*cfg, opts_))
    co_return Outcome::fail(Errc::invalid_argument, "no webhook for this mailbox", "webhook.url");
  co_return co_await backfill_->start(*cfg, std::move(req));
}

net::awaitable<Outcome> MailboxService::validate(core::MailboxConfig cfg) {
  // Tokens refreshed during a check belong to no stored mailbox: a cache of its own.
  CredentialsOptions co;
  co.default_webhook = opts_.default_webhook;
  co.persist = false;  // nothing is stored, even if the body names a stored mailbox
  Credentials scratch(registry_, co);
  co_return co_await validate_settings(cfg, opts_, &scratch);
}

net::awaitable<Outcome> MailboxService::list_nodes() {
  Outcome failure;
  auto nodes = co_await guarded([&] { return registry_.nodes(); }, failure);
  if (!nodes) co_return failure;
  json::array items;
  for (const auto& n : *nodes)
    items.push_back(json::object{{"id", n.id},
                                 {"role", n.role},
                                 {"mailboxes", n.held},
                                 {"capacity", n.capacity},
                                 {"version", n.version},
                                 {"started_at", n.started_at},
                                 {"seen_at", n.seen_at}});
  Outcome out;
  out.body["items"] = std::move(items);
  co_return out;
}

json::object MailboxService::readiness() const {
  bool started;
  {
    std::lock_guard lk(mu_);
    started = started_;
  }
  json::object checks;
  bool ready = started;
  checks["started"] = started ? "ok" : "starting";
  const bool registry_ok = registry_.healthy();
  checks["registry"] = registry_ok ? "ok" : "unavailable";
  ready = ready && registry_ok;
  const bool queue_ok = queue_.healthy();
  checks["queue"] = queue_ok ? std::string("ok") : "unavailable: " + queue_.health_detail();
  ready = ready && queue_ok;
  const bool sink_ok = sink_.healthy();
  checks["sink"] = sink_ok ? "ok" : "unavailable";
  ready = ready && sink_ok;
  return {{"status", ready ? "ready" : "not_ready"}, {"checks", std::move(checks)}};
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
  const auto& sc = sender_->counters();
  out +=
      "# HELP el_sends_total Emails sent through the API by this node, by outcome.\n"
      "# TYPE el_sends_total counter\n"
      "el_sends_total{outcome=\"accepted\"} " +
      std::to_string(sc.accepted.load()) + "\nel_sends_total{outcome=\"sent\"} " +
      std::to_string(sc.sent.load()) + "\nel_sends_total{outcome=\"failed\"} " +
      std::to_string(sc.failed.load()) + "\nel_sends_total{outcome=\"retried\"} " +
      std::to_string(sc.retries.load()) + "\nel_sends_total{outcome=\"saved_to_sent\"} " +
      std::to_string(sc.appended.load()) + "\n";
  out +=
      "# HELP el_oauth2_refreshes_total OAuth2 access tokens refreshed by this node.\n"
      "# TYPE el_oauth2_refreshes_total counter\n"
      "el_oauth2_refreshes_total " +
      std::to_string(credentials_->refreshes()) + "\n";
  out +=
      "# HELP el_leases_held Mailbox leases this node holds.\n"
      "# TYPE el_leases_held gauge\n"
      "el_leases_held " +
      std::to_string(ownership_->held()) + "\n";
  return out;
}

}  // namespace el::service
