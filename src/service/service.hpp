// The mailbox service: the MailboxApi use cases over the registry, plus the live sessions of
// the mailboxes this node owns (all of them on a single node; its fair share in a fleet).
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <memory>
#include <mutex>

#include "delivery/sink.hpp"
#include "queue/task_queue.hpp"
#include "service/api.hpp"
#include "service/options.hpp"
#include "service/ownership.hpp"
#include "service/session.hpp"
#include "store/registry.hpp"

namespace el::service {

class Fetcher;
class Credentials;
class Sender;
class Backfill;

class MailboxService final : public MailboxApi, private OwnedSessions {
 public:
  // Everything passed by reference must outlive the service. fetcher may be null (no local
  // downloads); it is told when a mailbox's settings change.
  MailboxService(boost::asio::io_context& ioc, store::Registry& registry, queue::TaskQueue& queue,
                 delivery::EventSink& sink, Fetcher* fetcher, ServiceOptions opts,
                 Credentials* credentials = nullptr);
  ~MailboxService() override;

  // Joins the fleet: heartbeats, and (unless a worker) claims its share of the mailboxes and
  // starts their sessions.
  void start();
  // Graceful hand-over: stops every session (DONE, LOGOUT) and releases every lease at once so
  // that other nodes take over without waiting for expiry.
  net::awaitable<void> shutdown();
  // Stops every session without touching the registry. Asynchronous.
  void stop();

  net::awaitable<Outcome> add_mailbox(core::MailboxConfig cfg) override;
  net::awaitable<Outcome> get_mailbox(std::string id) override;
  net::awaitable<Outcome> list_mailboxes(std::string cursor, std::size_t limit) override;
  net::awaitable<Outcome> update_mailbox(core::MailboxConfig cfg, UpdateMask mask) override;
  net::awaitable<Outcome> remove_mailbox(std::string id) override;
  net::awaitable<Outcome> send_message(std::string mailbox_id, SendRequest req) override;
  net::awaitable<Outcome> get_send(std::string send_id) override;
  net::awaitable<Outcome> list_folders(std::string mailbox_id) override;
  net::awaitable<Outcome> sync_mailbox(std::string mailbox_id, SyncRequest req) override;
  net::awaitable<Outcome> validate(core::MailboxConfig cfg) override;
  net::awaitable<Outcome> list_nodes() override;
  boost::json::object readiness() const override;
  std::string metrics_text() const override;

  // After stop(): true once every stopped session has ended its coroutines (logged out).
  bool sessions_ended() const;

 private:
  void serve(const store::MailboxRecord& record, std::uint64_t epoch,
             std::chrono::milliseconds delay) override;
  void drop(const std::string& id) override;

  boost::json::object status_json(const store::MailboxRecord& r) const;
  // The stored settings; nullopt with failure set (not_found, unavailable).
  net::awaitable<std::optional<core::MailboxConfig>> config_of(const std::string& id,
                                                               Outcome& failure);
  void start_session(const core::MailboxConfig& cfg, std::uint64_t epoch,
                     std::chrono::milliseconds delay);
  void stop_session(const std::string& id);
  net::awaitable<bool> flush();  // registry.flush() off the I/O threads; false on failure
  // Runs a registry call off the I/O threads; Unavailable becomes a 503 outcome.
  template <class F>
  net::awaitable<std::optional<std::invoke_result_t<F&>>> guarded(F f, Outcome& failure);

  boost::asio::io_context& ioc_;
  store::Registry& registry_;
  queue::TaskQueue& queue_;
  delivery::EventSink& sink_;
  Fetcher* fetcher_;
  ServiceOptions opts_;
  std::shared_ptr<Ownership> ownership_;
  std::unique_ptr<Credentials> own_credentials_;  // when the caller gave none
  Credentials* credentials_ = nullptr;
  std::shared_ptr<Sender> sender_;
  std::shared_ptr<Backfill> backfill_;
  boost::asio::thread_pool blocking_{1};  // state-file flushes
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<MailboxSession>, std::less<>> sessions_;
  bool started_ = false;
  std::vector<std::weak_ptr<MailboxSession>> stopping_;
};

}  // namespace el::service
