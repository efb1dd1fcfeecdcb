// Routing and validation, independent of sockets so unit tests can drive it directly.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <variant>
#include <vector>

#include "service/api.hpp"

namespace el::http {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

struct ApiError {
  unsigned status = 400;
  std::string code;     // machine-readable: "invalid_json", "missing_field", "unauthorized", ...
  std::string message;  // for people
  std::string field;    // dotted path of the offending field ("imap.port"), if any
};

// {"error":{"code","message","field"?}} with the status.
Response error_response(const ApiError& e, unsigned version, bool keep_alive);
// The one place where domain failures become HTTP statuses.
ApiError to_api_error(const service::Failure& f);

enum class BodyMode { create, update };
struct ParsedMailbox {
  core::MailboxConfig config;
  service::UpdateMask mask;
};
// Validates a POST/PUT /v1/mailboxes body: every field typed and checked, unknown fields refused.
std::variant<ParsedMailbox, ApiError> parse_mailbox_body(std::string_view body, BodyMode mode);

// Validates a POST /v1/mailboxes/{id}/send body (recipients, addresses, base64 attachments,
// headers) and the Idempotency-Key header value.
std::variant<service::SendRequest, ApiError> parse_send_body(std::string_view body,
                                                             std::string_view idempotency_key);
// Validates a POST /v1/mailboxes/{id}/sync body.
std::variant<service::SyncRequest, ApiError> parse_sync_body(std::string_view body);

// Handles one request (auth included). Never throws.
net::awaitable<Response> handle(const Request& req, service::MailboxApi& api,
                                const std::vector<std::string>& tokens);

}  // namespace el::http
