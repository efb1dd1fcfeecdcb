// Opens a logged-in IMAP client for a mailbox's settings.
#include "service/imap_connect.hpp"

#include <boost/asio/this_coro.hpp>

#include "el/version.hpp"
#include "oauth/token.hpp"
#include "service/credentials.hpp"

namespace el::service {

boost::asio::awaitable<void> sign_in(imap::Client& client, const core::MailboxConfig& cfg,
                                     Credentials* credentials) {
  if (!cfg.oauth2) {
    co_await client.login(cfg.imap.username, cfg.imap.password);
    co_return;
  }
  if (credentials == nullptr) throw imap::Error(imap::ErrorKind::auth, "no OAuth2 token source");
  for (int attempt = 0;; ++attempt) {
    core::Secret token;
    try {
      token = co_await credentials->access_token(cfg, attempt > 0);
    } catch (const oauth::RefreshError& e) {
      const auto kind = e.kind() == oauth::RefreshErrorKind::refused ? imap::ErrorKind::auth
                                                                     : imap::ErrorKind::io;
      throw imap::Error(kind, std::string("OAuth2 token refresh failed: ") + e.what());
    }
    try {
      if (uses_oauthbearer(cfg)) {
        co_await client.login_oauthbearer(cfg.imap.username, cfg.imap.host, cfg.imap.port, token);
      } else {
        co_await client.login_xoauth2(cfg.imap.username, token);
      }
      co_return;
    } catch (const imap::Error& e) {
      // A refused token: refresh once and try again on the same connection (a NO leaves it
      // usable).
      if (e.kind() != imap::ErrorKind::auth || attempt > 0 || !cfg.oauth2->can_refresh()) throw;
    }
  }
}

boost::asio::awaitable<std::unique_ptr<imap::Client>> open_imap(const core::MailboxConfig& cfg,
                                                                const ImapTimeouts& t,
                                                                Credentials* credentials) {
  const auto& s = cfg.imap;
  imap::ConnectOptions co;
  co.host = s.host;
  co.port = s.port;
  co.security = s.security;
  co.tls = s.tls;
  co.timeout = t.connect;
  auto ex = co_await boost::asio::this_coro::executor;
  auto transport = co_await imap::connect(ex, co);
  imap::ClientOptions copts;
  copts.command_timeout = t.command;
  copts.done_timeout = t.done;
  copts.max_literal = t.max_literal;
  auto client = std::make_unique<imap::Client>(std::move(transport), copts);
  co_await client->start(s.security == core::Security::starttls);
  co_await sign_in(*client, cfg, credentials);
  // Built outside the co_await: GCC 12 miscompiles braced initializer lists in coroutines.
  std::vector<std::pair<std::string, std::string>> id_fields;
  id_fields.emplace_back("name", "email-listener");
  id_fields.emplace_back("version", kVersion);
  co_await client->id(id_fields);
  co_return client;
}

}  // namespace el::service
