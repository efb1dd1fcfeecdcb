// Opens a signed-in SMTP client for a mailbox's settings: connect, TLS/STARTTLS, EHLO, AUTH with
// the SMTP password (default: the IMAP one) or the OAuth2 token (XOAUTH2, refreshed and retried
// once when refused). A server that offers no AUTH is used without signing in.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "core/types.hpp"
#include "smtp/client.hpp"

namespace el::service {

class Credentials;

struct SmtpTimeouts {
  std::chrono::milliseconds connect{30000};
  std::chrono::milliseconds command{60000};
  std::chrono::milliseconds data{600000};
  std::string helo_name;  // empty: the host name
};

// cfg.smtp must be set. Throws smtp::Error (a transport failure is mapped to io/timeout/tls).
// sign_in false: stop after EHLO (to learn the server's limits).
boost::asio::awaitable<std::unique_ptr<smtp::Client>> open_smtp(const core::MailboxConfig& cfg,
                                                                const SmtpTimeouts& t,
                                                                Credentials* credentials,
                                                                bool sign_in = true);

}  // namespace el::service
