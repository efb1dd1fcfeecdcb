// Ownership: which mailboxes this node serves when several nodes share one registry
// (ARCHITECTURE §5). One coroutine ticks every lease/3: heartbeat, renew the leases held (a
// lost lease stops its session; a moved epoch means new settings and restarts it), hand back
// what exceeds the fair share, and claim unowned mailboxes up to it. Fair share =
// ceil(mailboxes / live api nodes), never over --capacity; a node gives back only what exceeds
// it by a slack, so the fleet does not churn. Also publishes the sessions' states so that any
// node can answer a status request.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "service/options.hpp"
#include "store/registry.hpp"

namespace el::service {

// What ownership asks of the service: start and stop the sessions of mailboxes it gains and
// loses. Called on the ownership strand.
class OwnedSessions {
 public:
  virtual ~OwnedSessions() = default;
  // This node now serves the mailbox under `epoch` (newly claimed, or its settings changed);
  // the session starts after `delay` (spreading the logins of a large claim).
  virtual void serve(const store::MailboxRecord& record, std::uint64_t epoch,
                     std::chrono::milliseconds delay) = 0;
  // This node no longer serves it (lease lost, handed back, mailbox removed).
  virtual void drop(const std::string& id) = 0;
};

class Ownership : public std::enable_shared_from_this<Ownership> {
 public:
  Ownership(boost::asio::io_context& ioc, store::Registry& registry, OwnershipOptions opts,
            OwnedSessions& sessions);
  ~Ownership();

  void start();
  // Graceful hand-over: stops every session and gives up every lease at once, so the other
  // nodes take over at their next tick; removes this node's heartbeat. Completes when done.
  boost::asio::awaitable<void> release_all();
  // Tries to claim a mailbox just registered through this node, if it is under its share.
  boost::asio::awaitable<void> claim_new(std::string id);
  // The mailbox's settings changed through this node: if this node holds it, serve the new
  // settings now (otherwise its owner does at its next renewal).
  boost::asio::awaitable<void> refresh(std::string id);
  // The mailbox was removed through this node.
  void forget(const std::string& id);

  // Session states to publish (coalesced, written within ~200 ms). Thread-safe.
  void publish_state(store::StateUpdate update);

  std::size_t held() const;  // thread-safe
  bool holds_sessions() const { return opts_.role != "worker"; }
  const OwnershipOptions& options() const { return opts_; }

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> tick();
  boost::asio::awaitable<void> renew();
  boost::asio::awaitable<void> rebalance(std::size_t total, std::size_t live);
  boost::asio::awaitable<bool> try_claim(const std::string& id, std::chrono::milliseconds delay);
  boost::asio::awaitable<void> flush_states();
  store::NodeInfo info() const;
  std::size_t fair_share(std::size_t total, std::size_t live) const;
  std::chrono::milliseconds period() const;  // between ticks: a third of the lease

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  store::Registry& registry_;
  const OwnershipOptions opts_;
  OwnedSessions& sessions_;
  boost::asio::steady_timer timer_;
  std::string started_at_;
  bool stopped_ = false;                        // on the strand
  std::size_t last_total_ = 0, last_live_ = 1;  // from the last tick, for claim_new
  std::chrono::steady_clock::time_point last_renew_{};
  // On the strand. Not a thread_local: a coroutine resumes on any thread of the pool, and a
  // thread_local reached from its frame is then shared by two threads (seen: a corrupted
  // engine spinning forever in uniform_int_distribution).
  std::mt19937_64 rng_{std::random_device{}()};

  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> held_;  // id -> epoch served
  std::map<std::string, store::StateUpdate> pending_states_;
  bool flush_scheduled_ = false;
};

}  // namespace el::service
