// Fetch task and result JSON on Boost.JSON, with range checks on every number.
#include "queue/task_codec.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <limits>

namespace el::queue {

namespace json = boost::json;

namespace {

json::object parse_object(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec) throw TaskCodecError(std::string(what) + ": not JSON (" + ec.message() + ")");
  if (!v.is_object()) throw TaskCodecError(std::string(what) + ": not a JSON object");
  return std::move(v.as_object());
}

const json::value* field(const json::object& o, std::string_view key, bool required,
                         std::string_view what) {
  const auto* v = o.if_contains(key);
  if (v == nullptr && required) {
    throw TaskCodecError(std::string(what) + ": missing \"" + std::string(key) + "\"");
  }
  return v;
}

std::string string_field(const json::object& o, std::string_view key, bool required,
                         std::string_view what) {
  const auto* v = field(o, key, required, what);
  if (v == nullptr) return {};
  if (!v->is_string()) {
    throw TaskCodecError(std::string(what) + ": \"" + std::string(key) + "\" is not a string");
  }
  return std::string(v->as_string());
}

// A non-negative integer up to `max`. 3.0 is accepted (some encoders write integral doubles).
std::uint64_t uint_field(const json::object& o, std::string_view key, bool required,
                         std::uint64_t max, std::string_view what) {
  const auto* v = field(o, key, required, what);
  if (v == nullptr) return 0;
  auto bad = [&](std::string_view why) {
    return TaskCodecError(std::string(what) + ": \"" + std::string(key) + "\" " + std::string(why));
  };
  std::uint64_t n = 0;
  if (v->is_uint64()) {
    n = v->as_uint64();
  } else if (v->is_int64()) {
    if (v->as_int64() < 0) throw bad("is negative");
    n = static_cast<std::uint64_t>(v->as_int64());
  } else if (v->is_double()) {
    const double d = v->as_double();
    // 2^64 is exactly representable; anything at or above it does not fit.
    if (!(d >= 0) || d >= 18446744073709551616.0 ||
        d != static_cast<double>(static_cast<std::uint64_t>(d))) {
      throw bad("is not a non-negative integer");
    }
    n = static_cast<std::uint64_t>(d);
  } else {
    throw bad("is not a number");
  }
  if (n > max) throw bad("is out of range");
  return n;
}

constexpr auto kU32 = std::numeric_limits<std::uint32_t>::max();
constexpr auto kU64 = std::numeric_limits<std::uint64_t>::max();

}  // namespace

std::string_view to_string(TaskResult::Status s) {
  switch (s) {
    case TaskResult::Status::done:
      return "done";
    case TaskResult::Status::retry_later:
      return "retry_later";
    case TaskResult::Status::reset:
      return "reset";
    case TaskResult::Status::stale:
      return "stale";
  }
  return "retry_later";
}

std::optional<TaskResult::Status> status_from_string(std::string_view s) {
  if (s == "done") return TaskResult::Status::done;
  if (s == "retry_later") return TaskResult::Status::retry_later;
  if (s == "reset") return TaskResult::Status::reset;
  if (s == "stale") return TaskResult::Status::stale;
  return std::nullopt;
}

std::string encode_task(const FetchTask& task) {
  json::object o;
  o["mailbox_id"] = task.mailbox_id;
  o["folder"] = task.folder;
  o["uidvalidity"] = task.uidvalidity;
  o["after_uid"] = task.after_uid;
  o["epoch"] = task.epoch;
  return json::serialize(o);
}

FetchTask decode_task(std::string_view text) {
  constexpr std::string_view what = "fetch task";
  const auto o = parse_object(text, what);
  FetchTask t;
  t.mailbox_id = string_field(o, "mailbox_id", true, what);
  if (t.mailbox_id.empty()) throw TaskCodecError("fetch task: empty \"mailbox_id\"");
  t.folder = string_field(o, "folder", true, what);
  if (t.folder.empty()) throw TaskCodecError("fetch task: empty \"folder\"");
  t.uidvalidity = static_cast<std::uint32_t>(uint_field(o, "uidvalidity", true, kU32, what));
  t.after_uid = static_cast<std::uint32_t>(uint_field(o, "after_uid", true, kU32, what));
  t.epoch = uint_field(o, "epoch", true, kU64, what);
  return t;
}

std::string encode_result(const TaskResult& r) {
  json::object o;
  o["status"] = to_string(r.status);
  o["last_uid"] = r.last_uid;
  o["delivered"] = r.delivered;
  o["error"] = r.error;
  o["connection_failed"] = r.connection_failed;
  return json::serialize(o);
}

TaskResult decode_result(std::string_view text) {
  constexpr std::string_view what = "task result";
  const auto o = parse_object(text, what);
  TaskResult r;
  const auto status = string_field(o, "status", true, what);
  const auto s = status_from_string(status);
  if (!s) throw TaskCodecError("task result: unknown status \"" + status + "\"");
  r.status = *s;
  r.last_uid = static_cast<std::uint32_t>(uint_field(o, "last_uid", false, kU32, what));
  r.delivered = static_cast<std::uint32_t>(uint_field(o, "delivered", false, kU32, what));
  r.error = string_field(o, "error", false, what);
  if (const auto* v = field(o, "connection_failed", false, what)) {
    if (!v->is_bool()) throw TaskCodecError("task result: \"connection_failed\" is not a boolean");
    r.connection_failed = v->as_bool();
  }
  return r;
}

}  // namespace el::queue
