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
