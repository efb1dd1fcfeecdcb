// OAuth2 access tokens for IMAP/SMTP sign-in: the refresh grant (RFC 6749 §6) against the
// provider's token endpoint, or a new token asked from the application (refresh_url), over a
// one-shot HTTP(S) client (Beast). Coroutines on the caller's executor; nothing blocks.
// Tokens are core::Secret and never logged.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/secret.hpp"

namespace el::oauth {

namespace net = boost::asio;

struct HttpOptions {
  std::chrono::milliseconds timeout{15000};  // resolve + connect + TLS + request + response
  std::string ca_file;                       // extra CA for https (empty: the system store)
  bool tls_insecure = false;                 // skip certificate verification (tests only)
  std::size_t max_response_bytes = 1 << 20;
};

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// One request on a fresh connection (http:// or https://, verification by host name), no
// redirects followed. Throws HttpError on a malformed URL, a connection or TLS failure, a
// timeout or a response over max_response_bytes; any HTTP status is returned, not thrown.
class HttpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
net::awaitable<HttpResponse> http_request(
    net::any_io_executor ex, std::string_view method, std::string_view url,
    const std::vector<std::pair<std::string, std::string>>& headers, std::string body,
    const HttpOptions& opts);

struct Token {
  core::Secret access_token;
  std::optional<std::chrono::system_clock::time_point> expires_at;  // from expires_in / expires_at
  core::Secret refresh_token;  // a rotated refresh token; empty: keep the old one
};

enum class RefreshErrorKind {
  refused,      // the endpoint refused (400/401 with invalid_grant, invalid_client...): sign-in
                // cannot succeed until the application gives new credentials
  unavailable,  // network, timeout, 5xx, 429, a malformed answer: try again later
};

class RefreshError : public std::runtime_error {
 public:
  RefreshError(RefreshErrorKind kind, const std::string& what, std::string oauth_error = {})
      : std::runtime_error(what), kind_(kind), oauth_error_(std::move(oauth_error)) {}
  RefreshErrorKind kind() const { return kind_; }
  const std::string& oauth_error() const { return oauth_error_; }  // "invalid_grant", or empty

 private:
  RefreshErrorKind kind_;
  std::string oauth_error_;
};

struct RefreshGrant {
  std::string token_url;
  std::string client_id;
  core::Secret client_secret;  // empty: a public client (no secret sent)
  core::Secret refresh_token;
  std::string scope;  // empty: not sent
};

// POST token_url, application/x-www-form-urlencoded grant_type=refresh_token&refresh_token=..
// &client_id=..[&client_secret=..][&scope=..]; Accept: application/json. 200 with
// {"access_token", "token_type", "expires_in"?, "refresh_token"?} -> Token. Throws RefreshError.
net::awaitable<Token> refresh(net::any_io_executor ex, const RefreshGrant& grant,
                              const HttpOptions& opts);

// The application hands out tokens (REFERENCE §1): POST refresh_url with
// {"mailbox_id", "email"} (application/json, X-Email-Listener-Signature: sha256=HMAC(body) when
// signing_secret is not empty). 200 with {"access_token", "expires_at"? (RFC 3339) |
// "expires_in"? (seconds)} -> Token. 4xx: RefreshError{refused}; else {unavailable}.
net::awaitable<Token> ask_application(net::any_io_executor ex, std::string_view refresh_url,
                                      std::string_view mailbox_id, std::string_view email,
                                      const core::Secret& signing_secret, const HttpOptions& opts);

}  // namespace el::oauth
