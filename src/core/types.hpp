// Domain types shared by every module: mailbox settings, checkpoints, session states, events. No
// I/O.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/secret.hpp"

namespace el::core {

enum class Security { tls, starttls, none };
std::string_view to_string(Security s);
std::optional<Security> security_from_string(std::string_view s);

struct TlsSettings {
  std::string ca_file;    // empty: the system trust store
  bool insecure = false;  // skip certificate and host name verification (explicit opt-in only)
};

struct ImapSettings {
  std::string host;
  std::uint16_t port = 993;
  Security security = Security::tls;
  std::string username;
  Secret password;
  TlsSettings tls;
};

// SMTP submission. Absent username/password: the IMAP ones. Port 0: by security (465 tls, 587
// starttls, 25 none).
struct SmtpSettings {
  std::string host;
  std::uint16_t port = 0;
  Security security = Security::tls;
  std::string username;  // empty: the IMAP username
  Secret password;       // empty: the IMAP password (or the OAuth2 token)
  TlsSettings tls;
  // Append what was sent to the Sent folder; false for servers that do it themselves (Gmail,
  // Microsoft 365).
  bool save_to_sent = true;
  std::uint16_t effective_port() const;
};

// OAuth2 sign-in (XOAUTH2 / OAUTHBEARER) instead of passwords, for IMAP and SMTP.
struct OAuth2Settings {
  Secret access_token;
  std::optional<std::chrono::system_clock::time_point> expires_at;
  Secret refresh_token;  // with token_url: the service refreshes (RFC 6749 refresh grant)
  std::string token_url;
  std::string client_id;
  Secret client_secret;
  std::string refresh_url;            // or: the service asks the application for a new token
  std::string mechanism = "xoauth2";  // xoauth2 | oauthbearer (IMAP; SMTP uses XOAUTH2)
  bool can_refresh() const {
    return !refresh_url.empty() || (!token_url.empty() && !refresh_token.empty());
  }
};

struct WebhookTarget {
  std::string url;  // http:// or https://
  Secret secret;    // HMAC-SHA256 key; empty: the body is still signed with an empty key
};

// What the application registered. Owned by the registry; copied into sessions.
struct MailboxConfig {
  std::string id;
  std::string email;
  ImapSettings imap;
  std::vector<std::string> folders{"INBOX"};
  bool all_folders = false;  // "folders": "all": every selectable folder the server lists
  std::optional<SmtpSettings> smtp;
  std::optional<OAuth2Settings> oauth2;
  std::string sent_folder;  // empty: the folder with SPECIAL-USE \Sent (else "Sent")
  std::optional<std::chrono::system_clock::time_point> since;
  std::optional<WebhookTarget> webhook;  // overrides the global webhook
};

// How far delivery got in one folder. last_uid is the last UID whose event the sink accepted.
struct FolderCheckpoint {
  std::string name;
  std::uint32_t uidvalidity = 0;  // 0: no baseline yet (first connection sets it)
  std::uint32_t last_uid = 0;
};

enum class SessionState { connecting, idle, polling, backoff, auth_failed, stopped };
std::string_view to_string(SessionState s);

// Stable id of the event for one email: the same (mailbox, folder, uidvalidity, uid) always
// yields the same id, across retries, restarts and nodes. 32 hex chars of SHA-256.
std::string message_event_id(std::string_view mailbox_id, std::string_view folder,
                             std::uint32_t uidvalidity, std::uint32_t uid);
// A fresh random id for events that are not tied to one email (mailbox.state, mailbox.reset).
std::string random_event_id();

// RFC 3339 UTC with milliseconds: 2026-11-27T23:21:31.123Z
std::string format_rfc3339(std::chrono::system_clock::time_point t);
// Accepts RFC 3339 date-times with Z or a numeric offset; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s);

}  // namespace el::core
