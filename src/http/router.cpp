// Routes a parsed request to MailboxApi: target parsing, auth, method checks, response mapping.
#include "http/router.hpp"

#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <exception>
#include <optional>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "http/internal.hpp"

namespace el::http {
namespace {

namespace json = boost::json;
namespace urls = boost::urls;

constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;

enum class Route {
  none,
  healthz,
  readyz,
  metrics,
  collection,
  item,
  nodes,
  validate,  // POST /v1/mailboxes/validate
  send,      // POST /v1/mailboxes/{id}/send
  folders,   // GET /v1/mailboxes/{id}/folders
  sync,      // POST /v1/mailboxes/{id}/sync
  send_item  // GET /v1/sends/{send_id}
};

struct Target {
  Route route = Route::none;
  std::string id;      // for Route::item, percent-decoded
  urls::url_view url;  // views req.target(), which outlives every use here
};

std::optional<Target> parse_target(std::string_view raw) {
  // Origin form ("/v1/...") is what clients send; absolute form is legal HTTP/1.1 as well.
  auto parsed = !raw.empty() && raw.front() == '/' ? urls::parse_origin_form(raw)
                                                   : urls::parse_absolute_uri(raw);
  if (!parsed) return std::nullopt;
  Target t;
  t.url = *parsed;
  if (!t.url.is_path_absolute()) return t;
  std::vector<std::string> segs;
  for (auto s : t.url.segments()) {
    if (segs.size() == 4) return t;  // deeper than any route
    segs.emplace_back(s);
  }
  if (segs.size() == 1) {
    if (segs[0] == "healthz") t.route = Route::healthz;
    if (segs[0] == "readyz") t.route = Route::readyz;
    if (segs[0] == "metrics") t.route = Route::metrics;
  } else if (segs.size() == 2 && segs[0] == "v1" && segs[1] == "nodes") {
    t.route = Route::nodes;
  } else if (segs.size() == 3 && segs[0] == "v1" && segs[1] == "sends" && !segs[2].empty()) {
    t.route = Route::send_item;
    t.id = std::move(segs[2]);
  } else if (segs.size() >= 2 && segs[0] == "v1" && segs[1] == "mailboxes") {
    if (segs.size() == 2) {
      t.route = Route::collection;
    } else if (segs.size() == 3 && !segs[2].empty()) {  // "/v1/mailboxes/" is not an item
      t.route = Route::item;
      t.id = std::move(segs[2]);
    } else if (segs.size() == 4 && !segs[2].empty()) {
      if (segs[3] == "send") t.route = Route::send;
      if (segs[3] == "folders") t.route = Route::folders;
      if (segs[3] == "sync") t.route = Route::sync;
      if (t.route != Route::none) t.id = std::move(segs[2]);
    }
  }
  return t;
}

std::string_view allowed_methods(Route r) {
  switch (r) {
    case Route::healthz:
    case Route::readyz:
    case Route::metrics:
    case Route::nodes:
      return "GET";
    case Route::collection:
      return "GET, POST";
    case Route::item:
      return "GET, PUT, DELETE";
    case Route::validate:
    case Route::send:
    case Route::sync:
      return "POST";
    case Route::folders:
    case Route::send_item:
      return "GET";
    case Route::none:
      break;
  }
  return "";
}

bool method_allowed(Route r, bhttp::verb v) {
  switch (r) {
    case Route::healthz:
    case Route::readyz:
    case Route::metrics:
    case Route::nodes:
      return v == bhttp::verb::get;
    case Route::collection:
      return v == bhttp::verb::get || v == bhttp::verb::post;
    case Route::item:
      return v == bhttp::verb::get || v == bhttp::verb::put || v == bhttp::verb::delete_;
    case Route::validate:
    case Route::send:
    case Route::sync:
      return v == bhttp::verb::post;
    case Route::folders:
    case Route::send_item:
      return v == bhttp::verb::get;
    case Route::none:
      break;
  }
  return false;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool authorized(const Request& req, const std::vector<std::string>& tokens) {
  // RFC 7235: the scheme name is case-insensitive; one or more spaces precede the credentials.
  std::string_view h = req[bhttp::field::authorization];
  if (h.size() < 7 || !iequals(h.substr(0, 6), "Bearer") || h[6] != ' ') return false;
  std::string_view token = trim(h.substr(7));
  return !token.empty() && internal::token_matches(token, tokens);
}

bool is_json_media_type(std::string_view ct) {
  return iequals(trim(ct.substr(0, ct.find(';'))), "application/json");
}

Response fail(const Request& req, unsigned status, std::string code, std::string message,
              std::string field = {}) {
  return error_response({status, std::move(code), std::move(message), std::move(field)},
                        req.version(), req.keep_alive());
}

Response json_response(const Request& req, bhttp::status status, const json::object& body) {
  Response res{status, req.version()};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = json::serialize(body);
  res.prepare_payload();
  return res;
}

Response from_outcome(const Request& req, const service::Outcome& o, bhttp::status success) {
  if (!o.ok()) return error_response(to_api_error(o.failure), req.version(), req.keep_alive());
  if (success == bhttp::status::no_content) {
    // No prepare_payload(): it would add "Content-Length: 0", which RFC 9110 forbids on a 204.
    Response res{success, req.version()};
    res.keep_alive(req.keep_alive());
    return res;
  }
  return json_response(req, success, o.body);
}

// POST/PUT bodies: 415 unless JSON. An empty body passes so the parser reports invalid_json.
std::optional<Response> check_content_type(const Request& req) {
  if (req.body().empty() || is_json_media_type(req[bhttp::field::content_type])) {
    return std::nullopt;
  }
  return fail(req, 415, "unsupported_media_type", "the body must be application/json");
}

Response handle_metrics(const Request& req, service::MailboxApi& api) {
  std::string text = internal::render_metrics(metrics::global());
  text += api.metrics_text();
  if (!text.empty() && text.back() != '\n') text += '\n';
  Response res{bhttp::status::ok, req.version()};
  res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.set(bhttp::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(text);
  res.prepare_payload();
  return res;
}

net::awaitable<Response> handle_list(const Request& req, const Target& t,
                                     service::MailboxApi& api) {
  std::size_t limit = kDefaultLimit;
  std::string cursor;
  bool seen_limit = false;
  bool seen_cursor = false;
  for (auto p : t.url.params()) {
    if (p.key == "limit") {
      if (seen_limit) co_return fail(req, 400, "invalid_value", "limit given twice", "limit");
      seen_limit = true;
      const std::string& v = p.value;
      const bool digits =
          !v.empty() && v.size() <= 4 &&
          std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
      limit = digits ? std::stoul(v) : 0;
      if (limit < 1 || limit > kMaxLimit) {
        co_return fail(req, 400, "invalid_value", "limit must be an integer from 1 to 1000",
                       "limit");
      }
    } else if (p.key == "cursor") {
      if (seen_cursor) co_return fail(req, 400, "invalid_value", "cursor given twice", "cursor");
      seen_cursor = true;
      // A cursor is the last id of the previous page, so it has the syntax of an id.
      if (!p.value.empty() && !internal::valid_mailbox_id(p.value)) {
        co_return fail(req, 400, "invalid_value", "cursor must be a mailbox id", "cursor");
      }
      cursor = p.value;
    } else {
      co_return fail(req, 400, "unknown_field", "unknown query parameter",
                     internal::truncate_utf8(p.key, 200));
    }
  }
  auto out = co_await api.list_mailboxes(std::move(cursor), limit);
  co_return from_outcome(req, out, bhttp::status::ok);
}

net::awaitable<Response> handle_create(const Request& req, service::MailboxApi& api) {
  if (auto r = check_content_type(req)) co_return std::move(*r);
  auto parsed = parse_mailbox_body(req.body(), BodyMode::create);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    co_return error_response(*e, req.version(), req.keep_alive());
  }
  auto& p = std::get<ParsedMailbox>(parsed);
  std::string id = p.config.id;
  auto out = co_await api.add_mailbox(std::move(p.config));
  Response res = from_outcome(req, out, bhttp::status::created);
  if (!out.ok()) co_return res;
  // The service picks the id when the client did not; it is in the outcome body.
  if (const json::value* v = out.body.if_contains("id"); v != nullptr && v->is_string()) {
    id = std::string(v->get_string());
  }
  if (internal::valid_mailbox_id(id)) res.set(bhttp::field::location, "/v1/mailboxes/" + id);
  co_return res;
}

net::awaitable<Response> handle_update(const Request& req, const Target& t,
                                       service::MailboxApi& api) {
  if (auto r = check_content_type(req)) co_return std::move(*r);
  auto parsed = parse_mailbox_body(req.body(), BodyMode::update);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    co_return error_response(*e, req.version(), req.keep_alive());
  }
  auto& p = std::get<ParsedMailbox>(parsed);
  if (!p.config.id.empty() && p.config.id != t.id) {
    co_return fail(req, 400, "invalid_value", "id in the body must equal the id in the path", "id");
  }
  p.config.id = t.id;
  auto out = co_await api.update_mailbox(std::move(p.config), p.mask);
  co_return from_outcome(req, out, bhttp::status::ok);
}

net::awaitable<Response> handle_validate(const Request& req, service::MailboxApi& api) {
  if (auto r = check_content_type(req)) co_return std::move(*r);
  auto parsed = parse_mailbox_body(req.body(), BodyMode::create);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    co_return error_response(*e, req.version(), req.keep_alive());
  }
  auto& p = std::get<ParsedMailbox>(parsed);
  auto out = co_await api.validate(std::move(p.config));
  co_return from_outcome(req, out, bhttp::status::ok);
}

net::awaitable<Response> handle_send(const Request& req, const Target& t,
                                     service::MailboxApi& api) {
  if (auto r = check_content_type(req)) co_return std::move(*r);
  auto parsed = parse_send_body(req.body(), req["Idempotency-Key"]);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    co_return error_response(*e, req.version(), req.keep_alive());
  }
  auto out = co_await api.send_message(t.id, std::move(std::get<service::SendRequest>(parsed)));
  Response res = from_outcome(req, out, bhttp::status::accepted);
  if (out.ok()) {
    if (const json::value* v = out.body.if_contains("send_id"); v != nullptr && v->is_string())
      res.set(bhttp::field::location, "/v1/sends/" + std::string(v->get_string()));
  }
  co_return res;
}

net::awaitable<Response> handle_sync(const Request& req, const Target& t,
                                     service::MailboxApi& api) {
  if (auto r = check_content_type(req)) co_return std::move(*r);
  auto parsed = parse_sync_body(req.body());
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    co_return error_response(*e, req.version(), req.keep_alive());
  }
  auto out = co_await api.sync_mailbox(t.id, std::move(std::get<service::SyncRequest>(parsed)));
  co_return from_outcome(req, out, bhttp::status::accepted);
}

net::awaitable<Response> dispatch(const Request& req, service::MailboxApi& api,
                                  const std::vector<std::string>& tokens) {
  std::optional<Target> t = parse_target(req.target());
  if (!t) co_return fail(req, 400, "bad_request", "malformed request target");

  // Probes and scrapes stay open so orchestrators and Prometheus need no credentials.
  const bool open =
      t->route == Route::healthz || t->route == Route::readyz || t->route == Route::metrics;
  // Auth before 404/405, so that without a token nobody can map which routes exist.
  if (!open && !tokens.empty() && !authorized(req, tokens)) {
    Response res = fail(req, 401, "unauthorized", "a valid bearer token is required");
    res.set(bhttp::field::www_authenticate, "Bearer");
    co_return res;
  }
  // "validate" is also a valid mailbox id: POST on it is the credential check, the other
  // methods reach the mailbox of that name.
  if (t->route == Route::item && t->id == "validate" && req.method() == bhttp::verb::post)
    t->route = Route::validate;
  if (t->route == Route::none) co_return fail(req, 404, "not_found", "no such route");
  if (!method_allowed(t->route, req.method())) {
    Response res = fail(req, 405, "method_not_allowed", "method not allowed on this route");
    res.set(bhttp::field::allow, allowed_methods(t->route));
    co_return res;
  }
  const bool mailbox_route = t->route == Route::item || t->route == Route::send ||
                             t->route == Route::folders || t->route == Route::sync;
  if (mailbox_route && !internal::valid_mailbox_id(t->id)) {
    co_return fail(req, 400, "invalid_value", "id must be 1-128 characters of A-Z a-z 0-9 . _ -",
                   "id");
  }

  switch (t->route) {
    case Route::healthz:
      co_return json_response(req, bhttp::status::ok, {{"status", "ok"}});
    case Route::readyz: {
      auto r = api.readiness();
      const bool ready = r["status"] == "ready";
      co_return json_response(req, ready ? bhttp::status::ok : bhttp::status::service_unavailable,
                              r);
    }
    case Route::nodes: {
      auto out = co_await api.list_nodes();
      co_return from_outcome(req, out, bhttp::status::ok);
    }
    case Route::metrics:
      co_return handle_metrics(req, api);
    case Route::collection:
      if (req.method() == bhttp::verb::post) co_return co_await handle_create(req, api);
      co_return co_await handle_list(req, *t, api);
    case Route::item:
      if (req.method() == bhttp::verb::get) {
        auto out = co_await api.get_mailbox(t->id);
        co_return from_outcome(req, out, bhttp::status::ok);
      }
      if (req.method() == bhttp::verb::put) co_return co_await handle_update(req, *t, api);
      {
        auto out = co_await api.remove_mailbox(t->id);
        co_return from_outcome(req, out, bhttp::status::no_content);
      }
    case Route::validate:
      co_return co_await handle_validate(req, api);
    case Route::send:
      co_return co_await handle_send(req, *t, api);
    case Route::folders: {
      auto out = co_await api.list_folders(t->id);
      co_return from_outcome(req, out, bhttp::status::ok);
    }
    case Route::sync:
      co_return co_await handle_sync(req, *t, api);
    case Route::send_item: {
      if (!internal::valid_mailbox_id(t->id))
        co_return fail(req, 404, "not_found", "no send with this id", "send_id");
      auto out = co_await api.get_send(t->id);
      co_return from_outcome(req, out, bhttp::status::ok);
    }
    case Route::none:
      break;
  }
  co_return fail(req, 404, "not_found", "no such route");
}

std::string path_for_log(const Request& req) {
  std::string_view target = req.target();
  return internal::truncate_utf8(target.substr(0, target.find('?')), 256);
}

}  // namespace

net::awaitable<Response> handle(const Request& req, service::MailboxApi& api,
                                const std::vector<std::string>& tokens) {
  std::string what;
  try {
    co_return co_await dispatch(req, api, tokens);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  // Only the route and the exception text: never the body or the Authorization header.
  log::error("http_handler_exception", {{"method", std::string(req.method_string())},
                                        {"path", path_for_log(req)},
                                        {"error", internal::truncate_utf8(what, 512)}});
  co_return fail(req, 500, "internal", "internal error");
}

}  // namespace el::http
