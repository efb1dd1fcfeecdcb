// Sending mail: accept, store, run (SMTP, Sent folder, outcome event), retry, resume.
#include "service/sender.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "core/log.hpp"
#include "delivery/backoff.hpp"
#include "imap/client.hpp"
#include "mime/compose.hpp"
#include "mime/message.hpp"
#include "service/credentials.hpp"
#include "service/fetcher.hpp"
#include "service/imap_connect.hpp"
#include "service/smtp_connect.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
namespace json = boost::json;
using SysClock = std::chrono::system_clock;

namespace {

std::string now_text() { return core::format_rfc3339(SysClock::now()); }

std::string domain_of(std::string_view email) {
  const auto at = email.rfind('@');
  return at == std::string_view::npos ? std::string("localhost")
                                      : std::string(email.substr(at + 1));
}

// The reply as shown to the application: "550 5.1.1 <x@y>: Recipient address rejected".
std::string reply_text(const smtp::Reply& r) { return r.code == 0 ? std::string() : r.str(); }

bool retryable(smtp::ErrorKind k) {
  switch (k) {
    case smtp::ErrorKind::io:
    case smtp::ErrorKind::timeout:
    case smtp::ErrorKind::temporary:
    case smtp::ErrorKind::tls:  // a certificate can be renewed; gives up after max_attempts
      return true;
    case smtp::ErrorKind::protocol:
    case smtp::ErrorKind::auth:
    case smtp::ErrorKind::permanent:
    case smtp::ErrorKind::too_large:
      return false;
  }
  return false;
}

std::string error_code(smtp::ErrorKind k) {
  switch (k) {
    case smtp::ErrorKind::auth:
      return "auth_failed";
    case smtp::ErrorKind::permanent:
      return "rejected";
    case smtp::ErrorKind::temporary:
      return "temporary_failure";
    case smtp::ErrorKind::too_large:
      return "message_too_large";
    case smtp::ErrorKind::tls:
      return "tls_error";
    case smtp::ErrorKind::timeout:
      return "timeout";
    case smtp::ErrorKind::io:
      return "unreachable";
    case smtp::ErrorKind::protocol:
      return "protocol_error";
  }
  return "error";
}

template <class F>
auto on_pool(net::thread_pool& pool, F f) -> net::awaitable<std::invoke_result_t<F&>> {
  using R = std::invoke_result_t<F&>;
  auto fn = [f = std::move(f)]() mutable -> net::awaitable<R> { co_return f(); };
  auto op = net::co_spawn(pool, std::move(fn), net::use_awaitable);
  R r = co_await std::move(op);
  co_return r;
}

// The Sent folder: the configured one, else the one with SPECIAL-USE \Sent, else "Sent".
net::awaitable<std::string> sent_folder(imap::Client& c, const core::MailboxConfig& cfg) {
  if (!cfg.sent_folder.empty()) co_return cfg.sent_folder;
  auto folders = co_await c.list_folders();
  for (const auto& f : folders)
    if (f.special_use == "\\Sent") co_return f.name;
  co_return std::string("Sent");
}

}  // namespace

json::object send_json(const store::SendRecord& s) {
  json::object o{{"send_id", s.id},
                 {"mailbox_id", s.mailbox_id},
                 {"state", s.state},
                 {"message_id", s.message_id},
                 {"created_at", s.created_at},
                 {"updated_at", s.updated_at},
                 {"attempts", s.attempts}};
  json::array rcpts;
  for (const auto& r : s.recipients) rcpts.emplace_back(r);
  o["recipients"] = std::move(rcpts);
  if (!s.idempotency_key.empty()) o["idempotency_key"] = s.idempotency_key;
  if (s.state == "retrying" && !s.next_attempt_at.empty()) o["next_attempt_at"] = s.next_attempt_at;
  if (!s.queue_id.empty()) o["queue_id"] = s.queue_id;
  if (s.reply_code != 0) o["reply"] = json::object{{"code", s.reply_code}, {"text", s.reply_text}};
  if (!s.error_code.empty())
    o["error"] = json::object{{"code", s.error_code}, {"message", s.error_message}};
  if (!s.sent_folder.empty()) {
    if (s.sent_folder.starts_with("appended:")) {
      o["sent_folder"] = json::object{{"state", "appended"}, {"folder", s.sent_folder.substr(9)}};
    } else if (s.sent_folder == "skipped") {
      o["sent_folder"] = json::object{{"state", "skipped"}};
    } else {
      o["sent_folder"] = json::object{{"state", "failed"}, {"error", s.sent_folder}};
    }
  }
  return o;
}

Sender::Sender(net::io_context& ioc, store::Registry& registry, delivery::EventSink& sink,
               const ServiceOptions& opts, Credentials* credentials)
    : ioc_(ioc), registry_(registry), sink_(sink), opts_(opts), credentials_(credentials) {
  mime::initialize();
}

Sender::~Sender() {
  stop();
  cpu_.join();
}

void Sender::start() {
  scan_timer_ = std::make_shared<net::steady_timer>(ioc_);
  auto self = shared_from_this();
  net::co_spawn(
      net::make_strand(ioc_), [self]() -> net::awaitable<void> { co_await self->scan_loop(); },
      net::detached);
}

void Sender::stop() {
  std::lock_guard lk(mu_);
  stopped_ = true;
  if (scan_timer_) net::post(ioc_, [t = scan_timer_] { t->cancel(); });
}

net::awaitable<void> Sender::scan_loop() {
  auto timer = scan_timer_;
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopped_) co_return;
    }
    try {
      auto ids = co_await store::call(registry_, [this] { return registry_.pending_sends(500); });
      std::vector<std::string> renew;
      for (const auto& id : ids) {
        bool mine = false;
        {
          std::lock_guard lk(mu_);
          mine = running_.count(id) > 0;
        }
        if (mine) {
          renew.push_back(id);
        } else {
          launch(id);  // runs it if no other node holds its claim
        }
      }
      // Keeps the claims of the sends running here.
      const std::string node = opts_.ownership.node_id;
      const auto lease = opts_.send.claim;
      co_await store::call(registry_, [&] {
        for (const auto& id : renew) registry_.claim_send(id, node, lease);
        return true;
      });
    } catch (const std::exception& e) {
      log::warn("send_scan_failed", {{"error", e.what()}});
    }
    {
      std::lock_guard lk(mu_);
      if (rescan_) {  // a slot freed while this scan ran
        rescan_ = false;
        continue;
      }
    }
    timer->expires_after(opts_.send.scan_interval);
    auto [ec] = co_await timer->async_wait(net::as_tuple(net::use_awaitable));
    if (ec) {
      std::lock_guard lk(mu_);
      if (stopped_) co_return;
    }
  }
}

void Sender::launch(const std::string& send_id) {
  {
    std::lock_guard lk(mu_);
    if (stopped_ || running_.count(send_id)) return;
    if (running_.size() >= opts_.send.max_concurrent) {
      starved_ = true;  // the next send to end wakes the scan for it
      return;
    }
    running_.insert(send_id);
  }
  auto self = shared_from_this();
  net::co_spawn(
      net::make_strand(ioc_),
      [self, send_id]() -> net::awaitable<void> {
        try {
          co_await self->run(send_id);
        } catch (const std::exception& e) {
          log::error("send_run_failed", {{"send", send_id}, {"error", e.what()}});
        }
        std::lock_guard lk(self->mu_);
        self->running_.erase(send_id);
        // A backlog waits in the registry: scan again now rather than at the next interval.
        if (self->starved_ && self->scan_timer_ && !self->stopped_) {
          self->starved_ = false;
          self->rescan_ = true;
          net::post(self->ioc_, [t = self->scan_timer_] { t->cancel(); });
        }
      },
      net::detached);
}

net::awaitable<std::optional<std::uint64_t>> Sender::size_limit(const core::MailboxConfig& cfg) {
  const std::string key = cfg.smtp->host + ":" + std::to_string(cfg.smtp->effective_port());
  {
    std::lock_guard lk(mu_);
    if (auto it = size_limits_.find(key); it != size_limits_.end()) {
      if (it->second == 0) co_return std::nullopt;
      co_return it->second;
    }
  }
  std::optional<std::uint64_t> limit;
  try {
    SmtpTimeouts t{opts_.send.probe_timeout, opts_.send.probe_timeout, opts_.send.probe_timeout,
                   opts_.send.helo_name};
    auto client = co_await open_smtp(cfg, t, credentials_, /*sign_in=*/false);
    limit = client->max_size();
    co_await client->quit();
  } catch (const std::exception& e) {
    // Unknown for now: the send itself checks again.
    log::debug("smtp_probe_failed", {{"mailbox", cfg.id}, {"error", e.what()}});
    co_return std::nullopt;
  }
  std::lock_guard lk(mu_);
  size_limits_[key] = limit.value_or(0);
  co_return limit;
}

net::awaitable<Outcome> Sender::submit(const core::MailboxConfig& cfg, SendRequest req) {
  if (!cfg.smtp)
    co_return Outcome::fail(Errc::invalid_argument,
                            "the mailbox has no smtp settings: add \"smtp\" to send", "smtp");
  auto& m = req.message;
  m.from = mime::Address{cfg.email, {}};
  const std::string send_id = core::random_event_id();
  m.message_id = send_id + "@" + domain_of(cfg.email);
  m.date = SysClock::now();
  std::string raw;
  std::string compose_field, compose_error;
  {
    auto built = co_await on_pool(cpu_, [&m, &compose_field, &compose_error]() -> std::string {
      try {
        return mime::compose(m);
      } catch (const mime::ComposeError& e) {
        compose_field = e.field();
        compose_error = e.what();
      }
      return {};
    });
    raw = std::move(built);
  }
  if (!compose_error.empty())
    co_return Outcome::fail(Errc::invalid_argument, compose_error, compose_field);

  auto limit = co_await size_limit(cfg);
  if (limit && raw.size() > *limit) {
    const std::string field = !m.attachments.empty() ? "attachments"
                              : !m.html.empty()      ? "html"
                                                     : "text";
    co_return Outcome::fail(Errc::invalid_argument,
                            "the message is " + std::to_string(raw.size()) +
                                " bytes; the SMTP server accepts at most " + std::to_string(*limit),
                            field);
  }

  store::SendRecord rec;
  rec.id = send_id;
  rec.mailbox_id = cfg.id;
  rec.idempotency_key = req.idempotency_key;
  rec.request_hash = req.body_hash;
  rec.state = "queued";
  rec.message_id = m.message_id;
  rec.created_at = rec.updated_at = now_text();
  rec.from = cfg.email;
  for (const auto* list : {&m.to, &m.cc, &m.bcc})
    for (const auto& a : *list) rec.recipients.push_back(a.address);
  rec.raw = std::move(raw);

  std::optional<store::SendRecord> existing;
  try {
    const auto retention = opts_.send.retention;
    existing =
        co_await store::call(registry_, [&] { return registry_.create_send(rec, retention); });
    // Accepted means durable: the state file is written before the 202.
    if (!existing)
      co_await on_pool(cpu_, [this] {
        registry_.flush();
        return true;
      });
  } catch (const std::exception& e) {
    co_return Outcome::fail(Errc::unavailable, std::string("the send was not stored: ") + e.what());
  }
  Outcome out;
  if (existing) {
    if (existing->request_hash != rec.request_hash)
      co_return Outcome::fail(Errc::conflict,
                              "this Idempotency-Key was used for another request body",
                              "Idempotency-Key");
    out.body = {{"send_id", existing->id},
                {"message_id", existing->message_id},
                {"state", existing->state},
                {"duplicate", true}};
    co_return out;
  }
  counters_.accepted.fetch_add(1, std::memory_order_relaxed);
  log::info("send_accepted", {{"mailbox", cfg.id},
                              {"send", rec.id},
                              {"recipients", std::to_string(rec.recipients.size())},
                              {"bytes", std::to_string(rec.raw.size())}});
  const std::string node = opts_.ownership.node_id;
  const auto lease = opts_.send.claim;
  bool claimed = false;
  try {
    claimed =
        co_await store::call(registry_, [&] { return registry_.claim_send(rec.id, node, lease); });
  } catch (const std::exception&) {
    // The scan picks it up.
  }
  if (claimed) launch(rec.id);
  out.body = {{"send_id", rec.id}, {"message_id", rec.message_id}, {"state", "queued"}};
  co_return out;
}

net::awaitable<Outcome> Sender::status(std::string send_id) {
  std::optional<store::SendRecord> rec;
  try {
    rec = co_await store::call(registry_, [&] { return registry_.get_send(send_id); });
  } catch (const std::exception& e) {
    co_return Outcome::fail(Errc::unavailable,
                            std::string("the registry is unavailable: ") + e.what());
  }
  if (!rec) co_return Outcome::fail(Errc::not_found, "no send with this id", "send_id");
  Outcome out;
  out.body = send_json(*rec);
  co_return out;
}

namespace {
// Gives a mailbox's send slot back when the run ends, however it ends.
struct SlotRelease {
  SlotRelease(Sender* s, std::string m) : sender(s), mailbox(std::move(m)) {}
  ~SlotRelease() { sender->release_slot(mailbox); }
  SlotRelease(const SlotRelease&) = delete;
  SlotRelease& operator=(const SlotRelease&) = delete;
  Sender* sender;
  std::string mailbox;
};
}  // namespace

void Sender::release_slot(const std::string& mailbox_id) {
  std::lock_guard lk(mu_);
  auto it = active_.find(mailbox_id);
  if (it == active_.end()) return;
  if (--it->second == 0) active_.erase(it);
}

net::awaitable<void> Sender::run(std::string send_id) {
  std::optional<SlotRelease> slot;
  const std::string node = opts_.ownership.node_id;
  const auto lease = opts_.send.claim;
  auto save = [&](const store::SendRecord& r) -> net::awaitable<void> {
    co_await store::call(registry_, [&] {
      registry_.update_send(r);
      return true;
    });
  };
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopped_) co_return;
    }
    auto rec = co_await store::call(registry_, [&] { return registry_.get_send(send_id); });
    if (!rec) {
      // Expired while pending: leave the pending set.
      store::SendRecord gone;
      gone.id = send_id;
      gone.state = "failed";
      co_await save(gone);
      co_return;
    }
    if (rec->final()) co_return;
    const bool claimed =
        co_await store::call(registry_, [&] { return registry_.claim_send(send_id, node, lease); });
    if (!claimed) co_return;  // another node runs it
    auto mailbox = co_await store::call(registry_, [&] { return registry_.get(rec->mailbox_id); });

    if (rec->outcome.empty() && !mailbox) {
      rec->outcome = "failed";
      rec->error_code = "mailbox_removed";
      rec->error_message = "the mailbox was removed before the message could be sent";
    }
    if (rec->outcome.empty() && mailbox && !mailbox->config.smtp) {
      rec->outcome = "failed";
      rec->error_code = "no_smtp_settings";
      rec->error_message = "the mailbox has no smtp settings any more";
    }
    // At most max_per_mailbox sends of one mailbox talk to its servers at once; the others wait
    // here for a slot (bounded by the node's max_concurrent).
    while (!slot) {
      {
        std::lock_guard lk(mu_);
        if (stopped_) co_return;
        auto& n = active_[rec->mailbox_id];
        if (n < std::max<std::size_t>(1, opts_.send.max_per_mailbox)) {
          ++n;
          slot.emplace(this, rec->mailbox_id);
          break;
        }
      }
      net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(20));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
    }
    if (rec->outcome.empty()) {
      // Wait for the retry time a previous attempt (maybe on another node) set.
      if (!rec->next_attempt_at.empty()) {
        if (auto at = core::parse_rfc3339(rec->next_attempt_at); at && *at > SysClock::now()) {
          net::steady_timer t(
              co_await net::this_coro::executor,
              std::chrono::duration_cast<std::chrono::milliseconds>(*at - SysClock::now()));
          co_await t.async_wait(net::as_tuple(net::use_awaitable));
          continue;  // read the record again: it may have changed meanwhile
        }
      }
      const auto& cfg = mailbox->config;
      rec->state = "sending";
      ++rec->attempts;
      rec->updated_at = now_text();
      co_await save(*rec);
      std::optional<smtp::Error> failure;
      smtp::SendResult result;
      try {
        SmtpTimeouts t{opts_.send.connect_timeout, opts_.send.command_timeout,
                       opts_.send.data_timeout, opts_.send.helo_name};
        auto client = co_await open_smtp(cfg, t, credentials_);
        smtp::Envelope env{rec->from, rec->recipients};
        result = co_await client->send(env, rec->raw);
        co_await client->quit();
      } catch (const smtp::Error& e) {
        failure = e;
      }
      if (!failure) {
        rec->outcome = "sent";
        rec->queue_id = result.queue_id;
        rec->reply_code = result.reply.code;
        rec->reply_text = reply_text(result.reply);
        rec->error_code.clear();
        rec->error_message.clear();
        log::info("send_delivered_to_smtp", {{"mailbox", rec->mailbox_id},
                                             {"send", rec->id},
                                             {"queue_id", rec->queue_id},
                                             {"attempt", std::to_string(rec->attempts)}});
      } else {
        rec->reply_code = failure->reply().code;
        rec->reply_text = reply_text(failure->reply());
        rec->error_code = error_code(failure->kind());
        rec->error_message = failure->what();
        const bool again = retryable(failure->kind()) && rec->attempts < opts_.send.max_attempts;
        log::warn("send_attempt_failed", {{"mailbox", rec->mailbox_id},
                                          {"send", rec->id},
                                          {"attempt", std::to_string(rec->attempts)},
                                          {"kind", smtp::to_string(failure->kind())},
                                          {"error", rec->error_message},
                                          {"retry", again ? "yes" : "no"}});
        if (again) {
          counters_.retries.fetch_add(1, std::memory_order_relaxed);
          const auto delay = delivery::full_jitter(
              static_cast<int>(rec->attempts), opts_.send.backoff_initial, opts_.send.backoff_max);
          rec->state = "retrying";
          rec->next_attempt_at = core::format_rfc3339(SysClock::now() + delay);
          rec->updated_at = now_text();
          co_await save(*rec);
          continue;
        }
        if (retryable(failure->kind()))
          rec->error_message =
              "gave up after " + std::to_string(rec->attempts) + " attempts: " + rec->error_message;
        rec->outcome = "failed";
      }
      rec->updated_at = now_text();
      co_await save(*rec);  // the outcome is known: never sent twice from here on
    }

    // The copy in the Sent folder, once.
    if (rec->outcome == "sent" && rec->sent_folder.empty()) {
      const auto& cfg = mailbox->config;
      if (!cfg.smtp || !cfg.smtp->save_to_sent) {
        rec->sent_folder = "skipped";
      } else {
        try {
          ImapTimeouts t{opts_.send.connect_timeout, opts_.send.command_timeout,
                         opts_.session.done_timeout, 1024};
          auto client = co_await open_imap(cfg, t, credentials_);
          const std::string folder = co_await sent_folder(*client, cfg);
          std::vector<std::string> flags{"\\Seen"};
          co_await client->append(folder, flags, rec->raw);
          co_await client->logout();
          rec->sent_folder = "appended:" + folder;
          counters_.appended.fetch_add(1, std::memory_order_relaxed);
        } catch (const std::exception& e) {
          rec->sent_folder = std::string("failed: ") + e.what();
          log::warn("sent_folder_append_failed",
                    {{"mailbox", rec->mailbox_id}, {"send", rec->id}, {"error", e.what()}});
        }
      }
      rec->updated_at = now_text();
      co_await save(*rec);
    }

    // Report, then end.
    core::Event ev;
    ev.type = rec->outcome == "sent" ? "message.sent" : "message.send_failed";
    ev.id = core::message_event_id(rec->id, ev.type, 0, 0);
    ev.mailbox_id = rec->mailbox_id;
    ev.created_at = now_text();
    ev.data = send_json(*rec);
    ev.data["state"] = rec->outcome;
    std::optional<core::WebhookTarget> target;
    if (mailbox) target = webhook_for(mailbox->config, opts_);
    if (!target && !mailbox && opts_.default_webhook) target = opts_.default_webhook;
    bool reported = true;
    if (target || !opts_.webhook_sink) {
      if (!target) target.emplace();
      reported = co_await sink_.deliver(ev, *target);
    }
    if (!reported) {
      // Not lost: the send stays pending and the scan reports it again later.
      log::warn("send_report_not_accepted", {{"mailbox", rec->mailbox_id}, {"send", rec->id}});
      co_return;
    }
    rec->state = rec->outcome;
    rec->updated_at = now_text();
    co_await save(*rec);
    (rec->state == "sent" ? counters_.sent : counters_.failed)
        .fetch_add(1, std::memory_order_relaxed);
    log::info("send_finished", {{"mailbox", rec->mailbox_id},
                                {"send", rec->id},
                                {"state", rec->state},
                                {"queue_id", rec->queue_id}});
    co_return;
  }
}

}  // namespace el::service
