// Fetcher: runs fetch tasks. Downloads the messages of one folder above a checkpoint with
// UID FETCH BODY.PEEK[] (they stay unread), turns each into JSON, delivers it to the sink and
// moves the checkpoint after each accepted event. Download connections are pooled per mailbox
// folder for a short while, so a burst pays one login.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string_view>

#include "delivery/sink.hpp"
#include "queue/task_queue.hpp"
#include "service/options.hpp"
#include "store/registry.hpp"

namespace el::service {

class Credentials;

class Fetcher {
 public:
  // registry and sink must outlive the fetcher. ex: runs the pool sweeper.
  Fetcher(boost::asio::any_io_executor ex, store::Registry& registry, delivery::EventSink& sink,
          ServiceOptions opts, std::size_t cpu_threads, Credentials* credentials = nullptr);
  ~Fetcher();

  // Thread-safe; the caller's executor must be a strand (connections are bound to it).
  boost::asio::awaitable<queue::TaskResult> run(const queue::FetchTask& task);
  // Drops pooled connections of a mailbox (its settings changed or it was removed).
  void forget(std::string_view mailbox_id);
  // Closes every pooled connection; later tasks still work (for shutdown).
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// The webhook a mailbox's events go to: its own, else the service default.
std::optional<core::WebhookTarget> webhook_for(const core::MailboxConfig& cfg,
                                               const ServiceOptions& opts);

}  // namespace el::service
