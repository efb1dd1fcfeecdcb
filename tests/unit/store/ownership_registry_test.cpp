// The ownership half of the Registry port on the memory adapter: leases, epochs, fencing,
// published states and node heartbeats.
#include <gtest/gtest.h>

#include <thread>

#include "store/memory_registry.hpp"

using namespace el;
using namespace std::chrono_literals;
using store::MailboxRecord;
using store::MemoryRegistry;

namespace {

MailboxRecord mailbox(const std::string& id) {
  MailboxRecord r;
  r.config.id = id;
  r.config.email = id + "@example.test";
  r.config.imap.host = "127.0.0.1";
  r.config.imap.username = id;
  r.created_at = "2026-01-01T00:00:00.000Z";
  return r;
}

}  // namespace

TEST(Leases, ClaimBumpsTheEpochAndExcludesOtherNodes) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  auto e = reg.claim("a", "n1", 10s);
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, 2u);
  EXPECT_FALSE(reg.claim("a", "n2", 10s));
  EXPECT_EQ(reg.get("a")->owner, "n1");
  EXPECT_FALSE(reg.claim("missing", "n1", 10s));
  EXPECT_TRUE(reg.unowned(10).empty());
}

TEST(Leases, RenewReportsLossAndSettingChanges) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_TRUE(reg.add(mailbox("b")));
  ASSERT_TRUE(reg.claim("a", "n1", 10s));
  ASSERT_TRUE(reg.claim("b", "n2", 10s));
  auto r = reg.renew("n1", {"a", "b"}, 10s);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], std::optional<std::uint64_t>(2));
  EXPECT_FALSE(r[1]);  // n2's
  auto cfg = mailbox("a").config;
  cfg.email = "new@example.test";
  auto epoch = reg.replace_config(cfg);
  ASSERT_TRUE(epoch);
  EXPECT_EQ(reg.renew("n1", {"a"}, 10s)[0], epoch);  // settings moved the epoch
  ASSERT_TRUE(reg.remove("a"));
  EXPECT_FALSE(reg.renew("n1", {"a"}, 10s)[0]);
}

TEST(Leases, ExpiredLeaseIsTakenOverAndFencesTheOldOwner) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  const auto old_epoch = *reg.claim("a", "n1", 50ms);
  EXPECT_TRUE(reg.save_checkpoint("a", old_epoch, {"INBOX", 7, 10}, 1));
  std::this_thread::sleep_for(80ms);
  EXPECT_EQ(reg.unowned(10), std::vector<std::string>{"a"});
  EXPECT_EQ(reg.get("a")->owner, "");
  const auto new_epoch = reg.claim("a", "n2", 10s);
  ASSERT_TRUE(new_epoch);
  EXPECT_GT(*new_epoch, old_epoch);
  // The frozen old owner wakes up: its renewal and its writes are refused.
  EXPECT_FALSE(reg.renew("n1", {"a"}, 10s)[0]);
  EXPECT_FALSE(reg.save_checkpoint("a", old_epoch, {"INBOX", 7, 20}, 1));
  EXPECT_EQ(reg.get("a")->checkpoint("INBOX")->last_uid, 10u);
  EXPECT_EQ(reg.get("a")->delivered, 1u);
  EXPECT_EQ(reg.epoch("a"), new_epoch);
}

TEST(Leases, ReleaseOnlyGivesUpOwnLeases) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_TRUE(reg.add(mailbox("b")));
  ASSERT_TRUE(reg.claim("a", "n1", 10s));
  ASSERT_TRUE(reg.claim("b", "n2", 10s));
  reg.release("n1", {"a", "b"});
  EXPECT_EQ(reg.unowned(10), std::vector<std::string>{"a"});
  EXPECT_TRUE(reg.claim("a", "n2", 10s));
}

TEST(Checkpoints, NeverMoveBackWithinOneUidvalidity) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 10}, 0));
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 4}, 0));  // a late task: ignored
  EXPECT_EQ(reg.get("a")->checkpoint("INBOX")->last_uid, 10u);
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 8, 3}, 0));  // new uidvalidity: reset
  EXPECT_EQ(reg.get("a")->checkpoint("INBOX")->last_uid, 3u);
}

TEST(States, PublishedUnderTheCurrentEpochOnly) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  const auto e = *reg.claim("a", "n1", 10s);
  reg.publish_states({{"a", e, "idle", "", "2026-01-01T00:00:00.000Z"}});
  reg.publish_states({{"a", e - 1, "backoff", "stale", ""}});
  auto r = reg.get("a");
  EXPECT_EQ(r->state, "idle");
  EXPECT_EQ(r->connected_since, "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(r->last_error, "");
}

TEST(Nodes, HeartbeatsExpire) {
  MemoryRegistry reg({});
  store::NodeInfo b{"b", "api", 100, 3, "1.0", "2026-01-01T00:00:00.000Z", ""};
  store::NodeInfo a{"a", "worker", 0, 0, "1.0", "2026-01-01T00:00:00.000Z", ""};
  reg.heartbeat(b, 10s);
  reg.heartbeat(a, 50ms);
  auto nodes = reg.nodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].id, "a");
  EXPECT_EQ(nodes[1].held, 3u);
  EXPECT_FALSE(nodes[1].seen_at.empty());
  std::this_thread::sleep_for(80ms);
  nodes = reg.nodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].id, "b");
  reg.remove_node("b");
  EXPECT_TRUE(reg.nodes().empty());
}
