// Fetch tasks through RabbitMQ (ARCHITECTURE §2, §7).
//
// api side, AmqpTaskQueue: publishes each task (persistent, publisher-confirmed) to the tasks
// queue with reply_to = this node's results queue, and completes submit() when the worker's
// result comes back. A task runs here instead, through `fallback`, when no worker consumes the
// tasks queue, when the broker cannot be used, or when the oldest outstanding task waited
// longer than max_wait: peaks are smoothed by workers, never stalled by their absence.
//
// worker side, AmqpWorker: consumes the tasks queue with manual ack and a prefetch limit, runs
// each task with the handler (download, deliver, checkpoint), publishes the result to the
// task's reply_to and only then acks. A task delivered again after a worker died mid-task
// counts an attempt; after max_attempts it goes to the dead-letter queue.
//
// Each object owns one connection and one thread that does all the blocking rabbitmq-c work;
// coroutines never block, completions come back through the executor. Constructors throw
// std::invalid_argument for a malformed url or type (configuration errors). Destroy them before
// the executor's io_context: their thread posts to it.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "queue/task_queue.hpp"

namespace el::queue {

struct AmqpQueueOptions {
  std::string url;              // amqp://user:password@host:port/vhost (vhost %2f = "/")
  std::string type = "quorum";  // quorum | classic (the tasks and dead-letter queues)
  std::string prefix = "el.";   // queues: {prefix}tasks, {prefix}tasks.dead, {prefix}results.{node}
  std::string node_id;
  std::size_t prefetch = 16;                  // worker: unacknowledged tasks at once
  std::size_t max_attempts = 5;               // deliveries of one task before it is dead-lettered
  std::chrono::milliseconds max_wait{30000};  // api: a task older than this runs here
  std::chrono::milliseconds task_timeout{600000};  // api: give up waiting for a result
  std::chrono::milliseconds reconnect_delay{1000};
};

class AmqpTaskQueue final : public TaskQueue {
 public:
  // fallback must outlive the queue. Connects in the background; until connected, tasks run
  // through the fallback.
  AmqpTaskQueue(net::any_io_executor ex, AmqpQueueOptions opts, TaskQueue& fallback);
  ~AmqpTaskQueue() override;
  net::awaitable<TaskResult> submit(FetchTask task) override;
  bool runs_here() const override;
  bool healthy() const override;
  std::string health_detail() const override;
  // Workers consuming the tasks queue, as last seen (refreshed about every second).
  std::size_t consumers() const;
  // Closes the connection (non-blocking); outstanding submits complete with retry_later, and so
  // do later ones (no fallback: the node is shutting down).
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

class AmqpWorker {
 public:
  // handler runs on a fresh strand of ex for each task.
  AmqpWorker(net::any_io_executor ex, AmqpQueueOptions opts, TaskHandler handler);
  ~AmqpWorker();
  void start();
  // Stops consuming; tasks in progress finish (bounded by `grace`), the others return to the
  // queue unacknowledged for another worker. Non-blocking: the connection closes once the tasks
  // in progress are acknowledged or grace has passed; the destructor waits for that. Destroying
  // a worker without stop() is abrupt, like a crash (its unacknowledged tasks are redelivered).
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  bool healthy() const;
  std::string health_detail() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace el::queue
