// JSON of fetch tasks and their results, as they travel through RabbitMQ between an api node and
// a worker. borrowed_connection never travels (it is meaningful in one process only).
//
//   task:   {"mailbox_id","folder","uidvalidity","after_uid","epoch"}
//   result: {"status":"done|retry_later|reset|stale","last_uid","delivered","error",
//            "connection_failed"}
//
// Decoding is strict about what it needs (types, ranges; all task fields and the result's status
// are required) and ignores unknown keys, so a newer peer can add fields.
#pragma once
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "queue/task_queue.hpp"

namespace el::queue {

// Malformed input: not JSON, not an object, a missing or mistyped field, a number out of range.
class TaskCodecError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

std::string encode_task(const FetchTask& task);
FetchTask decode_task(std::string_view json);  // throws TaskCodecError

std::string encode_result(const TaskResult& result);
TaskResult decode_result(std::string_view json);  // throws TaskCodecError

std::string_view to_string(TaskResult::Status s);
std::optional<TaskResult::Status> status_from_string(std::string_view s);

}  // namespace el::queue
