// The error body format and the one mapping from service failures to HTTP statuses.
#include <boost/beast/http/field.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "core/log.hpp"
#include "http/internal.hpp"
#include "http/router.hpp"

namespace el::http {

Response error_response(const ApiError& e, unsigned version, bool keep_alive) {
  boost::json::object err;
  err["code"] = e.code;
  err["message"] = e.message;
  // Fields can echo client input (an unknown key); bounded so an error never balloons.
  if (!e.field.empty()) err["field"] = internal::truncate_utf8(e.field, 200);
  boost::json::object body;
  body["error"] = std::move(err);

  Response res{static_cast<bhttp::status>(e.status), version};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::cache_control, "no-store");
  res.keep_alive(keep_alive);
  res.body() = boost::json::serialize(body);
  res.prepare_payload();
  return res;
}

ApiError to_api_error(const service::Failure& f) {
  using service::Errc;
  switch (f.code) {
    case Errc::not_found:
      return {404, "not_found", f.message.empty() ? "mailbox not found" : f.message, f.field};
    case Errc::already_exists:
      return {409, "already_exists", f.message.empty() ? "mailbox already exists" : f.message,
              f.field};
    case Errc::invalid_argument:
      return {400, "invalid_value", f.message.empty() ? "invalid value" : f.message, f.field};
    case Errc::conflict:
      return {409, "conflict", f.message.empty() ? "conflict" : f.message, f.field};
    case Errc::bad_gateway:
      return {502, "mail_server_error", f.message.empty() ? "the mail server failed" : f.message,
              f.field};
    case Errc::unavailable:
      return {503, "unavailable",
              f.message.empty() ? "service unavailable, retry later" : f.message, f.field};
    case Errc::none:  // a success reported as a failure is a bug in the caller: treat as internal
    case Errc::internal:
      break;
  }
  // Internal messages may carry implementation detail: they go to the log, not to the client.
  log::error("http_internal_failure", {{"message", f.message}, {"field", f.field}});
  return {500, "internal", "internal error", ""};
}

}  // namespace el::http
