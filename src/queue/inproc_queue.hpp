// In-process task queue: runs tasks in this process with a bound on how many run at once, so a
// burst over many mailboxes cannot open unbounded connections or memory.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <memory>

#include "queue/task_queue.hpp"

namespace el::queue {

class InprocQueue final : public TaskQueue {
 public:
  InprocQueue(net::any_io_executor ex, TaskHandler handler, std::size_t max_concurrent);
  ~InprocQueue() override;
  net::awaitable<TaskResult> submit(FetchTask task) override;
  std::size_t waiting() const;
  std::size_t running() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace el::queue
