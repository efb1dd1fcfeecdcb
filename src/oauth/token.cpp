// Access tokens: the refresh grant against the provider (RFC 6749 §6, errors §5.2) and the
// application's refresh_url, both mapped to Token or RefreshError{refused | unavailable}.
#include "oauth/token.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <cmath>
#include <initializer_list>

#include "core/types.hpp"

namespace el::oauth {
namespace {

namespace json = boost::json;
using Clock = std::chrono::system_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

// application/x-www-form-urlencoded (RFC 6749 Appendix B): unreserved characters as they are,
// space as '+', every other byte as %XX.
void append_form_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0f]);
    }
  }
}

void append_form_field(std::string& out, std::string_view name, std::string_view value) {
  if (!out.empty()) out.push_back('&');
  append_form_escaped(out, name);
  out.push_back('=');
  append_form_escaped(out, value);
}

// "sha256=" + lowercase hex HMAC-SHA256(secret, body): the same scheme as the webhook signature.
std::string signature(std::string_view body, std::string_view secret) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac.data(),
           &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");  // broken invariant: OpenSSL is unusable
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256=";
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 0x0f]);
  }
  return out;
}

// Text from the server goes into an exception message: printable ASCII only, bounded, and any
// secret we sent masked, raw or form-encoded (a server might echo the request back).
std::string sanitize(std::string_view text, std::initializer_list<std::string_view> secrets) {
  std::string out(text);
  auto mask = [&out](std::string_view s) {
    for (auto pos = out.find(s); pos != std::string::npos; pos = out.find(s, pos + 3)) {
      out.replace(pos, s.size(), "***");
    }
  };
  for (auto s : secrets) {
    if (s.empty()) continue;
    mask(s);
    std::string escaped;  // as we sent it in a form body
    append_form_escaped(escaped, s);
    mask(escaped);
  }
  if (out.size() > 300) out.resize(300);  // after masking: a cut must not expose a secret's head
  for (auto& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

std::optional<json::object> parse_object(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::string string_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// expires_in in seconds: a JSON number, or a string of digits (some providers send that).
// Absent: nullopt; present but unusable: false.
bool seconds_field(const json::object& o, std::string_view key,
                   std::optional<std::chrono::seconds>& out) {
  constexpr std::int64_t kMax = 10LL * 366 * 24 * 3600;  // keeps time_point arithmetic sane
  const auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return true;
  std::int64_t secs = -1;
  if (v->is_int64()) {
    secs = v->as_int64();
  } else if (v->is_uint64()) {
    secs = kMax;
  } else if (v->is_double()) {
    const double d = v->as_double();
    if (std::isfinite(d) && d >= 0) secs = d > static_cast<double>(kMax) ? kMax : std::llround(d);
  } else if (v->is_string()) {
    const auto& s = v->as_string();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), secs);
    if (ec == std::errc::result_out_of_range) secs = kMax;
    if ((ec != std::errc() && ec != std::errc::result_out_of_range) || end != s.data() + s.size())
      secs = -1;
  }
  if (secs < 0) return false;
  out = std::chrono::seconds(std::min(secs, kMax));
  return true;
}

RefreshError unavailable(const std::string& what) {
  return RefreshError(RefreshErrorKind::unavailable, what);
}

// RFC 6749 §5.2 error codes that say "not now" rather than "never" (servers send them from the
// token endpoint though the RFC lists them for the authorization endpoint).
bool transient_oauth_error(const std::string& e) {
  return e == "temporarily_unavailable" || e == "server_error";
}

net::awaitable<Token> do_refresh(net::any_io_executor ex, std::string token_url,
                                 std::string client_id, std::string client_secret,
                                 std::string refresh_token, std::string scope, HttpOptions opts) {
  std::string body;
  append_form_field(body, "grant_type", "refresh_token");
  append_form_field(body, "refresh_token", refresh_token);
  append_form_field(body, "client_id", client_id);
  if (!client_secret.empty()) append_form_field(body, "client_secret", client_secret);
  if (!scope.empty()) append_form_field(body, "scope", scope);
  Headers headers;
  headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  headers.emplace_back("Accept", "application/json");

  // Taken before the request: the token may have been issued a little before the answer came.
  const auto issued = Clock::now();
  HttpResponse res;
  try {
    auto op = http_request(ex, "POST", token_url, headers, std::move(body), opts);
    res = co_await std::move(op);
  } catch (const HttpError& e) {
    throw unavailable(std::string("token endpoint: ") + e.what());
  }

  const auto obj = parse_object(res.body);
  const std::string status = std::to_string(res.status);
  if (res.status == 200 && obj) {
    Token t;
    t.access_token = core::Secret(string_field(*obj, "access_token"));
    if (t.access_token.empty()) {
      // Some providers (GitHub) answer a refusal with 200 and an RFC 6749 error object.
      const std::string err = string_field(*obj, "error");
      if (!err.empty() && !transient_oauth_error(err)) {
        throw RefreshError(RefreshErrorKind::refused,
                           "token endpoint refused the refresh token: " +
                               sanitize(err, {client_secret, refresh_token}),
                           sanitize(err, {client_secret, refresh_token}));
      }
      throw unavailable("token endpoint answered 200 without an access_token");
    }
    std::optional<std::chrono::seconds> expires_in;
    if (!seconds_field(*obj, "expires_in", expires_in)) {
      throw unavailable("token endpoint answered a malformed expires_in");
    }
    if (expires_in) t.expires_at = issued + *expires_in;
    t.refresh_token = core::Secret(string_field(*obj, "refresh_token"));
    co_return t;
  }
  if (res.status == 200) throw unavailable("token endpoint answered 200 without a JSON object");

  if (res.status == 400 || res.status == 401) {
    const std::string err =
        obj ? sanitize(string_field(*obj, "error"), {client_secret, refresh_token}) : "";
    const std::string desc =
        obj ? sanitize(string_field(*obj, "error_description"), {client_secret, refresh_token})
            : "";
    std::string what = "token endpoint answered HTTP " + status;
    if (!err.empty()) what += ": " + err;
    if (!desc.empty()) what += " (" + desc + ")";
    if (transient_oauth_error(err)) throw unavailable(what);
    throw RefreshError(RefreshErrorKind::refused, what, err);
  }
  throw unavailable("token endpoint answered HTTP " + status);
}

net::awaitable<Token> do_ask_application(net::any_io_executor ex, std::string refresh_url,
                                         std::string mailbox_id, std::string email,
                                         std::string signing_secret, HttpOptions opts) {
  json::object request;
  request["mailbox_id"] = mailbox_id;
  request["email"] = email;
  std::string body = json::serialize(request);
  Headers headers;
  headers.emplace_back("Content-Type", "application/json");
  headers.emplace_back("Accept", "application/json");
  if (!signing_secret.empty()) {
    headers.emplace_back("X-Email-Listener-Signature", signature(body, signing_secret));
  }

  const auto issued = Clock::now();
  HttpResponse res;
  try {
    auto op = http_request(ex, "POST", refresh_url, headers, std::move(body), opts);
    res = co_await std::move(op);
  } catch (const HttpError& e) {
    throw unavailable(std::string("refresh_url: ") + e.what());
  }

  const std::string status = std::to_string(res.status);
  // 408 and 429 are 4xx but say "later", not "no".
  if (res.status >= 400 && res.status < 500 && res.status != 408 && res.status != 429) {
    const auto obj = parse_object(res.body);
    const std::string err = obj ? sanitize(string_field(*obj, "error"), {signing_secret}) : "";
    std::string what = "refresh_url answered HTTP " + status;
    if (!err.empty()) what += ": " + err;
    throw RefreshError(RefreshErrorKind::refused, what, err);
  }
  if (res.status != 200) throw unavailable("refresh_url answered HTTP " + status);

  const auto obj = parse_object(res.body);
  if (!obj) throw unavailable("refresh_url answered 200 without a JSON object");
  Token t;
  t.access_token = core::Secret(string_field(*obj, "access_token"));
  if (t.access_token.empty()) throw unavailable("refresh_url answered 200 without an access_token");
  if (const auto* at = obj->if_contains("expires_at"); at != nullptr && !at->is_null()) {
    const auto parsed = at->is_string() ? core::parse_rfc3339(at->as_string()) : std::nullopt;
    if (!parsed) throw unavailable("refresh_url answered a malformed expires_at");
    t.expires_at = *parsed;
  } else {
    std::optional<std::chrono::seconds> expires_in;
    if (!seconds_field(*obj, "expires_in", expires_in)) {
      throw unavailable("refresh_url answered a malformed expires_in");
    }
    if (expires_in) t.expires_at = issued + *expires_in;
  }
  co_return t;
}

}  // namespace

// Not coroutines: everything is copied before the first suspension, so the caller's grant and
// views need not outlive the call.
net::awaitable<Token> refresh(net::any_io_executor ex, const RefreshGrant& grant,
                              const HttpOptions& opts) {
  return do_refresh(std::move(ex), grant.token_url, grant.client_id, grant.client_secret.reveal(),
                    grant.refresh_token.reveal(), grant.scope, opts);
}

net::awaitable<Token> ask_application(net::any_io_executor ex, std::string_view refresh_url,
                                      std::string_view mailbox_id, std::string_view email,
                                      const core::Secret& signing_secret, const HttpOptions& opts) {
  return do_ask_application(std::move(ex), std::string(refresh_url), std::string(mailbox_id),
                            std::string(email), signing_secret.reveal(), opts);
}

}  // namespace el::oauth
