// Ownership over a shared registry: fair share, rebalancing when a node joins, take-over after
// a node dies (lease expiry) or hands over (SIGTERM), capacity. Several nodes are simulated by
// several Ownership instances, each on its own io_context, sharing one MemoryRegistry.
#include "service/ownership.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <set>
#include <thread>

#include "store/memory_registry.hpp"

using namespace el;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

class Sessions : public service::OwnedSessions {
 public:
  void serve(const store::MailboxRecord& r, std::uint64_t epoch,
             std::chrono::milliseconds) override {
    std::lock_guard lk(mu_);
    served_[r.config.id] = epoch;
    ++serves_;
  }
  void drop(const std::string& id) override {
    std::lock_guard lk(mu_);
    served_.erase(id);
  }
  std::map<std::string, std::uint64_t> served() const {
    std::lock_guard lk(mu_);
    return served_;
  }
  int serves() const {
    std::lock_guard lk(mu_);
    return serves_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> served_;
  int serves_ = 0;
};

// One simulated node: its own io_context and thread.
struct Node {
  Node(store::Registry& reg, std::string id, std::size_t capacity = 10000,
       std::string role = "api") {
    service::OwnershipOptions o;
    o.node_id = std::move(id);
    o.role = std::move(role);
    o.capacity = capacity;
    o.lease = 300ms;
    own = std::make_shared<service::Ownership>(ioc, reg, o, sessions);
    own->start();
    thread = std::thread([this] { ioc.run(); });
  }
  ~Node() { kill(); }
  // Dies without a word: its leases expire.
  void kill() {
    ioc.stop();
    if (thread.joinable()) thread.join();
  }
  void hand_over() {
    auto f = net::co_spawn(ioc, own->release_all(), net::use_future);
    f.get();
  }
  net::io_context ioc;
  Sessions sessions;
  std::shared_ptr<service::Ownership> own;
  std::thread thread;
};

store::MailboxRecord mailbox(int i) {
  store::MailboxRecord r;
  r.config.id = "mb" + std::to_string(100 + i);
  r.config.email = r.config.id + "@example.test";
  r.created_at = "2026-01-01T00:00:00.000Z";
  return r;
}

void add(store::Registry& reg, int n) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(reg.add(mailbox(i)));
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return p();
}

}  // namespace

TEST(Ownership, SingleNodeServesEveryMailboxUnderItsClaimEpoch) {
  store::MemoryRegistry reg({});
  add(reg, 12);
  Node n(reg, "n1");
  ASSERT_TRUE(eventually([&] { return n.sessions.served().size() == 12; }));
  for (const auto& [id, epoch] : n.sessions.served()) {
    EXPECT_EQ(reg.epoch(id), epoch);
    EXPECT_EQ(reg.get(id)->owner, "n1");
  }
  EXPECT_EQ(n.own->held(), 12u);
}

TEST(Ownership, TwoNodesShareFairlyAndNeverServeTheSameMailbox) {
  store::MemoryRegistry reg({});
  add(reg, 40);
  Node a(reg, "a");
  ASSERT_TRUE(eventually([&] { return a.sessions.served().size() == 40; }));
  Node b(reg, "b");  // joins later: a hands back its excess, b claims it
  ASSERT_TRUE(eventually([&] {
    return a.sessions.served().size() + b.sessions.served().size() == 40 &&
           b.sessions.served().size() >= 18 && a.sessions.served().size() <= 22;
  }));
  for (const auto& [id, e] : a.sessions.served()) EXPECT_FALSE(b.sessions.served().contains(id));
  // Stable: no churn once balanced.
  const int serves = a.sessions.serves() + b.sessions.serves();
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(a.sessions.serves() + b.sessions.serves(), serves);
}

TEST(Ownership, DeadNodesMailboxesAreTakenOverAfterTheLease) {
  store::MemoryRegistry reg({});
  add(reg, 20);
  Node a(reg, "a");
  Node b(reg, "b");
  ASSERT_TRUE(eventually([&] {
    return a.sessions.served().size() + b.sessions.served().size() == 20 &&
           !b.sessions.served().empty() && !a.sessions.served().empty();
  }));
  const auto from_a = a.sessions.served();
  a.kill();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return b.sessions.served().size() == 20; }));
  // Lease 300 ms, ticks every 100 ms, heartbeats expire with the lease.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (const auto& [id, old_epoch] : from_a) {
    EXPECT_GT(b.sessions.served().at(id), old_epoch);  // the old owner is fenced
    EXPECT_FALSE(reg.save_checkpoint(id, old_epoch, {"INBOX", 1, 5}, 1));
  }
}

TEST(Ownership, HandOverIsImmediate) {
  store::MemoryRegistry reg({});
  add(reg, 10);
  service::OwnershipOptions slow;
  Node a(reg, "a");
  ASSERT_TRUE(eventually([&] { return a.sessions.served().size() == 10; }));
  Node b(reg, "b");
  ASSERT_TRUE(eventually([&] { return b.sessions.served().size() >= 4; }));
  a.hand_over();
  EXPECT_TRUE(a.sessions.served().empty());
  EXPECT_EQ(a.own->held(), 0u);
  ASSERT_TRUE(eventually([&] { return b.sessions.served().size() == 10; }, 1s));
  for (const auto& n : reg.nodes()) EXPECT_NE(n.id, "a");
}

TEST(Ownership, CapacityBoundsWhatANodeHolds) {
  store::MemoryRegistry reg({});
  add(reg, 10);
  Node a(reg, "a", 4);
  ASSERT_TRUE(eventually([&] { return a.sessions.served().size() == 4; }));
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(a.sessions.served().size(), 4u);
  EXPECT_EQ(reg.unowned(100).size(), 6u);
}

TEST(Ownership, WorkersHeartbeatButHoldNothing) {
  store::MemoryRegistry reg({});
  add(reg, 3);
  Node w(reg, "w", 10000, "worker");
  ASSERT_TRUE(eventually([&] { return reg.nodes().size() == 1; }));
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(w.sessions.served().empty());
  EXPECT_EQ(reg.nodes()[0].role, "worker");
  EXPECT_EQ(reg.unowned(10).size(), 3u);
}

TEST(Ownership, SettingsChangedElsewhereAreServedAtTheNextRenewal) {
  store::MemoryRegistry reg({});
  add(reg, 1);
  Node a(reg, "a");
  ASSERT_TRUE(eventually([&] { return a.sessions.served().size() == 1; }));
  auto cfg = mailbox(0).config;
  cfg.email = "changed@example.test";
  auto epoch = reg.replace_config(cfg);
  ASSERT_TRUE(epoch);
  EXPECT_TRUE(eventually([&] { return a.sessions.served().at("mb100") == *epoch; }));
  ASSERT_TRUE(reg.remove("mb100"));
  EXPECT_TRUE(eventually([&] { return a.sessions.served().empty(); }));
}
