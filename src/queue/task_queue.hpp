// Task queue port: fetch tasks from the session that saw new mail to whoever downloads it.
// Adapters: in-process (here) and RabbitMQ (later).
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <string>

namespace el::imap {
class Client;
}

namespace el::queue {

namespace net = boost::asio;

// Download everything in `folder` above `after_uid`, in UID order, delivering each message and
// moving the checkpoint after each accepted event. At most one task per mailbox folder is in
// flight (the session guarantees it), so events stay in UID order without re-ordering.
struct FetchTask {
  std::string mailbox_id;
  std::string folder;
  std::uint32_t uidvalidity = 0;
  std::uint32_t after_uid = 0;
  std::uint64_t epoch = 0;  // the mailbox epoch the task was issued under (fencing)
  // In-process only: the session's own logged-in connection, with the folder selected, lent
  // for this task and usable only on the submitting strand. The fetcher downloads on it instead
  // of opening another connection. Adapters that cross processes drop it.
  imap::Client* borrowed_connection = nullptr;
};

struct TaskResult {
  enum class Status {
    done,         // everything above after_uid at fetch time was delivered
    retry_later,  // stopped early (sink refused, connection failed); the checkpoint says how far
    reset,        // UIDVALIDITY differs from the task's: the session must take a new baseline
    stale,        // the mailbox was removed or its settings changed (epoch moved)
  };
  Status status = Status::done;
  std::uint32_t last_uid = 0;  // the checkpoint after the task
  std::uint32_t delivered = 0;
  std::string error;
  bool connection_failed = false;  // the borrowed connection failed: the session reconnects
};

using TaskHandler = std::function<net::awaitable<TaskResult>(const FetchTask&)>;

class TaskQueue {
 public:
  virtual ~TaskQueue() = default;
  // Queues the task and completes when it was processed and acknowledged (or failed).
  // Thread-safe.
  virtual net::awaitable<TaskResult> submit(FetchTask task) = 0;
  // Whether a task submitted now runs in this process, so that a borrowed connection is used
  // (RabbitMQ: only while no worker consumes or the broker is down). Thread-safe, no I/O.
  virtual bool runs_here() const { return true; }
  // Readiness: false while the broker cannot be used. Thread-safe, no I/O.
  virtual bool healthy() const { return true; }
  // Human-readable reason when !healthy() (for /readyz and logs).
  virtual std::string health_detail() const { return {}; }
};

}  // namespace el::queue
