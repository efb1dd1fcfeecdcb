// What the HTTP API asks of the service: the use cases behind each route, with domain errors
// (mapped to HTTP statuses in one place, http/errors.cpp). Implementations are thread-safe.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <cstddef>
#include <string>

#include "core/types.hpp"
#include "mime/compose.hpp"

namespace el::service {

namespace net = boost::asio;

// conflict: the request contradicts the state (an Idempotency-Key reused for another body);
// bad_gateway: a mail server the request needed failed or refused (folders list).
enum class Errc {
  none,
  not_found,
  already_exists,
  invalid_argument,
  conflict,
  unavailable,
  bad_gateway,
  internal
};

struct Failure {
  Errc code = Errc::none;
  std::string message;
  std::string field;  // the offending input field, when there is one
};

// A JSON answer or a failure.
struct Outcome {
  Failure failure;
  boost::json::object body;
  bool ok() const { return failure.code == Errc::none; }
  static Outcome fail(Errc c, std::string msg, std::string field = {}) {
    Outcome o;
    o.failure = {c, std::move(msg), std::move(field)};
    return o;
  }
};

// For PUT: which parts of the stored settings to keep because the request left them out.
struct UpdateMask {
  bool keep_password = false;        // "imap.password" absent
  bool keep_webhook_secret = false;  // "webhook.secret" absent while "webhook.url" is given
  bool keep_smtp_password = false;   // "smtp.password" absent while "smtp" is given
  // "oauth2" given without "access_token" / "refresh_token" / "client_secret": keep the stored
  // ones (the service may have refreshed them since the application last saw them)
  bool keep_oauth2_tokens = false;
};

// POST /v1/mailboxes/{id}/send, validated. message.from and message_id are filled by the
// service (the mailbox's address; a fresh id).
struct SendRequest {
  mime::OutgoingMessage message;
  std::string idempotency_key;  // empty: none
  std::string body_hash;        // hex SHA-256 of the request body
};

// POST /v1/mailboxes/{id}/sync
struct SyncRequest {
  std::chrono::system_clock::time_point since;
  std::optional<std::chrono::system_clock::time_point> until;
  std::vector<std::string> folders;  // empty: the mailbox's watched folders
};

class MailboxApi {
 public:
  virtual ~MailboxApi() = default;
  // cfg.id empty: the service picks one. -> {"id","state"}; already_exists if the id is taken.
  virtual net::awaitable<Outcome> add_mailbox(core::MailboxConfig cfg) = 0;
  // -> the status object (see docs/api.md); not_found.
  virtual net::awaitable<Outcome> get_mailbox(std::string id) = 0;
  // Ordered by id; cursor = the last id of the previous page. -> {"items","next_cursor"?}
  virtual net::awaitable<Outcome> list_mailboxes(std::string cursor, std::size_t limit) = 0;
  // Replaces the settings (keeping what mask says) and restarts the session. -> status object.
  virtual net::awaitable<Outcome> update_mailbox(core::MailboxConfig cfg, UpdateMask mask) = 0;
  // Stops the session (LOGOUT) and forgets the mailbox. -> empty body; not_found.
  virtual net::awaitable<Outcome> remove_mailbox(std::string id) = 0;
  // Accepts an email for sending (SMTP, then the Sent folder); outcome events follow.
  // -> {"send_id","message_id","state"}; not_found; invalid_argument naming the field.
  virtual net::awaitable<Outcome> send_message(std::string mailbox_id, SendRequest req) = 0;
  // -> the send's state (see docs/api.md); not_found.
  virtual net::awaitable<Outcome> get_send(std::string send_id) = 0;
  // Folders on the server, with roles and counts. -> {"items": [...]}; bad_gateway.
  virtual net::awaitable<Outcome> list_folders(std::string mailbox_id) = 0;
  // Starts delivering the messages of a period as backfill events. -> {"sync_id","state",...}
  virtual net::awaitable<Outcome> sync_mailbox(std::string mailbox_id, SyncRequest req) = 0;
  // Checks settings against the servers without storing anything.
  // -> {"valid", "imap": {...}, "smtp"?: {...}, "error"?: {"code","message"}}
  virtual net::awaitable<Outcome> validate(core::MailboxConfig cfg) = 0;
  // Live nodes of the fleet. -> {"items": [{"id","role","mailboxes","capacity",...}]}
  virtual net::awaitable<Outcome> list_nodes() = 0;
  // Readiness for /readyz: start-up finished and the registry, queue and sinks are usable.
  // -> {"ready": bool, "checks": {"registry": "ok" | reason, ...}}
  virtual boost::json::object readiness() const = 0;
  // Gauges the service owns (mailboxes by state, ...), Prometheus text, appended to /metrics.
  virtual std::string metrics_text() const = 0;
};

}  // namespace el::service
