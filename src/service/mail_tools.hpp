// One-off mail server work behind the API: the folder list of a mailbox, and credential checks
// (POST /v1/mailboxes/validate) that connect, sign in and list folders without storing
// anything. Each opens its own short-lived connections, on the caller's executor.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string>

#include "core/types.hpp"
#include "imap/client.hpp"
#include "service/api.hpp"
#include "service/options.hpp"

namespace el::service {

class Credentials;

// INBOX is case-insensitive (RFC 3501); every other folder name is compared exactly.
bool is_inbox(std::string_view name);

// Error codes of a failed check, distinct per cause: "auth_failed" (credentials refused),
// "host_not_found", "unreachable" (connection refused or lost), "tls_error" (handshake or
// certificate), "timeout", "protocol_error" (not the expected protocol), "server_error" (the
// server refused a command).
std::string imap_error_code(const std::exception& e);
std::string smtp_error_code(const std::exception& e);

// -> {"items": [{"name","delimiter","role","attributes","selectable","messages","unseen",
//     "uidnext","uidvalidity","watched"}]}; bad_gateway when the server fails.
boost::asio::awaitable<Outcome> folders_of(const core::MailboxConfig& cfg,
                                           const ServiceOptions& opts, Credentials* credentials);

// -> {"valid", "imap": {"ok", ...}, "smtp"?: {"ok", ...}, "error"?: {"code","message"}}
boost::asio::awaitable<Outcome> validate_settings(const core::MailboxConfig& cfg,
                                                  const ServiceOptions& opts,
                                                  Credentials* credentials);

// The folders a session watches: cfg.folders, or with all_folders every selectable folder the
// server lists (INBOX first), at most `limit`.
boost::asio::awaitable<std::vector<std::string>> resolve_folders(imap::Client& client,
                                                                 const core::MailboxConfig& cfg,
                                                                 std::size_t limit);

}  // namespace el::service
