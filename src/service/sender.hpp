// Sending mail for a mailbox: accepts a message (validated, built with GMime, checked against
// the server's SIZE), stores it as a pending send, and runs it: SMTP submission, retries with
// backoff on temporary failures, the copy in the Sent folder, and the outcome event
// (message.sent / message.send_failed). A send survives a crash or a restart: any node resumes
// pending sends no other node holds (a claim lease), and one whose SMTP outcome is known is
// only reported, never sent again. Thread-safe.
#pragma once
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
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

class Sender : public std::enable_shared_from_this<Sender> {
 public:
  Sender(boost::asio::io_context& ioc, store::Registry& registry, delivery::EventSink& sink,
         const ServiceOptions& opts, Credentials* credentials);
  ~Sender();
  // Starts the scan for pending sends (own and orphaned). Call once.
  void start();
  void stop();

  // -> 202 body {"send_id","message_id","state"}; a repeated Idempotency-Key answers the first
  // send; the same key with another body: conflict.
  net::awaitable<Outcome> submit(const core::MailboxConfig& cfg, SendRequest req);
  // -> the send as GET /v1/sends/{id} shows it.
  net::awaitable<Outcome> status(std::string send_id);

  struct Counters {
    std::atomic<std::uint64_t> accepted{0}, sent{0}, failed{0}, retries{0}, appended{0};
  };
  const Counters& counters() const { return counters_; }
  void release_slot(const std::string& mailbox_id);  // internal: a send of it ended

 private:
  net::awaitable<void> scan_loop();
  net::awaitable<void> run(std::string send_id);
  void launch(const std::string& send_id);
  net::awaitable<std::optional<std::uint64_t>> size_limit(const core::MailboxConfig& cfg);

  boost::asio::io_context& ioc_;
  store::Registry& registry_;
  delivery::EventSink& sink_;
  const ServiceOptions& opts_;
  Credentials* credentials_;
  boost::asio::thread_pool cpu_{1};  // composing messages, state-file flushes
  std::mutex mu_;
  std::set<std::string> running_;                     // send ids running on this node
  std::map<std::string, std::size_t> active_;         // mailbox id -> its sends talking to servers
  std::map<std::string, std::uint64_t> size_limits_;  // host:port -> SIZE (0: none announced)
  bool stopped_ = false;
  bool starved_ = false;  // launch() turned a send away: the node was at max_concurrent
  bool rescan_ = false;   // scan again at once (a slot freed)
  std::shared_ptr<boost::asio::steady_timer> scan_timer_;
  Counters counters_;
};

// A JSON view of a send for the API and events.
boost::json::object send_json(const store::SendRecord& s);

}  // namespace el::service
