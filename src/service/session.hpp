// MailboxSession: the live subscription of one mailbox. One IDLE connection per watched folder,
// all coroutines on one strand. Detects new mail (IDLE, NOOP polling, periodic re-check),
// hands fetch tasks to the queue one at a time per folder, reconnects with backoff and jitter,
// backs off slowly after an authentication refusal, and reports state changes as events.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/types.hpp"
#include "delivery/sink.hpp"
#include "imap/client.hpp"
#include "queue/task_queue.hpp"
#include "service/options.hpp"
#include "store/registry.hpp"

namespace el::service {

struct SessionStatus {
  core::SessionState state = core::SessionState::connecting;
  std::string last_error;
  std::optional<std::chrono::system_clock::time_point> connected_since;
};

class Ownership;
class Credentials;

struct SessionDeps {
  store::Registry& registry;
  queue::TaskQueue& queue;
  delivery::EventSink& sink;
  const ServiceOptions& opts;
  Ownership* ownership = nullptr;      // publishes state changes for other nodes; may be null
  Credentials* credentials = nullptr;  // OAuth2 tokens; required for mailboxes with oauth2
};

class MailboxSession : public std::enable_shared_from_this<MailboxSession> {
 public:
  MailboxSession(boost::asio::io_context& ioc, SessionDeps deps, core::MailboxConfig cfg,
                 std::uint64_t epoch);
  ~MailboxSession();
  // Starts the folder coroutines after `delay`. Call once.
  void start(std::chrono::milliseconds delay = {});
  // Ends IDLE with DONE, logs out, stops retrying. Asynchronous and idempotent.
  void stop();
  SessionStatus status() const;  // thread-safe
  const std::string& id() const { return cfg_.id; }

 private:
  struct Folder;
  boost::asio::awaitable<void> run_folder(std::shared_ptr<Folder> f);
  // Folders beyond the IDLE limit: STATUS on one connection every status_poll_interval.
  boost::asio::awaitable<void> run_poller();
  // "folders": "all": lists the server's folders, adds new ones; repeats every folder_rescan.
  boost::asio::awaitable<void> run_discovery();
  // Starts watching a folder: its own IDLE loop while under the limit, else the poller.
  void add_folder(const std::string& name);
  boost::asio::awaitable<void> take_baseline(Folder& f, imap::Client& c, std::uint32_t uidvalidity,
                                             std::uint32_t uidnext);
  boost::asio::awaitable<void> check_new(const std::shared_ptr<Folder>& f, imap::Client& c);
  boost::asio::awaitable<std::uint32_t> checkpoint_uid(Folder& f);
  boost::asio::awaitable<void> sleep(Folder& f, std::chrono::milliseconds d);
  void request_fetch(const std::shared_ptr<Folder>& f);
  boost::asio::awaitable<void> fetch_inline(Folder& f, imap::Client& c);
  void trigger_task(const std::shared_ptr<Folder>& f);
  boost::asio::awaitable<void> run_task(std::shared_ptr<Folder> f);
  void set_state(Folder& f, core::SessionState s, std::string error = {});
  void update_aggregate();  // on the strand, after a folder changed
  void emit(core::Event ev);
  std::chrono::milliseconds backoff(int attempt) const;
  // Counts a failed fetch task, logs it and returns how long to wait before the next one.
  std::chrono::milliseconds retry_delay(Folder& f, const queue::TaskResult& r);

  boost::asio::any_io_executor strand_;
  SessionDeps deps_;
  const core::MailboxConfig cfg_;
  const std::uint64_t epoch_;
  std::vector<std::shared_ptr<Folder>> folders_;
  std::vector<std::shared_ptr<Folder>> polled_;  // subset of folders_ watched by the poller
  std::size_t idle_loops_ = 0;
  bool poller_running_ = false;
  bool started_ = false;                                  // the start delay has passed
  boost::asio::steady_timer* start_timer_ = nullptr;      // while waiting to start
  boost::asio::steady_timer* discovery_timer_ = nullptr;  // while run_discovery waits
  imap::Client* poller_client_ = nullptr;                 // while the poller idles (NOTIFY)
  bool stopped_ = false;                                  // on the strand

  mutable std::mutex status_mu_;
  SessionStatus status_;  // aggregate over folders
};

}  // namespace el::service
