// Sign-in for a mailbox's IMAP and SMTP connections: its password, or an OAuth2 access token
// kept fresh: refreshed shortly before it expires and after the server refused it (RFC 6749
// refresh grant, or the application's refresh_url), then saved to the registry so that every
// session, node and restart uses the newest one. Thread-safe; refreshes of one mailbox are
// single-flight.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "core/types.hpp"
#include "oauth/token.hpp"
#include "store/registry.hpp"

namespace el::service {

struct CredentialsOptions {
  oauth::HttpOptions http;
  // A token expiring within this is refreshed before use.
  std::chrono::seconds refresh_margin{120};
  std::optional<core::WebhookTarget> default_webhook;  // its secret signs refresh_url requests
  bool persist = true;  // save refreshed tokens in the registry (not for credential checks)
};

class Credentials {
 public:
  Credentials(store::Registry& registry, CredentialsOptions opts);

  // The access token to sign in with now (cfg.oauth2 must be set). force: the server refused
  // the last one, get a new one. Throws oauth::RefreshError (refused: the application must
  // give new credentials; unavailable: try later).
  boost::asio::awaitable<core::Secret> access_token(const core::MailboxConfig& cfg, bool force);
  // Forgets what is cached for a mailbox (removed, or new settings).
  void forget(const std::string& mailbox_id);
  std::uint64_t refreshes() const;  // successful refreshes, all mailboxes

 private:
  struct Entry {
    std::string source;  // the configured access token this entry started from
    core::Secret token;
    std::optional<std::chrono::system_clock::time_point> expires_at;
    core::Secret refresh_token;
    std::chrono::steady_clock::time_point refreshed_at{};
    bool busy = false;  // a refresh is running
  };
  boost::asio::awaitable<void> refresh(const core::MailboxConfig& cfg, Entry snapshot);

  store::Registry& registry_;
  CredentialsOptions opts_;
  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> cache_;
  std::uint64_t refreshes_ = 0;
};

// The SASL mechanism name for an OAuth2 mailbox's IMAP sign-in ("XOAUTH2" / "OAUTHBEARER").
bool uses_oauthbearer(const core::MailboxConfig& cfg);

}  // namespace el::service
