// Synchronizing a period (POST /v1/mailboxes/{id}/sync): delivers the messages received between
// since and until, oldest first, as message.new events marked "backfill": true, on a connection
// of its own (live delivery and checkpoints are untouched). Event ids are the live ones
// (mailbox, folder, uidvalidity, uid), so a repeated sync, or a message also delivered live,
// arrives under the same id. Progress (done/total) is saved in the registry and shown in the
// mailbox status by every node. One sync per mailbox at a time on a node. Thread-safe.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "delivery/sink.hpp"
#include "service/api.hpp"
#include "service/options.hpp"
#include "store/registry.hpp"

namespace el::service {

class Credentials;

class Backfill : public std::enable_shared_from_this<Backfill> {
 public:
  Backfill(boost::asio::io_context& ioc, store::Registry& registry, delivery::EventSink& sink,
           const ServiceOptions& opts, Credentials* credentials);
  ~Backfill();
  // -> 202 body {"sync_id","state":"running",...}; conflict if one runs for this mailbox.
  net::awaitable<Outcome> start(const core::MailboxConfig& cfg, SyncRequest req);
  void stop();

 private:
  struct Job;
  net::awaitable<void> run(std::shared_ptr<Job> job);
  net::awaitable<void> save(Job& job);

  boost::asio::io_context& ioc_;
  store::Registry& registry_;
  delivery::EventSink& sink_;
  const ServiceOptions& opts_;
  Credentials* credentials_;
  boost::asio::thread_pool cpu_{1};  // MIME parsing
  std::mutex mu_;
  std::set<std::string> running_;  // mailbox ids
  bool stopped_ = false;
};

}  // namespace el::service
