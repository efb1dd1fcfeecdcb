// Validation of POST /v1/mailboxes/{id}/send and /sync bodies into typed requests: every field
// typed and checked, unknown fields refused, errors naming the field ("to[2].address").
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cstdio>

#include "http/router.hpp"
#include "mime/compose.hpp"

namespace el::http {
namespace {

namespace json = boost::json;
using MaybeError = std::optional<ApiError>;

constexpr std::size_t kMaxRecipients = 500;  // to + cc + bcc
constexpr std::size_t kMaxAttachments = 100;
constexpr std::size_t kMaxHeaderValue = 998;
constexpr std::size_t kMaxHeaders = 50;
constexpr std::size_t kMaxName = 256;
constexpr std::size_t kMaxSubject = 2000;
constexpr std::size_t kMaxMessageIdRef = 1000;
constexpr std::size_t kMaxReferences = 100;
constexpr std::size_t kMaxFolders = 200;

ApiError bad(std::string code, std::string message, std::string field) {
  return ApiError{400, std::move(code), std::move(message), std::move(field)};
}
MaybeError invalid(const std::string& field, std::string_view why) {
  return bad("invalid_value", field + " " + std::string(why), field);
}
MaybeError wrong_type(const std::string& field, std::string_view expected) {
  return bad("invalid_type", field + " must be " + std::string(expected), field);
}
MaybeError missing(const std::string& field) {
  return bad("missing_field", field + " is required", field);
}

const json::value* find(const json::object& obj, std::string_view key) {
  const json::value* v = obj.if_contains(key);
  return (v == nullptr || v->is_null()) ? nullptr : v;
}

MaybeError check_keys(const json::object& obj, std::initializer_list<std::string_view> allowed,
                      const std::string& prefix) {
  for (const auto& kv : obj) {
    if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
      std::string field =
          prefix.empty() ? std::string(kv.key()) : prefix + "." + std::string(kv.key());
      return bad("unknown_field", "unknown field", field.substr(0, 200));
    }
  }
  return std::nullopt;
}

bool has_control(std::string_view s, bool allow_newlines) {
  return std::any_of(s.begin(), s.end(), [&](char c) {
    const auto u = static_cast<unsigned char>(c);
    if (allow_newlines && (c == '\n' || c == '\r' || c == '\t')) return false;
    return u < 0x20 || u == 0x7f;
  });
}

MaybeError get_text(const json::object& obj, std::string_view key, std::size_t max,
                    bool allow_newlines, std::string& out) {
  const json::value* v = find(obj, key);
  if (v == nullptr) return std::nullopt;
  const std::string field(key);
  if (!v->is_string()) return wrong_type(field, "a string");
  std::string_view s = v->get_string();
  if (s.size() > max) return invalid(field, "is too long");
  if (has_control(s, allow_newlines)) return invalid(field, "must not contain control characters");
  out = std::string(s);
  return std::nullopt;
}

// {"address", "name"?} or a plain address string.
MaybeError parse_recipient(const json::value& v, const std::string& field, mime::Address& out) {
  if (v.is_string()) {
    out.address = std::string(v.get_string());
  } else if (v.is_object()) {
    const auto& o = v.get_object();
    if (auto e = check_keys(o, {"address", "name"}, field)) return e;
    const json::value* a = find(o, "address");
    if (a == nullptr) return missing(field + ".address");
    if (!a->is_string()) return wrong_type(field + ".address", "a string");
    out.address = std::string(a->get_string());
    if (const json::value* n = find(o, "name")) {
      if (!n->is_string()) return wrong_type(field + ".name", "a string");
      if (n->get_string().size() > kMaxName) return invalid(field + ".name", "is too long");
      if (has_control(n->get_string(), false))
        return invalid(field + ".name", "must not contain control characters");
      out.name = std::string(n->get_string());
    }
  } else {
    return wrong_type(field, "an address string or an object {\"address\", \"name\"}");
  }
  if (!mime::valid_address(out.address)) {
    const std::string where = v.is_string() ? field : field + ".address";
    return invalid(where, "is not a valid email address");
  }
  return std::nullopt;
}

MaybeError parse_recipients(const json::object& obj, std::string_view key,
                            std::vector<mime::Address>& out) {
  const json::value* v = find(obj, key);
  if (v == nullptr) return std::nullopt;
  const std::string field(key);
  if (!v->is_array()) {
    // A single recipient is accepted as is.
    mime::Address a;
    if (auto e = parse_recipient(*v, field, a)) return e;
    out.push_back(std::move(a));
    return std::nullopt;
  }
  const auto& arr = v->get_array();
  if (arr.size() > kMaxRecipients) return invalid(field, "has too many recipients");
  for (std::size_t i = 0; i < arr.size(); ++i) {
    mime::Address a;
    if (auto e = parse_recipient(arr[i], field + "[" + std::to_string(i) + "]", a)) return e;
    out.push_back(std::move(a));
  }
  return std::nullopt;
}

// Strict RFC 4648 base64 (whitespace and line breaks allowed, as MIME writers add them).
bool decode_base64(std::string_view in, std::string& out) {
  static const auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(chars[i])] = i;
    return t;
  }();
  out.clear();
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t pad = 0;
  std::size_t symbols = 0;
  for (char c : in) {
    if (c == ' ' || c == '\r' || c == '\n' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      ++symbols;
      continue;
    }
    if (pad > 0) return false;  // data after padding
    const int d = table[static_cast<unsigned char>(c)];
    if (d < 0) return false;
    ++symbols;
    acc = (acc << 6) | static_cast<std::uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (pad > 2 || symbols % 4 != 0) return false;
  return true;
}

MaybeError parse_attachments(const json::object& obj, std::vector<mime::OutgoingAttachment>& out) {
  const json::value* v = find(obj, "attachments");
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) return wrong_type("attachments", "an array");
  const auto& arr = v->get_array();
  if (arr.size() > kMaxAttachments) return invalid("attachments", "has too many items");
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const std::string field = "attachments[" + std::to_string(i) + "]";
    if (!arr[i].is_object()) return wrong_type(field, "an object");
    const auto& a = arr[i].get_object();
    if (auto e =
            check_keys(a, {"filename", "content_type", "content_base64", "content_id"}, field)) {
      return e;
    }
    mime::OutgoingAttachment att;
    const json::value* fn = find(a, "filename");
    if (fn == nullptr) return missing(field + ".filename");
    if (!fn->is_string()) return wrong_type(field + ".filename", "a string");
    if (fn->get_string().empty() || fn->get_string().size() > kMaxName ||
        has_control(fn->get_string(), false) ||
        fn->get_string().find_first_of("/\\") != std::string_view::npos) {
      return invalid(field + ".filename", "must be a file name (no path, no control characters)");
    }
    att.filename = std::string(fn->get_string());
    if (const json::value* ct = find(a, "content_type")) {
      if (!ct->is_string()) return wrong_type(field + ".content_type", "a string");
      std::string_view t = ct->get_string();
      const auto slash = t.find('/');
      const bool ok = slash != std::string_view::npos && slash > 0 && slash + 1 < t.size() &&
                      t.size() <= 255 && std::all_of(t.begin(), t.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) ||
                               std::string_view("!#$&-^_.+/").find(c) != std::string_view::npos;
                      });
      if (!ok) return invalid(field + ".content_type", "must be a media type like image/png");
      att.content_type = std::string(t);
    }
    const json::value* data = find(a, "content_base64");
    if (data == nullptr) return missing(field + ".content_base64");
    if (!data->is_string()) return wrong_type(field + ".content_base64", "a string");
    if (!decode_base64(data->get_string(), att.content))
      return invalid(field + ".content_base64", "is not valid base64");
    if (const json::value* cid = find(a, "content_id")) {
      if (!cid->is_string()) return wrong_type(field + ".content_id", "a string");
      std::string_view c = cid->get_string();
      if (c.size() >= 2 && c.front() == '<' && c.back() == '>') c = c.substr(1, c.size() - 2);
      if (c.empty() || c.size() > kMaxName || has_control(c, false) ||
          c.find_first_of(" <>") != std::string_view::npos) {
        return invalid(field + ".content_id", "must be an id like logo@example");
      }
      att.content_id = std::string(c);
    }
    out.push_back(std::move(att));
  }
  return std::nullopt;
}

bool valid_msg_id_ref(std::string_view s) {
  return !s.empty() && s.size() <= kMaxMessageIdRef && !has_control(s, false) &&
         s.find(' ') == std::string_view::npos;
}

MaybeError parse_threading(const json::object& obj, mime::OutgoingMessage& m) {
  if (auto e = get_text(obj, "in_reply_to", kMaxMessageIdRef, false, m.in_reply_to)) return e;
  if (!m.in_reply_to.empty() && !valid_msg_id_ref(m.in_reply_to))
    return invalid("in_reply_to", "must be a message id");
  const json::value* v = find(obj, "references");
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) {
    // "<a@x> <b@y>" as in the header
    std::string_view s = v->get_string();
    std::size_t pos = 0;
    while (pos < s.size()) {
      const auto start = s.find_first_not_of(" \t", pos);
      if (start == std::string_view::npos) break;
      const auto end = s.find_first_of(" \t", start);
      auto one =
          s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
      if (!valid_msg_id_ref(one)) return invalid("references", "must be message ids");
      m.references.emplace_back(one);
      pos = end == std::string_view::npos ? s.size() : end;
    }
  } else if (v->is_array()) {
    const auto& arr = v->get_array();
    if (arr.size() > kMaxReferences) return invalid("references", "has too many items");
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string field = "references[" + std::to_string(i) + "]";
      if (!arr[i].is_string()) return wrong_type(field, "a string");
      if (!valid_msg_id_ref(arr[i].get_string())) return invalid(field, "must be a message id");
      m.references.emplace_back(arr[i].get_string());
    }
  } else {
    return wrong_type("references", "an array of message ids");
  }
  if (m.references.size() > kMaxReferences) return invalid("references", "has too many items");
  return std::nullopt;
}

MaybeError parse_headers(const json::object& obj, mime::OutgoingMessage& m) {
  const json::value* v = find(obj, "headers");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return wrong_type("headers", "an object of header names to values");
  const auto& h = v->get_object();
  if (h.size() > kMaxHeaders) return invalid("headers", "has too many headers");
  for (const auto& kv : h) {
    std::string_view name = kv.key();
    const std::string field = "headers." + std::string(name.substr(0, 100));
    const bool name_ok =
        !name.empty() && name.size() <= 76 && std::all_of(name.begin(), name.end(), [](char c) {
          const auto u = static_cast<unsigned char>(c);
          return u >= 33 && u <= 126 && c != ':';
        });
    if (!name_ok) return invalid(field, "is not a valid header name");
    if (mime::reserved_header(name)) return invalid(field, "is set by the service");
    if (!kv.value().is_string()) return wrong_type(field, "a string");
    std::string_view value = kv.value().get_string();
    if (value.size() > kMaxHeaderValue) return invalid(field, "is too long");
    if (has_control(value, false)) return invalid(field, "must not contain control characters");
    m.headers.emplace_back(std::string(name), std::string(value));
  }
  return std::nullopt;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    out += buf;
  }
  return out;
}

std::optional<ApiError> parse_json_object(std::string_view body, json::value& root) {
  boost::system::error_code ec;
  root = json::parse(body, ec);
  if (ec) return bad("invalid_json", "the body is not valid JSON", "");
  if (!root.is_object()) return bad("invalid_type", "the body must be a JSON object", "");
  return std::nullopt;
}

}  // namespace

std::variant<service::SendRequest, ApiError> parse_send_body(std::string_view body,
                                                             std::string_view idempotency_key) {
  json::value root;
  if (auto e = parse_json_object(body, root)) return *e;
  const auto& obj = root.get_object();
  if (auto e = check_keys(obj,
                          {"to", "cc", "bcc", "reply_to", "subject", "text", "html", "attachments",
                           "in_reply_to", "references", "headers"},
                          "")) {
    return *e;
  }
  service::SendRequest req;
  auto& m = req.message;
  for (auto [key, list] : {std::pair<std::string_view, std::vector<mime::Address>*>{"to", &m.to},
                           {"cc", &m.cc},
                           {"bcc", &m.bcc},
                           {"reply_to", &m.reply_to}}) {
    if (auto e = parse_recipients(obj, key, *list)) return *e;
  }
  if (m.to.empty() && m.cc.empty() && m.bcc.empty())
    return bad("missing_field", "at least one recipient is required (to, cc or bcc)", "to");
  if (m.to.size() + m.cc.size() + m.bcc.size() > kMaxRecipients)
    return *invalid("to", "too many recipients (to, cc and bcc together: at most 500)");
  if (auto e = get_text(obj, "subject", kMaxSubject, false, m.subject)) return *e;
  if (auto e = get_text(obj, "text", std::string::npos, true, m.text)) return *e;
  if (auto e = get_text(obj, "html", std::string::npos, true, m.html)) return *e;
  if (auto e = parse_attachments(obj, m.attachments)) return *e;
  if (auto e = parse_threading(obj, m)) return *e;
  if (auto e = parse_headers(obj, m)) return *e;

  if (idempotency_key.size() > 255 || has_control(idempotency_key, false))
    return bad("invalid_value", "the Idempotency-Key header must be 1-255 printable characters",
               "Idempotency-Key");
  req.idempotency_key = std::string(idempotency_key);
  req.body_hash = sha256_hex(body);
  return req;
}

std::variant<service::SyncRequest, ApiError> parse_sync_body(std::string_view body) {
  json::value root;
  if (auto e = parse_json_object(body, root)) return *e;
  const auto& obj = root.get_object();
  if (auto e = check_keys(obj, {"since", "until", "folders"}, "")) return *e;
  service::SyncRequest req;
  const json::value* since = find(obj, "since");
  if (since == nullptr) return *missing("since");
  if (!since->is_string()) return *wrong_type("since", "an RFC 3339 date-time string");
  auto s = core::parse_rfc3339(since->get_string());
  if (!s) return *invalid("since", "must be an RFC 3339 date-time");
  req.since = *s;
  if (const json::value* until = find(obj, "until")) {
    if (!until->is_string()) return *wrong_type("until", "an RFC 3339 date-time string");
    auto u = core::parse_rfc3339(until->get_string());
    if (!u) return *invalid("until", "must be an RFC 3339 date-time");
    if (*u <= req.since) return *invalid("until", "must be later than since");
    req.until = *u;
  }
  if (const json::value* f = find(obj, "folders")) {
    if (!f->is_array()) return *wrong_type("folders", "an array of folder names");
    const auto& arr = f->get_array();
    if (arr.empty() || arr.size() > kMaxFolders)
      return *invalid("folders", "must name 1-200 folders");
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string field = "folders[" + std::to_string(i) + "]";
      if (!arr[i].is_string()) return *wrong_type(field, "a string");
      std::string_view n = arr[i].get_string();
      if (n.empty() || n.size() > 1024 || has_control(n, false))
        return *invalid(field, "must be a folder name");
      req.folders.emplace_back(n);
    }
  }
  return req;
}

}  // namespace el::http
