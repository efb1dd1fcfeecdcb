// What the HTTP API asks of the service: the use cases behind each route, with domain errors
// (mapped to HTTP statuses in one place, http/errors.cpp). Implementations are thread-safe.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <cstddef>
#include <string>

#include "core/types.hpp"

namespace el::service {

namespace net = boost::asio;

enum class Errc { none, not_found, already_exists, invalid_argument, unavailable, internal };

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
  // Live nodes of the fleet. -> {"items": [{"id","role","mailboxes","capacity",...}]}
  virtual net::awaitable<Outcome> list_nodes() = 0;
  // Readiness for /readyz: start-up finished and the registry, queue and sinks are usable.
  // -> {"ready": bool, "checks": {"registry": "ok" | reason, ...}}
  virtual boost::json::object readiness() const = 0;
  // Gauges the service owns (mailboxes by state, ...), Prometheus text, appended to /metrics.
  virtual std::string metrics_text() const = 0;
};

}  // namespace el::service
