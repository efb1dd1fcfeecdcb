// Folder lists and credential checks.
#include "service/mail_tools.hpp"

#include <algorithm>
#include <boost/json.hpp>

#include "core/log.hpp"
#include "imap/error.hpp"
#include "service/credentials.hpp"
#include "service/imap_connect.hpp"
#include "service/smtp_connect.hpp"
#include "smtp/client.hpp"

namespace el::service {

namespace net = boost::asio;
namespace json = boost::json;

namespace {

bool watched(const core::MailboxConfig& cfg, const std::string& name) {
  if (cfg.all_folders) return true;
  return std::any_of(cfg.folders.begin(), cfg.folders.end(), [&](const std::string& f) {
    return f == name || (is_inbox(f) && is_inbox(name));
  });
}

std::string io_code(std::string_view what) {
  return what.starts_with("resolve") ? "host_not_found" : "unreachable";
}

json::object error_json(const std::string& code, const std::string& message) {
  return {{"code", code}, {"message", message}};
}

}  // namespace

bool is_inbox(std::string_view n) {
  return n.size() == 5 && std::equal(n.begin(), n.end(), "INBOX", [](char a, char b) {
           return std::toupper(static_cast<unsigned char>(a)) == b;
         });
}

std::string imap_error_code(const std::exception& e) {
  if (const auto* ie = dynamic_cast<const imap::Error*>(&e)) {
    switch (ie->kind()) {
      case imap::ErrorKind::auth:
        return "auth_failed";
      case imap::ErrorKind::tls:
        return "tls_error";
      case imap::ErrorKind::timeout:
        return "timeout";
      case imap::ErrorKind::io:
        return io_code(ie->what());
      case imap::ErrorKind::protocol:
        return "protocol_error";
      case imap::ErrorKind::bye:
      case imap::ErrorKind::no:
      case imap::ErrorKind::bad:
        return "server_error";
    }
  }
  return "error";
}

std::string smtp_error_code(const std::exception& e) {
  if (const auto* se = dynamic_cast<const smtp::Error*>(&e)) {
    switch (se->kind()) {
      case smtp::ErrorKind::auth:
        return "auth_failed";
      case smtp::ErrorKind::tls:
        return "tls_error";
      case smtp::ErrorKind::timeout:
        return "timeout";
      case smtp::ErrorKind::io:
        return io_code(se->what());
      case smtp::ErrorKind::protocol:
        return "protocol_error";
      case smtp::ErrorKind::temporary:
      case smtp::ErrorKind::permanent:
      case smtp::ErrorKind::too_large:
        return "server_error";
    }
  }
  return "error";
}

net::awaitable<std::vector<std::string>> resolve_folders(imap::Client& client,
                                                         const core::MailboxConfig& cfg,
                                                         std::size_t limit) {
  if (!cfg.all_folders) co_return cfg.folders;
  auto listed = co_await client.list_folders();
  std::vector<std::string> out{"INBOX"};
  for (const auto& f : listed) {
    if (!f.selectable() || is_inbox(f.name)) continue;
    if (out.size() >= limit) break;
    out.push_back(f.name);
  }
  co_return out;
}

net::awaitable<Outcome> folders_of(const core::MailboxConfig& cfg, const ServiceOptions& opts,
                                   Credentials* credentials) {
  const auto& s = opts.session;
  ImapTimeouts t{s.connect_timeout, s.command_timeout, s.done_timeout, 64 * 1024};
  json::array items;
  try {
    auto client = co_await open_imap(cfg, t, credentials);
    auto listed = co_await client->list_folders();
    if (listed.size() > opts.tools.max_folders) listed.resize(opts.tools.max_folders);
    for (const auto& f : listed) {
      json::object o{
          {"name", f.name},
          {"delimiter", f.delimiter.empty() ? json::value(nullptr) : json::value(f.delimiter)},
          {"role", f.special_use.empty() ? json::value(nullptr) : json::value(f.special_use)},
          {"selectable", f.selectable()},
          {"watched", watched(cfg, f.name)}};
      json::array attrs;
      for (const auto& a : f.attributes) attrs.emplace_back(a);
      o["attributes"] = std::move(attrs);
      if (f.selectable()) {
        try {
          auto st = co_await client->status(f.name);
          o["messages"] = st.messages;
          o["unseen"] = st.unseen;
          o["uidnext"] = st.uidnext;
          o["uidvalidity"] = st.uidvalidity;
        } catch (const imap::Error& e) {
          if (e.kind() != imap::ErrorKind::no && e.kind() != imap::ErrorKind::bad) throw;
          o["status_error"] = e.what();
        }
      }
      items.push_back(std::move(o));
    }
    co_await client->logout();
  } catch (const imap::Error& e) {
    Outcome o = Outcome::fail(Errc::bad_gateway,
                              "IMAP " + imap_error_code(e) + ": " + std::string(e.what()), "imap");
    co_return o;
  }
  Outcome out;
  out.body["items"] = std::move(items);
  co_return out;
}

net::awaitable<Outcome> validate_settings(const core::MailboxConfig& cfg,
                                          const ServiceOptions& opts, Credentials* credentials) {
  const auto step = opts.tools.validate_timeout;
  json::object imap{{"host", cfg.imap.host},
                    {"port", cfg.imap.port},
                    {"security", core::to_string(cfg.imap.security)}};
  std::optional<json::object> first_error;
  try {
    ImapTimeouts t{step, step, step, 64 * 1024};
    auto client = co_await open_imap(cfg, t, credentials);
    auto listed = co_await client->list_folders();
    imap["ok"] = true;
    imap["folders"] = listed.size();
    json::array caps;
    for (const auto& c : client->capabilities()) caps.emplace_back(c);
    imap["capabilities"] = std::move(caps);
    json::array missing;
    for (const auto& f : cfg.all_folders ? std::vector<std::string>{} : cfg.folders) {
      const bool found = std::any_of(listed.begin(), listed.end(), [&](const auto& l) {
        return l.name == f || (is_inbox(f) && is_inbox(l.name));
      });
      if (!found) missing.emplace_back(f);
    }
    if (!missing.empty()) imap["missing_folders"] = std::move(missing);
    co_await client->logout();
  } catch (const std::exception& e) {
    imap["ok"] = false;
    imap["error"] = error_json(imap_error_code(e), e.what());
    first_error = imap["error"].as_object();
  }
  Outcome out;
  out.body["imap"] = std::move(imap);
  if (cfg.smtp) {
    json::object smtp{{"host", cfg.smtp->host},
                      {"port", cfg.smtp->effective_port()},
                      {"security", core::to_string(cfg.smtp->security)}};
    try {
      SmtpTimeouts t{step, step, step, opts.send.helo_name};
      auto client = co_await open_smtp(cfg, t, credentials);
      smtp["ok"] = true;
      smtp["authenticated"] = client->has_extension("AUTH");
      if (auto max = client->max_size()) smtp["max_size"] = *max;
      co_await client->quit();
    } catch (const std::exception& e) {
      smtp["ok"] = false;
      smtp["error"] = error_json(smtp_error_code(e), e.what());
      if (!first_error) first_error = smtp["error"].as_object();
    }
    out.body["smtp"] = std::move(smtp);
  }
  out.body["valid"] = !first_error.has_value();
  if (first_error) out.body["error"] = std::move(*first_error);
  co_return out;
}

}  // namespace el::service
