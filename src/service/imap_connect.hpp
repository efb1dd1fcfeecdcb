// Opens a logged-in IMAP client for a mailbox's settings: connect, TLS/STARTTLS, sign-in with
// the password or an OAuth2 token (refreshed and retried once when refused), ID.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <memory>

#include "core/types.hpp"
#include "imap/client.hpp"

namespace el::service {

class Credentials;

struct ImapTimeouts {
  std::chrono::milliseconds connect{30000};
  std::chrono::milliseconds command{30000};
  std::chrono::milliseconds done{10000};
  std::size_t max_literal = 64u << 20;
};

// Runs on the calling coroutine's executor (a strand): the client must be used only there.
// credentials: needed when cfg.oauth2 is set (else Error{auth}). Throws imap::Error; a refused
// token refresh is Error{auth}, an unreachable token endpoint Error{io}.
boost::asio::awaitable<std::unique_ptr<imap::Client>> open_imap(const core::MailboxConfig& cfg,
                                                                const ImapTimeouts& t,
                                                                Credentials* credentials);

// Signs in on a started client (used by open_imap and by credential checks).
boost::asio::awaitable<void> sign_in(imap::Client& client, const core::MailboxConfig& cfg,
                                     Credentials* credentials);

}  // namespace el::service
