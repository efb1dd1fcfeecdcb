// Validation of POST/PUT /v1/mailboxes bodies into a typed MailboxConfig: every field typed and
// checked, unknown fields refused, and no message ever quotes a value (it could be a password).
#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/scheme.hpp>
#include <initializer_list>
#include <optional>

#include "http/internal.hpp"
#include "http/router.hpp"

namespace el::http {
namespace {

namespace json = boost::json;
using MaybeError = std::optional<ApiError>;

constexpr std::size_t kMaxFolders = 50;
constexpr std::size_t kMaxEmail = 254;  // RFC 5321 path limit
constexpr std::size_t kMaxHost = 255;
constexpr std::size_t kMaxCredential = 1024;
constexpr std::size_t kMaxFolderName = 1024;
constexpr std::size_t kMaxPath = 4096;
constexpr std::size_t kMaxUrl = 2048;

ApiError bad(std::string code, std::string message, std::string field) {
  return ApiError{400, std::move(code), std::move(message), std::move(field)};
}

std::string join(std::string_view prefix, std::string_view key) {
  std::string out(prefix);
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

bool has_space_or_control(std::string_view s) {
  return has_control(s) || s.find(' ') != std::string_view::npos;
}

// IMAP sends credentials as quoted strings or literals, and SASL PLAIN separates them with NUL:
// these three bytes cannot travel in either.
bool has_line_break_or_nul(std::string_view s) {
  return s.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos;
}

MaybeError check_keys(const json::object& obj, std::initializer_list<std::string_view> allowed,
                      std::string_view prefix) {
  for (const auto& kv : obj) {
    if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
      return bad("unknown_field", "unknown field", join(prefix, kv.key()));
    }
  }
  return std::nullopt;
}

// obj[key], or nullptr when the key is absent or null: a null is the same as leaving it out,
// because many JSON encoders write absent optionals as null.
const json::value* find(const json::object& obj, std::string_view key) {
  const json::value* v = obj.if_contains(key);
  return (v == nullptr || v->is_null()) ? nullptr : v;
}

MaybeError missing(std::string field) {
  std::string message = field + " is required";
  return bad("missing_field", std::move(message), std::move(field));
}

MaybeError wrong_type(std::string field, std::string_view expected) {
  std::string msg = field + " must be " + std::string(expected);
  return bad("invalid_type", std::move(msg), std::move(field));
}

MaybeError invalid(std::string field, std::string_view why) {
  std::string msg = field + " " + std::string(why);
  return bad("invalid_value", std::move(msg), std::move(field));
}

// Reads an optional string; out stays nullopt when absent. required turns absence into an error.
MaybeError get_string(const json::object& obj, std::string_view key, std::string_view prefix,
                      bool required, std::optional<std::string>& out) {
  const json::value* v = find(obj, key);
  if (v == nullptr) return required ? missing(join(prefix, key)) : std::nullopt;
  if (!v->is_string()) return wrong_type(join(prefix, key), "a string");
  out = std::string(v->get_string());
  return std::nullopt;
}

bool valid_email(std::string_view s) {
  const auto at = s.find('@');
  if (at == std::string_view::npos || s.find('@', at + 1) != std::string_view::npos) return false;
  return at > 0 && at + 1 < s.size() && !has_space_or_control(s);
}

bool valid_webhook_url(std::string_view s) {
  auto u = boost::urls::parse_absolute_uri(s);
  if (!u) return false;
  const auto scheme = u->scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https) return false;
  return u->has_authority() && !u->encoded_host().empty();
}

// IMAP says INBOX is case-insensitive; every other name is compared exactly.
std::string folder_key(std::string_view name) {
  std::string key(name);
  if (key.size() == 5) {
    std::string upper = key;
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (upper == "INBOX") return upper;
  }
  return key;
}

MaybeError parse_port(const json::object& obj, std::string_view prefix, std::uint16_t& port) {
  if (const json::value* v = find(obj, "port")) {
    const std::string field = join(prefix, "port");
    if (!v->is_int64() && !v->is_uint64()) return wrong_type(field, "an integer");
    const bool in_range =
        v->is_int64() ? (v->get_int64() >= 1 && v->get_int64() <= 65535) : v->get_uint64() <= 65535;
    if (!in_range) return invalid(field, "must be between 1 and 65535");
    port = static_cast<std::uint16_t>(v->is_int64() ? v->get_int64() : v->get_uint64());
  }
  return std::nullopt;
}

MaybeError parse_host(const json::object& obj, std::string_view prefix, std::string& out) {
  std::optional<std::string> host;
  const std::string field = join(prefix, "host");
  if (auto e = get_string(obj, "host", prefix, true, host)) return e;
  if (host->empty()) return invalid(field, "must not be empty");
  if (host->size() > kMaxHost) return invalid(field, "is too long");
  if (has_space_or_control(*host)) return invalid(field, "must be a host name or address");
  out = std::move(*host);
  return std::nullopt;
}

MaybeError parse_security(const json::object& obj, std::string_view prefix, core::Security& out) {
  std::optional<std::string> security;
  if (auto e = get_string(obj, "security", prefix, false, security)) return e;
  out = core::Security::tls;
  if (security) {
    auto s = core::security_from_string(*security);
    if (!s)
      return invalid(join(prefix, "security"), "must be one of \"tls\", \"starttls\", \"none\"");
    out = *s;
  }
  return std::nullopt;
}

MaybeError parse_tls(const json::object& obj, std::string_view prefix, core::TlsSettings& out) {
  std::optional<std::string> ca_file;
  if (auto e = get_string(obj, "tls_ca_file", prefix, false, ca_file)) return e;
  if (ca_file) {
    if (ca_file->size() > kMaxPath) return invalid(join(prefix, "tls_ca_file"), "is too long");
    if (has_control(*ca_file)) return invalid(join(prefix, "tls_ca_file"), "must be a file path");
    out.ca_file = std::move(*ca_file);
  }
  if (const json::value* v = find(obj, "tls_insecure")) {
    if (!v->is_bool()) return wrong_type(join(prefix, "tls_insecure"), "a boolean");
    out.insecure = v->get_bool();
  }
  return std::nullopt;
}

MaybeError parse_credential(const json::object& obj, std::string_view prefix, std::string_view key,
                            bool required, std::optional<std::string>& out) {
  if (auto e = get_string(obj, key, prefix, required, out)) return e;
  if (!out) return std::nullopt;
  const std::string field = join(prefix, key);
  if (out->empty()) return invalid(field, "must not be empty");
  if (out->size() > kMaxCredential) return invalid(field, "is too long");
  if (has_line_break_or_nul(*out)) return invalid(field, "must not contain NUL, CR or LF");
  return std::nullopt;
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  auto tail = s.substr(s.size() - suffix.size());
  return std::equal(tail.begin(), tail.end(), suffix.begin(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == b;
  });
}

bool server_saves_sent(std::string_view host) {
  return ends_with_ci(host, "smtp.gmail.com") || ends_with_ci(host, "smtp.googlemail.com") ||
         ends_with_ci(host, ".office365.com") || ends_with_ci(host, ".outlook.com");
}

MaybeError parse_smtp(const json::object& root, BodyMode mode,
                      std::optional<core::SmtpSettings>& out, service::UpdateMask& mask) {
  const json::value* v = find(root, "smtp");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return wrong_type("smtp", "an object");
  const json::object& obj = v->get_object();
  constexpr std::string_view p = "smtp";
  if (auto e = check_keys(obj,
                          {"host", "port", "security", "username", "password", "tls_ca_file",
                           "tls_insecure", "save_to_sent"},
                          p)) {
    return e;
  }
  core::SmtpSettings s;
  if (auto e = parse_host(obj, p, s.host)) return e;
  if (auto e = parse_security(obj, p, s.security)) return e;
  if (auto e = parse_port(obj, p, s.port)) return e;
  std::optional<std::string> username, password;
  if (auto e = parse_credential(obj, p, "username", false, username)) return e;
  if (username) s.username = std::move(*username);
  if (auto e = parse_credential(obj, p, "password", false, password)) return e;
  if (password) {
    s.password = core::Secret(std::move(*password));
  } else if (mode == BodyMode::update) {
    mask.keep_smtp_password = true;
  }
  if (auto e = parse_tls(obj, p, s.tls)) return e;
  if (const json::value* b = find(obj, "save_to_sent")) {
    if (!b->is_bool()) return wrong_type("smtp.save_to_sent", "a boolean");
    s.save_to_sent = b->get_bool();
  } else {
    // Gmail and Microsoft 365 file what their SMTP servers send in Sent themselves: a second
    // copy would be a duplicate.
    s.save_to_sent = !server_saves_sent(s.host);
  }
  out = std::move(s);
  return std::nullopt;
}

MaybeError parse_oauth2(const json::object& root, BodyMode mode,
                        std::optional<core::OAuth2Settings>& out, service::UpdateMask& mask) {
  const json::value* v = find(root, "oauth2");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return wrong_type("oauth2", "an object");
  const json::object& obj = v->get_object();
  constexpr std::string_view p = "oauth2";
  if (auto e = check_keys(obj,
                          {"access_token", "expires_at", "refresh_token", "token_url", "client_id",
                           "client_secret", "refresh_url", "mechanism"},
                          p)) {
    return e;
  }
  core::OAuth2Settings a;
  std::optional<std::string> access, refresh, secret, expires, token_url, client_id, refresh_url,
      mechanism;
  if (auto e = parse_credential(obj, p, "access_token", false, access)) return e;
  if (auto e = parse_credential(obj, p, "refresh_token", false, refresh)) return e;
  if (auto e = parse_credential(obj, p, "client_secret", false, secret)) return e;
  if (auto e = parse_credential(obj, p, "client_id", false, client_id)) return e;
  if (access) a.access_token = core::Secret(std::move(*access));
  if (refresh) a.refresh_token = core::Secret(std::move(*refresh));
  if (secret) a.client_secret = core::Secret(std::move(*secret));
  if (client_id) a.client_id = std::move(*client_id);
  if (mode == BodyMode::update && !access && !refresh && !secret) mask.keep_oauth2_tokens = true;
  if (auto e = get_string(obj, "expires_at", p, false, expires)) return e;
  if (expires) {
    a.expires_at = core::parse_rfc3339(*expires);
    if (!a.expires_at) return invalid("oauth2.expires_at", "must be an RFC 3339 date-time");
  }
  for (auto [key, target] :
       {std::pair<std::string_view, std::optional<std::string>*>{"token_url", &token_url},
        {"refresh_url", &refresh_url}}) {
    if (auto e = get_string(obj, key, p, false, *target)) return e;
    if (*target) {
      if ((*target)->size() > kMaxUrl) return invalid(join(p, key), "is too long");
      if (!valid_webhook_url(**target)) {
        return invalid(join(p, key), "must be an absolute http or https URL with a host");
      }
    }
  }
  if (token_url) a.token_url = std::move(*token_url);
  if (refresh_url) a.refresh_url = std::move(*refresh_url);
  if (auto e = get_string(obj, "mechanism", p, false, mechanism)) return e;
  if (mechanism) {
    if (*mechanism != "xoauth2" && *mechanism != "oauthbearer") {
      return invalid("oauth2.mechanism", "must be \"xoauth2\" or \"oauthbearer\"");
    }
    a.mechanism = std::move(*mechanism);
  }
  if (!a.token_url.empty() && !a.refresh_url.empty()) {
    return invalid("oauth2.refresh_url", "cannot be given together with oauth2.token_url");
  }
  if (!a.token_url.empty() && a.refresh_token.empty() && mode == BodyMode::create) {
    return missing("oauth2.refresh_token");
  }
  if (a.access_token.empty() && !a.can_refresh() && mode == BodyMode::create) {
    return missing("oauth2.access_token");
  }
  out = std::move(a);
  return std::nullopt;
}

MaybeError parse_imap(const json::object& obj, BodyMode mode, bool oauth2, core::ImapSettings& out,
                      service::UpdateMask& mask) {
  constexpr std::string_view p = "imap";
  if (auto e = check_keys(
          obj, {"host", "port", "security", "username", "password", "tls_ca_file", "tls_insecure"},
          p)) {
    return e;
  }

  std::optional<std::string> host;
  if (auto e = get_string(obj, "host", p, true, host)) return e;
  if (host->empty()) return invalid("imap.host", "must not be empty");
  if (host->size() > kMaxHost) return invalid("imap.host", "is too long");
  if (has_space_or_control(*host)) return invalid("imap.host", "must be a host name or address");
  out.host = std::move(*host);

  std::optional<std::string> security;
  if (auto e = get_string(obj, "security", p, false, security)) return e;
  out.security = core::Security::tls;
  if (security) {
    auto s = core::security_from_string(*security);
    if (!s) return invalid("imap.security", "must be one of \"tls\", \"starttls\", \"none\"");
    out.security = *s;
  }

  // The default port follows the security mode: implicit TLS listens on 993, the others on 143.
  out.port = out.security == core::Security::tls ? 993 : 143;
  if (const json::value* v = find(obj, "port")) {
    if (!v->is_int64() && !v->is_uint64()) return wrong_type("imap.port", "an integer");
    const bool in_range =
        v->is_int64() ? (v->get_int64() >= 1 && v->get_int64() <= 65535) : v->get_uint64() <= 65535;
    if (!in_range) return invalid("imap.port", "must be between 1 and 65535");
    out.port = static_cast<std::uint16_t>(v->is_int64() ? v->get_int64() : v->get_uint64());
  }

  std::optional<std::string> username;
  if (auto e = get_string(obj, "username", p, true, username)) return e;
  if (username->empty()) return invalid("imap.username", "must not be empty");
  if (username->size() > kMaxCredential) return invalid("imap.username", "is too long");
  if (has_line_break_or_nul(*username)) {
    return invalid("imap.username", "must not contain NUL, CR or LF");
  }
  out.username = std::move(*username);

  std::optional<std::string> password;
  if (auto e = get_string(obj, "password", p, mode == BodyMode::create && !oauth2, password)) {
    return e;
  }
  if (password) {
    if (password->empty()) return invalid("imap.password", "must not be empty");
    // (with oauth2 the password may be left out: sign-in uses the token)
    if (password->size() > kMaxCredential) return invalid("imap.password", "is too long");
    if (has_line_break_or_nul(*password)) {
      return invalid("imap.password", "must not contain NUL, CR or LF");
    }
    out.password = core::Secret(std::move(*password));
  } else if (mode == BodyMode::update) {
    mask.keep_password = true;
  }

  std::optional<std::string> ca_file;
  if (auto e = get_string(obj, "tls_ca_file", p, false, ca_file)) return e;
  if (ca_file) {
    if (ca_file->size() > kMaxPath) return invalid("imap.tls_ca_file", "is too long");
    if (has_control(*ca_file)) return invalid("imap.tls_ca_file", "must be a file path");
    out.tls.ca_file = std::move(*ca_file);
  }

  if (const json::value* v = find(obj, "tls_insecure")) {
    if (!v->is_bool()) return wrong_type("imap.tls_insecure", "a boolean");
    out.tls.insecure = v->get_bool();
  }
  return std::nullopt;
}

MaybeError parse_folders(const json::object& obj, std::vector<std::string>& out, bool& all) {
  const json::value* v = find(obj, "folders");
  if (v == nullptr) {
    out = {"INBOX"};
    return std::nullopt;
  }
  if (v->is_string() && v->get_string() == "all") {
    out = {"INBOX"};
    all = true;
    return std::nullopt;
  }
  if (!v->is_array()) return wrong_type("folders", "an array of strings or \"all\"");
  const json::array& arr = v->get_array();
  if (arr.empty()) return invalid("folders", "must name at least one folder");
  if (arr.size() > kMaxFolders) return invalid("folders", "must name at most 50 folders");
  out.clear();
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const std::string where = "folders[" + std::to_string(i) + "]";
    if (!arr[i].is_string()) return wrong_type("folders", "an array of strings");
    std::string_view name = arr[i].get_string();
    if (name.empty()) return invalid("folders", where + " must not be empty");
    if (name.size() > kMaxFolderName) return invalid("folders", where + " is too long");
    if (has_control(name)) return invalid("folders", where + " must not contain control bytes");
    std::string key = folder_key(name);
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
      return invalid("folders", where + " repeats an earlier folder");
    }
    keys.push_back(std::move(key));
    out.emplace_back(name);
  }
  return std::nullopt;
}

MaybeError parse_webhook(const json::object& obj, BodyMode mode,
                         std::optional<core::WebhookTarget>& out, service::UpdateMask& mask) {
  const json::value* v = find(obj, "webhook");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return wrong_type("webhook", "an object");
  const json::object& w = v->get_object();
  if (auto e = check_keys(w, {"url", "secret"}, "webhook")) return e;

  core::WebhookTarget target;
  std::optional<std::string> url;
  if (auto e = get_string(w, "url", "webhook", true, url)) return e;
  if (url->size() > kMaxUrl) return invalid("webhook.url", "is too long");
  if (!valid_webhook_url(*url)) {
    return invalid("webhook.url", "must be an absolute http or https URL with a host");
  }
  target.url = std::move(*url);

  std::optional<std::string> secret;
  if (auto e = get_string(w, "secret", "webhook", false, secret)) return e;
  if (secret) {
    if (secret->size() > kMaxCredential) return invalid("webhook.secret", "is too long");
    target.secret = core::Secret(std::move(*secret));
  } else if (mode == BodyMode::update) {
    mask.keep_webhook_secret = true;
  }
  out = std::move(target);
  return std::nullopt;
}

MaybeError parse_object(const json::object& obj, BodyMode mode, ParsedMailbox& out) {
  if (auto e = check_keys(
          obj,
          {"id", "email", "imap", "folders", "since", "webhook", "smtp", "oauth2", "sent_folder"},
          "")) {
    return e;
  }
  core::MailboxConfig& cfg = out.config;

  std::optional<std::string> id;
  if (auto e = get_string(obj, "id", "", false, id)) return e;
  if (id) {
    if (!internal::valid_mailbox_id(*id)) {
      return invalid("id", "must be 1-128 characters of A-Z a-z 0-9 . _ -");
    }
    cfg.id = std::move(*id);
  }

  std::optional<std::string> email;
  if (auto e = get_string(obj, "email", "", true, email)) return e;
  if (email->size() > kMaxEmail) return invalid("email", "is too long");
  if (!valid_email(*email)) return invalid("email", "must be an address like user@example.com");
  cfg.email = std::move(*email);

  const json::value* imap = find(obj, "imap");
  if (imap == nullptr) return missing("imap");
  if (!imap->is_object()) return wrong_type("imap", "an object");
  if (auto e = parse_oauth2(obj, mode, cfg.oauth2, out.mask)) return e;
  if (auto e = parse_imap(imap->get_object(), mode, cfg.oauth2.has_value(), cfg.imap, out.mask)) {
    return e;
  }
  if (auto e = parse_smtp(obj, mode, cfg.smtp, out.mask)) return e;

  if (auto e = parse_folders(obj, cfg.folders, cfg.all_folders)) return e;

  std::optional<std::string> sent;
  if (auto e = get_string(obj, "sent_folder", "", false, sent)) return e;
  if (sent) {
    if (sent->empty() || sent->size() > kMaxFolderName || has_control(*sent)) {
      return invalid("sent_folder", "must be a folder name");
    }
    cfg.sent_folder = std::move(*sent);
  }

  std::optional<std::string> since;
  if (auto e = get_string(obj, "since", "", false, since)) return e;
  if (since) {
    cfg.since = core::parse_rfc3339(*since);
    if (!cfg.since) return invalid("since", "must be an RFC 3339 date-time");
  }

  return parse_webhook(obj, mode, cfg.webhook, out.mask);
}

}  // namespace

std::variant<ParsedMailbox, ApiError> parse_mailbox_body(std::string_view body, BodyMode mode) {
  boost::system::error_code ec;
  // Default options: strict JSON (no comments, no trailing commas), valid UTF-8, depth <= 32.
  json::value root = json::parse(body, ec);
  if (ec) return bad("invalid_json", "the body is not valid JSON", "");
  if (!root.is_object()) return bad("invalid_type", "the body must be a JSON object", "");
  ParsedMailbox out;
  if (auto e = parse_object(root.get_object(), mode, out)) return *e;
  return out;
}

}  // namespace el::http
