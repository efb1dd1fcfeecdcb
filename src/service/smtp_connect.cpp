// Opens a signed-in SMTP client for a mailbox's settings.
#include "service/smtp_connect.hpp"

#include <unistd.h>

#include <boost/asio/this_coro.hpp>

#include "imap/transport.hpp"
#include "oauth/token.hpp"
#include "service/credentials.hpp"

namespace el::service {

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

smtp::ErrorKind from_transport(imap::ErrorKind k) {
  switch (k) {
    case imap::ErrorKind::timeout:
      return smtp::ErrorKind::timeout;
    case imap::ErrorKind::tls:
      return smtp::ErrorKind::tls;
    default:
      return smtp::ErrorKind::io;
  }
}

}  // namespace

boost::asio::awaitable<std::unique_ptr<smtp::Client>> open_smtp(const core::MailboxConfig& cfg,
                                                                const SmtpTimeouts& t,
                                                                Credentials* credentials,
                                                                bool sign_in) {
  const auto& s = *cfg.smtp;
  imap::ConnectOptions co;
  co.host = s.host;
  co.port = s.effective_port();
  co.security = s.security;
  co.tls = s.tls;
  co.timeout = t.connect;
  auto ex = co_await boost::asio::this_coro::executor;
  std::unique_ptr<imap::Transport> transport;
  try {
    transport = co_await imap::connect(ex, co);
  } catch (const imap::Error& e) {
    throw smtp::Error(from_transport(e.kind()), e.what());
  }
  smtp::ClientOptions copts;
  copts.command_timeout = t.command;
  copts.data_timeout = t.data;
  copts.helo_name = t.helo_name.empty() ? host_name() : t.helo_name;
  auto client = std::make_unique<smtp::Client>(std::move(transport), copts);
  co_await client->start(s.security == core::Security::starttls);
  if (!sign_in) co_return client;

  const std::string& user = s.username.empty() ? cfg.imap.username : s.username;
  if (!client->has_extension("AUTH")) co_return client;  // a relay that trusts the network
  if (!s.password.empty() || !cfg.oauth2) {
    const core::Secret& password = s.password.empty() ? cfg.imap.password : s.password;
    co_await client->login(user, password);
    co_return client;
  }
  if (credentials == nullptr) throw smtp::Error(smtp::ErrorKind::auth, "no OAuth2 token source");
  for (int attempt = 0;; ++attempt) {
    core::Secret token;
    try {
      token = co_await credentials->access_token(cfg, attempt > 0);
    } catch (const oauth::RefreshError& e) {
      const auto kind = e.kind() == oauth::RefreshErrorKind::refused ? smtp::ErrorKind::auth
                                                                     : smtp::ErrorKind::io;
      throw smtp::Error(kind, std::string("OAuth2 token refresh failed: ") + e.what());
    }
    try {
      co_await client->login_xoauth2(user, token);
      co_return client;
    } catch (const smtp::Error& e) {
      if (e.kind() != smtp::ErrorKind::auth || attempt > 0 || !cfg.oauth2->can_refresh()) throw;
    }
  }
}

}  // namespace el::service
