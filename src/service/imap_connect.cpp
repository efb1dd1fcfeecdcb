// Opens a logged-in IMAP client for a mailbox's settings.
#include "service/imap_connect.hpp"

#include <boost/asio/this_coro.hpp>

#include "el/version.hpp"

namespace el::service {

boost::asio::awaitable<std::unique_ptr<imap::Client>> open_imap(const core::ImapSettings& s,
                                                                const ImapTimeouts& t) {
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
  co_await client->login(s.username, s.password);
  // Built outside the co_await: GCC 12 miscompiles braced initializer lists in coroutines.
  std::vector<std::pair<std::string, std::string>> id_fields;
  id_fields.emplace_back("name", "email-listener");
  id_fields.emplace_back("version", kVersion);
  co_await client->id(id_fields);
  co_return client;
}

}  // namespace el::service
