// RedisRegistry against a real redis-server started on a free loopback port (one per process,
// plus private ones for the AUTH, outage and hang tests).
#include "store/redis_registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <iostream>
#include <thread>

#include "redis_server.hpp"
#include "store/call.hpp"
#include "store/redis_client.hpp"

using namespace el;
using namespace std::chrono_literals;
using store::MailboxRecord;
using store::RedisRegistry;
using store::RedisRegistryOptions;
using test::RedisServer;

namespace {

const char* kKeyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kKeyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

RedisServer* g_server = nullptr;  // shared by the tests; each uses its own key prefix

class RedisEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!test::have_redis_server()) FAIL() << test::missing_redis_message();
    g_server = new RedisServer();
    g_server->start();
  }
  void TearDown() override {
    delete g_server;
    g_server = nullptr;
  }
};

[[maybe_unused]] const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new RedisEnvironment);

std::shared_ptr<const core::SecretBox> box(const char* key, const char* old_key = "") {
  return std::make_shared<const core::SecretBox>(core::SecretBox::from_base64(key, old_key));
}

std::string test_prefix() {
  const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("t:") + t->test_suite_name() + "." + t->name() + ":";
}

RedisRegistryOptions options(std::shared_ptr<const core::SecretBox> secret_box = nullptr,
                             std::string url = {}) {
  RedisRegistryOptions o;
  o.url = url.empty() ? g_server->url() : std::move(url);
  o.prefix = test_prefix();
  o.secret_box = std::move(secret_box);
  o.connect_timeout = 1000ms;
  o.command_timeout = 1000ms;
  return o;
}

MailboxRecord record(const std::string& id) {
  MailboxRecord r;
  r.config.id = id;
  r.config.email = id + "@example.test";
  r.config.imap.host = "127.0.0.1";
  r.config.imap.port = 143;
  r.config.imap.security = core::Security::starttls;
  r.config.imap.username = id;
  r.config.imap.password = core::Secret("pw-" + id);
  r.config.folders = {"INBOX", "Archive"};
  r.config.webhook = core::WebhookTarget{"http://127.0.0.1:9/hook", core::Secret("s3-" + id)};
  r.created_at = "2026-01-01T00:00:00.000Z";
  return r;
}

std::string zero_pad(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "m%05d", i);
  return buf;
}

template <class F>
std::chrono::milliseconds elapsed(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0);
}

}  // namespace

// --- URL ---------------------------------------------------------------------------------------

TEST(RedisUrl, ParsesEveryForm) {
  auto e = store::redis::parse_url("redis://10.0.0.5:6380/3");
  EXPECT_EQ(e.host, "10.0.0.5");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.db, 3);
  EXPECT_TRUE(e.user.empty());
  EXPECT_TRUE(e.password.empty());
  EXPECT_EQ(e.describe(), "10.0.0.5:6380/3");

  e = store::redis::parse_url("redis://redis.internal");
  EXPECT_EQ(e.host, "redis.internal");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.db, 0);

  e = store::redis::parse_url("redis://:p%40ss@h:1/2");
  EXPECT_TRUE(e.user.empty());
  EXPECT_EQ(e.password.reveal(), "p@ss");
  EXPECT_EQ(e.db, 2);
  EXPECT_EQ(e.describe(), "h:1/2");  // never the credentials

  e = store::redis::parse_url("redis://alice:secret@h:7/");
  EXPECT_EQ(e.user, "alice");
  EXPECT_EQ(e.password.reveal(), "secret");
  EXPECT_EQ(e.db, 0);

  e = store::redis::parse_url("redis://:p%20w%40%3A%2Fx@h:1/1");  // as harness/redis.py writes
  EXPECT_EQ(e.password.reveal(), "p w@:/x");

  e = store::redis::parse_url("redis://[::1]:6390/1");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.describe(), "[::1]:6390/1");
}

TEST(RedisUrl, RejectsMalformedWithoutEchoingThePassword) {
  for (const char* url :
       {"http://:hunter2@h:1/0", "rediss://:hunter2@h:1/0", "redis://:hunter2@h:1/x",
        "redis://:hunter2@h:1/-1", "redis://:hunter2@:1/0", "redis://:hunter2@h:1/0?x=1",
        "redis://:hunter2@h:99999/0", "not a url hunter2"}) {
    try {
      store::redis::parse_url(url);
      ADD_FAILURE() << "accepted " << url;
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("redis://"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(RedisRegistry(options(nullptr, "redis://h:1/zz")), std::invalid_argument);
}

// --- mailboxes ---------------------------------------------------------------------------------

TEST(RedisRegistry, ConstructsWhileRedisIsDown) {
  auto o = options(nullptr, "redis://127.0.0.1:" + std::to_string(test::free_port()) + "/0");
  RedisRegistry reg(o);  // no I/O yet
  EXPECT_EQ(reg.kind(), "redis");
  EXPECT_FALSE(reg.healthy());
  EXPECT_FALSE(reg.ping());
  EXPECT_THROW(reg.get("a"), store::Unavailable);
  EXPECT_THROW(reg.add(record("a")), store::Unavailable);
  EXPECT_FALSE(reg.healthy());
}

TEST(RedisRegistry, AddGetRemoveRoundTripWithEveryField) {
  RedisRegistry reg(options(box(kKeyA)));
  EXPECT_TRUE(reg.ping());
  EXPECT_TRUE(reg.healthy());
  auto r = record("a");
  r.config.imap.tls.ca_file = "/etc/ca.pem";
  r.config.imap.tls.insecure = true;
  r.config.since = *core::parse_rfc3339("2025-12-01T10:00:00.000Z");
  r.checkpoints = {{"INBOX", 7, 10}, {"Archive", 9, 3}};
  r.delivered = 5;
  r.epoch = 1;
  EXPECT_TRUE(reg.add(r));
  EXPECT_FALSE(reg.add(record("a"))) << "the id is taken";
  EXPECT_EQ(reg.size(), 1u);

  auto got = reg.get("a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->config.id, "a");
  EXPECT_EQ(got->config.email, "a@example.test");
  EXPECT_EQ(got->config.imap.host, "127.0.0.1");
  EXPECT_EQ(got->config.imap.port, 143);
  EXPECT_EQ(got->config.imap.security, core::Security::starttls);
  EXPECT_EQ(got->config.imap.username, "a");
  EXPECT_EQ(got->config.imap.password.reveal(), "pw-a");
  EXPECT_EQ(got->config.imap.tls.ca_file, "/etc/ca.pem");
  EXPECT_TRUE(got->config.imap.tls.insecure);
  EXPECT_EQ(got->config.folders, (std::vector<std::string>{"INBOX", "Archive"}));
  ASSERT_TRUE(got->config.since);
  EXPECT_EQ(core::format_rfc3339(*got->config.since), "2025-12-01T10:00:00.000Z");
  ASSERT_TRUE(got->config.webhook);
  EXPECT_EQ(got->config.webhook->url, "http://127.0.0.1:9/hook");
  EXPECT_EQ(got->config.webhook->secret.reveal(), "s3-a");
  ASSERT_EQ(got->checkpoints.size(), 2u);
  ASSERT_NE(got->checkpoint("INBOX"), nullptr);
  EXPECT_EQ(got->checkpoint("INBOX")->uidvalidity, 7u);
  EXPECT_EQ(got->checkpoint("INBOX")->last_uid, 10u);
  EXPECT_EQ(got->checkpoint("Archive")->last_uid, 3u);
  EXPECT_EQ(got->delivered, 5u);
  EXPECT_EQ(got->epoch, 1u);
  EXPECT_EQ(got->created_at, "2026-01-01T00:00:00.000Z");
  EXPECT_TRUE(got->owner.empty());
  EXPECT_TRUE(got->state.empty());

  // Owner and published state come back too.
  EXPECT_EQ(reg.claim("a", "node-1", 10s), 2u);
  reg.publish_states({{"a", 2, "idle", "", "2026-01-02T00:00:00.000Z"}});
  got = reg.get("a");
  EXPECT_EQ(got->owner, "node-1");
  EXPECT_EQ(got->state, "idle");
  EXPECT_EQ(got->connected_since, "2026-01-02T00:00:00.000Z");
  EXPECT_EQ(got->epoch, 2u);
  EXPECT_EQ(reg.epoch("a"), 2u);

  // A config without optional parts round-trips too.
  auto plain = record("b");
  plain.config.webhook.reset();
  plain.config.imap.security = core::Security::tls;
  ASSERT_TRUE(reg.add(plain));
  got = reg.get("b");
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->config.webhook);
  EXPECT_FALSE(got->config.since);
  EXPECT_FALSE(got->config.imap.tls.insecure);
  EXPECT_TRUE(got->config.imap.tls.ca_file.empty());

  EXPECT_TRUE(reg.remove("a"));
  EXPECT_FALSE(reg.remove("a"));
  EXPECT_FALSE(reg.get("a"));
  EXPECT_FALSE(reg.epoch("a"));
  EXPECT_EQ(reg.size(), 1u);
  auto raw = g_server->raw();
  EXPECT_EQ(raw.integer({"EXISTS", test_prefix() + "lease:a", test_prefix() + "mbx:a"}), 0)
      << "the lease goes with the mailbox";
  EXPECT_EQ(raw.integer({"ZSCORE", test_prefix() + "mailboxes", "a"}), 0);
}

TEST(RedisRegistry, BinarySafeIds) {
  RedisRegistry reg(options());
  const std::string id("sp ace\r\n\0x", 10);
  auto r = record(id);
  ASSERT_TRUE(reg.add(r));
  auto got = reg.get(id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->config.id, id);
  EXPECT_EQ(reg.list("", 10).at(0).config.id, id);
  EXPECT_TRUE(reg.claim(id, "n1", 10s));
  EXPECT_TRUE(reg.renew("n1", {id}, 10s).at(0));
  EXPECT_TRUE(reg.remove(id));
}

TEST(RedisRegistry, ListPagesInIdOrder) {
  RedisRegistry reg(options());
  for (auto id : {"c", "a", "e", "b", "d"}) ASSERT_TRUE(reg.add(record(id)));
  reg.claim("c", "node-9", 10s);
  auto p1 = reg.list("", 2);
  ASSERT_EQ(p1.size(), 2u);
  EXPECT_EQ(p1[0].config.id, "a");
  EXPECT_EQ(p1[1].config.id, "b");
  auto p2 = reg.list("b", 10);
  ASSERT_EQ(p2.size(), 3u);
  EXPECT_EQ(p2[0].config.id, "c");
  EXPECT_EQ(p2[0].owner, "node-9");
  EXPECT_EQ(p2[0].epoch, 2u);
  EXPECT_EQ(p2[0].config.imap.password.reveal(), "pw-c");
  EXPECT_EQ(p2[2].config.id, "e");
  EXPECT_TRUE(reg.list("e", 10).empty());
  EXPECT_TRUE(reg.list("", 0).empty());
  EXPECT_EQ(reg.list("bb", 1).at(0).config.id, "c") << "after an id that does not exist";
  EXPECT_EQ(reg.size(), 5u);
}

TEST(RedisRegistry, ListCrossesInternalPages) {
  RedisRegistry reg(options());
  const int n = 1203;  // over two of the adapter's 500-id pages
  for (int i = 0; i < n; ++i) ASSERT_TRUE(reg.add(record(zero_pad(i))));
  auto all = reg.list("", 100000);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(all[i].config.id, zero_pad(i));
  auto page = reg.list(zero_pad(499), 600);
  ASSERT_EQ(page.size(), 600u);
  EXPECT_EQ(page.front().config.id, zero_pad(500));
  EXPECT_EQ(page.back().config.id, zero_pad(1099));
  EXPECT_EQ(reg.size(), static_cast<std::size_t>(n));
}

TEST(RedisRegistry, ReplaceConfigKeepsCheckpointsOfWatchedFoldersAndBumpsEpoch) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 10}, 1));
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"Archive", 8, 4}, 1));
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 11}, 1));
  auto cfg = record("a").config;
  cfg.folders = {"INBOX", "Sent"};
  cfg.imap.password = core::Secret("new-password");
  auto epoch = reg.replace_config(cfg);
  ASSERT_TRUE(epoch);
  EXPECT_EQ(*epoch, 2u);
  // A session of the old settings can no longer move progress.
  EXPECT_FALSE(reg.save_checkpoint("a", 1, {"INBOX", 7, 99}, 1));
  auto r = reg.get("a");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->config.folders, (std::vector<std::string>{"INBOX", "Sent"}));
  EXPECT_EQ(r->config.imap.password.reveal(), "new-password");
  ASSERT_NE(r->checkpoint("INBOX"), nullptr);
  EXPECT_EQ(r->checkpoint("INBOX")->last_uid, 11u);  // same account, folder still watched
  EXPECT_EQ(r->checkpoint("Archive"), nullptr);      // no longer watched
  EXPECT_EQ(r->delivered, 3u);
  EXPECT_EQ(r->epoch, 2u);
  EXPECT_EQ(reg.replace_config(cfg), 3u);
  EXPECT_FALSE(reg.replace_config(record("zzz").config));
  EXPECT_FALSE(reg.get("zzz")) << "replace_config must not create";
}

TEST(RedisRegistry, NewAccountDropsCheckpoints) {
  RedisRegistry reg(options());
  using Change = void (*)(core::MailboxConfig&);
  const Change changes[] = {
      [](core::MailboxConfig& c) { c.imap.username = "someone-else"; },
      [](core::MailboxConfig& c) { c.imap.host = "imap.other.test"; },
      [](core::MailboxConfig& c) { c.imap.port = 993; },
  };
  int n = 0;
  for (auto change : changes) {
    const std::string id = "a" + std::to_string(n++);
    ASSERT_TRUE(reg.add(record(id)));
    ASSERT_TRUE(reg.save_checkpoint(id, 1, {"INBOX", 7, 10}, 0));
    auto cfg = record(id).config;
    change(cfg);
    EXPECT_EQ(reg.replace_config(cfg), 2u);
    auto r = reg.get(id);
    EXPECT_TRUE(r->checkpoints.empty()) << id;
  }
  // Security mode or webhook changes keep them: same account.
  ASSERT_TRUE(reg.add(record("k")));
  ASSERT_TRUE(reg.save_checkpoint("k", 1, {"INBOX", 7, 10}, 0));
  auto cfg = record("k").config;
  cfg.imap.security = core::Security::tls;
  cfg.webhook.reset();
  reg.replace_config(cfg);
  EXPECT_NE(reg.get("k")->checkpoint("INBOX"), nullptr);
}

TEST(RedisRegistry, CheckpointsAreFencedByEpochAndNeverMoveBack) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  EXPECT_FALSE(reg.save_checkpoint("missing", 1, {"INBOX", 7, 1}, 1));
  EXPECT_FALSE(reg.save_checkpoint("a", 2, {"INBOX", 7, 1}, 1)) << "future epoch";
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 10}, 2));
  // Within one uidvalidity a lower last_uid (a late task) is accepted and ignored.
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 8}, 1));
  EXPECT_EQ(reg.get("a")->checkpoint("INBOX")->last_uid, 10u);
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 10}, 0));
  // A new uidvalidity is a new baseline, lower uids included.
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 9, 2}, 0));
  auto r = reg.get("a");
  EXPECT_EQ(r->checkpoint("INBOX")->uidvalidity, 9u);
  EXPECT_EQ(r->checkpoint("INBOX")->last_uid, 2u);
  // Delivered counts every accepted event, those of the late task too (as MemoryRegistry).
  EXPECT_EQ(r->delivered, 3u);
  // Claims move the epoch: the old one is refused.
  EXPECT_EQ(reg.claim("a", "n1", 10s), 2u);
  EXPECT_FALSE(reg.save_checkpoint("a", 1, {"INBOX", 9, 50}, 1));
  EXPECT_TRUE(reg.save_checkpoint("a", 2, {"INBOX", 9, 50}, 1));
  EXPECT_EQ(reg.get("a")->checkpoint("INBOX")->last_uid, 50u);
  // uint32 extremes survive the trip through Lua.
  EXPECT_TRUE(reg.save_checkpoint("a", 2, {"Big", 4294967295u, 4294967294u}, 0));
  EXPECT_TRUE(reg.save_checkpoint("a", 2, {"Big", 4294967295u, 5}, 0));
  EXPECT_EQ(reg.get("a")->checkpoint("Big")->last_uid, 4294967294u);
}

TEST(RedisRegistry, LargeEpochsKeepTheirPrecision) {
  RedisRegistry reg(options());
  auto r = record("a");
  r.epoch = (1ull << 60) + 1;  // beyond a double's 53 bits
  ASSERT_TRUE(reg.add(r));
  EXPECT_EQ(reg.epoch("a"), r.epoch);
  EXPECT_TRUE(reg.save_checkpoint("a", r.epoch, {"INBOX", 1, 1}, 0));
  EXPECT_FALSE(reg.save_checkpoint("a", r.epoch - 1, {"INBOX", 1, 2}, 0));
  EXPECT_EQ(reg.claim("a", "n", 10s), r.epoch + 1);
  EXPECT_EQ(reg.renew("n", {"a"}, 10s).at(0), r.epoch + 1);
}

// --- ownership ---------------------------------------------------------------------------------

TEST(RedisRegistry, ClaimRenewReleaseBetweenTwoNodes) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  EXPECT_FALSE(reg.claim("missing", "n1", 10s));
  EXPECT_EQ(g_server->raw().integer({"EXISTS", test_prefix() + "lease:missing"}), 0);

  EXPECT_EQ(reg.claim("a", "n1", 10s), 2u);
  EXPECT_FALSE(reg.claim("a", "n2", 10s)) << "held by n1";
  EXPECT_FALSE(reg.claim("a", "n1", 10s)) << "a claim is for unheld mailboxes only";
  EXPECT_EQ(reg.epoch("a"), 2u);
  EXPECT_EQ(reg.renew("n1", {"a"}, 10s), (std::vector<std::optional<std::uint64_t>>{2u}));
  EXPECT_EQ(reg.renew("n2", {"a"}, 10s), (std::vector<std::optional<std::uint64_t>>{std::nullopt}));
  EXPECT_TRUE(reg.renew("n1", {}, 10s).empty());

  // A settings change shows up in the renewal's epoch.
  EXPECT_EQ(reg.replace_config(record("a").config), 3u);
  EXPECT_EQ(reg.renew("n1", {"a"}, 10s).at(0), 3u);

  reg.release("n2", {"a"});  // not the holder: no effect
  EXPECT_EQ(reg.get("a")->owner, "n1");
  reg.release("n1", {"a", "missing"});
  EXPECT_TRUE(reg.get("a")->owner.empty());
  EXPECT_FALSE(reg.renew("n1", {"a"}, 10s).at(0));
  EXPECT_EQ(reg.claim("a", "n2", 10s), 4u);
  EXPECT_EQ(reg.get("a")->owner, "n2");
}

TEST(RedisRegistry, ExpiredLeaseGoesToAnotherNode) {
  // Wide margins: the tests may share two cores with a parallel build.
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  EXPECT_EQ(reg.claim("a", "n1", 1000ms), 2u);
  EXPECT_FALSE(reg.claim("a", "n2", 1000ms));
  // A renewal extends: 300 + 500 ms after the claim the lease renewed at 300 still holds.
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(reg.renew("n1", {"a"}, 1000ms).at(0), 2u);
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(reg.claim("a", "n2", 1000ms));
  EXPECT_TRUE(reg.unowned(10).empty());
  std::this_thread::sleep_for(1200ms);  // n1 paused past its lease
  EXPECT_EQ(reg.unowned(10), (std::vector<std::string>{"a"}));
  EXPECT_EQ(reg.claim("a", "n2", 10s), 3u);
  EXPECT_FALSE(reg.renew("n1", {"a"}, 10s).at(0)) << "the old owner lost it";
  EXPECT_FALSE(reg.save_checkpoint("a", 2, {"INBOX", 1, 5}, 1)) << "the old owner is fenced";
  auto r = reg.get("a");
  EXPECT_EQ(r->owner, "n2");
  EXPECT_EQ(r->epoch, 3u);
}

TEST(RedisRegistry, RenewOfRemovedMailboxDropsTheLease) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  ASSERT_TRUE(reg.add(record("b")));
  ASSERT_TRUE(reg.claim("a", "n1", 10s));
  ASSERT_TRUE(reg.claim("b", "n1", 10s));
  auto raw = g_server->raw();
  // The mailbox vanishes behind the lease's back (remove() deletes both; this is belt and braces).
  raw.cmd({"DEL", test_prefix() + "mbx:a"});
  auto got = reg.renew("n1", {"a", "b", "never-existed"}, 10s);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_FALSE(got[0]);
  EXPECT_EQ(got[1], 2u);
  EXPECT_FALSE(got[2]);
  EXPECT_EQ(raw.integer({"EXISTS", test_prefix() + "lease:a"}), 0);
  EXPECT_GT(raw.integer({"PTTL", test_prefix() + "lease:b"}), 5000);
}

TEST(RedisRegistry, ConcurrentClaimsHaveOneWinner) {
  RedisRegistry reg(options());
  for (int m = 0; m < 20; ++m) ASSERT_TRUE(reg.add(record("m" + std::to_string(m))));
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int m = 0; m < 20; ++m)
        if (reg.claim("m" + std::to_string(m), "node-" + std::to_string(t), 10s)) ++wins;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wins.load(), 20);
  for (int m = 0; m < 20; ++m) EXPECT_EQ(reg.epoch("m" + std::to_string(m)), 2u);
}

TEST(RedisRegistry, ConcurrentCheckpointsCountEveryDelivery) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (std::uint32_t i = 1; i <= 50; ++i)
        ASSERT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, i * 8 + t}, 1));
    });
  for (auto& th : threads) th.join();
  auto r = reg.get("a");
  EXPECT_EQ(r->delivered, 400u);
  EXPECT_EQ(r->checkpoint("INBOX")->last_uid, 50u * 8 + 7) << "the highest wins";
}

TEST(RedisRegistry, Unowned) {
  RedisRegistry reg(options());
  EXPECT_TRUE(reg.unowned(10).empty());
  for (auto id : {"a", "b", "c", "d", "e"}) ASSERT_TRUE(reg.add(record(id)));
  reg.claim("b", "n1", 10s);
  reg.claim("d", "n2", 10s);
  EXPECT_EQ(reg.unowned(10), (std::vector<std::string>{"a", "c", "e"}));
  EXPECT_EQ(reg.unowned(2), (std::vector<std::string>{"a", "c"}));
  EXPECT_TRUE(reg.unowned(0).empty());
}

TEST(RedisRegistry, PipelinedRenewOfThousandsOfIds) {
  RedisRegistry reg(options());
  const int n = 3000;
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    ids.push_back(zero_pad(i));
    ASSERT_TRUE(reg.add(record(ids.back())));
  }
  for (int i = 0; i < n; ++i) ASSERT_EQ(reg.claim(ids[i], "n1", 10s), 2u);
  EXPECT_TRUE(reg.unowned(100).empty()) << "every page of 1000 is held";

  auto ids_plus = ids;
  ids_plus.push_back("not-there");
  std::vector<std::optional<std::uint64_t>> got;
  const auto took = elapsed([&] { got = reg.renew("n1", ids_plus, 20s); });
  ASSERT_EQ(got.size(), ids_plus.size());
  for (int i = 0; i < n; ++i) ASSERT_EQ(got[i], 2u) << ids[i];
  EXPECT_FALSE(got.back());
  EXPECT_GT(g_server->raw().integer({"PTTL", test_prefix() + "lease:" + ids[2999]}), 15000);
  std::cout << "renew of " << ids_plus.size() << " ids: " << took.count() << " ms\n";

  // Another node renews nothing and changes nothing.
  for (const auto& e : reg.renew("n2", ids, 10s)) ASSERT_FALSE(e);

  // Release a third of them in one go: exactly those become unowned, in id order.
  std::vector<std::string> give;
  for (int i = 0; i < n; i += 3) give.push_back(ids[i]);
  reg.release("n1", give);
  EXPECT_EQ(reg.unowned(100000), give);
  EXPECT_EQ(reg.unowned(5), std::vector<std::string>(give.begin(), give.begin() + 5));
}

TEST(RedisRegistry, PublishStatesIgnoresStaleEpochs) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  ASSERT_TRUE(reg.add(record("b")));
  reg.publish_states({{"a", 1, "backoff", "connection refused", ""},
                      {"b", 7, "idle", "", "2026-01-01T00:00:00.000Z"},
                      {"missing", 1, "idle", "", ""}});
  auto a = reg.get("a");
  EXPECT_EQ(a->state, "backoff");
  EXPECT_EQ(a->last_error, "connection refused");
  EXPECT_TRUE(a->connected_since.empty());
  EXPECT_TRUE(reg.get("b")->state.empty()) << "stale epoch ignored";
  EXPECT_FALSE(reg.get("missing")) << "publishing must not create a mailbox";
  EXPECT_EQ(g_server->raw().integer({"EXISTS", test_prefix() + "mbx:missing"}), 0);

  reg.publish_states({{"a", 1, "idle", "", "2026-01-03T00:00:00.000Z"}});
  a = reg.get("a");
  EXPECT_EQ(a->state, "idle");
  EXPECT_TRUE(a->last_error.empty()) << "cleared";
  EXPECT_EQ(a->connected_since, "2026-01-03T00:00:00.000Z");
  reg.publish_states({});

  std::vector<store::StateUpdate> many;
  for (int i = 0; i < 1200; ++i) many.push_back({"a", 1, "s" + std::to_string(i), "", ""});
  reg.publish_states(many);
  EXPECT_EQ(reg.get("a")->state, "s1199") << "applied in order";
}

// --- nodes -------------------------------------------------------------------------------------

TEST(RedisRegistry, HeartbeatsExpireAndNodesAreOrdered) {
  RedisRegistry reg(options());
  EXPECT_TRUE(reg.nodes().empty());
  store::NodeInfo n;
  n.role = "all";
  n.capacity = 500;
  n.held = 12;
  n.version = "0.1.0";
  n.started_at = "2026-01-01T00:00:00.000Z";
  for (auto id : {"node-2", "node-1", "node-3"}) {
    n.id = id;
    reg.heartbeat(n, id == std::string("node-3") ? 1000ms : 10s);
  }
  auto nodes = reg.nodes();
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[0].id, "node-1");
  EXPECT_EQ(nodes[1].id, "node-2");
  EXPECT_EQ(nodes[2].id, "node-3");
  EXPECT_EQ(nodes[0].role, "all");
  EXPECT_EQ(nodes[0].capacity, 500u);
  EXPECT_EQ(nodes[0].held, 12u);
  EXPECT_EQ(nodes[0].version, "0.1.0");
  EXPECT_EQ(nodes[0].started_at, "2026-01-01T00:00:00.000Z");
  EXPECT_TRUE(core::parse_rfc3339(nodes[0].seen_at)) << nodes[0].seen_at;

  std::this_thread::sleep_for(1300ms);
  nodes = reg.nodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[1].id, "node-2");
  auto raw = g_server->raw();
  EXPECT_EQ(raw.integer({"SISMEMBER", test_prefix() + "nodes", "node-3"}), 0) << "pruned";

  // A heartbeat brings it back.
  n.id = "node-3";
  reg.heartbeat(n, 10s);
  EXPECT_EQ(reg.nodes().size(), 3u);
  reg.remove_node("node-1");
  nodes = reg.nodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].id, "node-2");
  EXPECT_EQ(raw.integer({"EXISTS", test_prefix() + "node:node-1"}), 0);
}

// --- credentials -------------------------------------------------------------------------------

TEST(RedisRegistry, CredentialsAreCiphertextInRedis) {
  {
    RedisRegistry reg(options(box(kKeyA)));
    ASSERT_TRUE(reg.add(record("a")));
  }
  auto raw = g_server->raw();
  const std::string cfg = raw.str({"HGET", test_prefix() + "mbx:a", "cfg"});
  ASSERT_FALSE(cfg.empty());
  EXPECT_EQ(cfg.find("pw-a"), std::string::npos) << cfg;
  EXPECT_EQ(cfg.find("s3-a"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("enc:v1:"), std::string::npos) << cfg;
  EXPECT_EQ(cfg.find(' '), std::string::npos) << "compact JSON: " << cfg;

  RedisRegistry no_key(options());
  try {
    no_key.get("a");
    ADD_FAILURE() << "read sealed credentials without a key";
  } catch (const store::Unavailable&) {
    ADD_FAILURE() << "a missing key is not an outage";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("EL_SECRET_KEY"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("encrypted"), std::string::npos) << e.what();
  }
  EXPECT_THROW(no_key.list("", 10), std::runtime_error);
  EXPECT_EQ(no_key.size(), 1u) << "what needs no credentials still works";
  EXPECT_EQ(no_key.epoch("a"), 1u);

  RedisRegistry wrong_key(options(box(kKeyB)));
  try {
    wrong_key.get("a");
    ADD_FAILURE() << "opened with the wrong key";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot decrypt"), std::string::npos) << e.what();
  }
}

TEST(RedisRegistry, WithoutSecretBoxCredentialsAreStoredInClear) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  const std::string cfg = g_server->raw().str({"HGET", test_prefix() + "mbx:a", "cfg"});
  EXPECT_NE(cfg.find("pw-a"), std::string::npos);
  EXPECT_EQ(cfg.find("enc:v1:"), std::string::npos);
}

TEST(RedisRegistry, KeyRotationReSealsOnTheNextSettingsWrite) {
  {
    RedisRegistry old_reg(options(box(kKeyA)));
    ASSERT_TRUE(old_reg.add(record("a")));
  }
  RedisRegistry rotating(options(box(kKeyB, kKeyA)));
  auto r = rotating.get("a");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->config.imap.password.reveal(), "pw-a");
  RedisRegistry new_only(options(box(kKeyB)));
  EXPECT_THROW(new_only.get("a"), std::runtime_error) << "still sealed with the old key";
  ASSERT_EQ(rotating.replace_config(r->config), 2u);
  auto again = new_only.get("a");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->config.imap.password.reveal(), "pw-a");
  EXPECT_EQ(again->config.webhook->secret.reveal(), "s3-a");
}

// --- connection --------------------------------------------------------------------------------

TEST(RedisRegistry, AuthWithPassword) {
  RedisServer server({"--requirepass", "s3cret-pw"}, "s3cret-pw");
  server.start();
  {
    RedisRegistry reg(options(nullptr, server.url(0, ":wrong-pw")));
    EXPECT_FALSE(reg.ping());
    try {
      reg.add(record("a"));
      ADD_FAILURE() << "a wrong password was accepted";
    } catch (const store::Unavailable& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find("wrong-pw"), std::string::npos) << msg;
      EXPECT_NE(msg.find("authentication"), std::string::npos) << msg;
      EXPECT_NE(msg.find("127.0.0.1:" + std::to_string(server.port()) + "/0"), std::string::npos)
          << msg;
    }
    EXPECT_FALSE(reg.healthy());
  }
  {
    RedisRegistry reg(options(nullptr, server.url(0)));  // no password at all
    EXPECT_FALSE(reg.ping());
    EXPECT_THROW(reg.size(), store::Unavailable);
  }
  RedisRegistry reg(options(nullptr, server.url(0, ":s3cret-pw")));
  EXPECT_TRUE(reg.ping());
  EXPECT_TRUE(reg.add(record("a")));
  EXPECT_EQ(reg.get("a")->config.imap.password.reveal(), "pw-a");
  EXPECT_TRUE(reg.healthy());
}

TEST(RedisRegistry, AuthWithAclUserAndLogicalDatabase) {
  RedisServer server(
      {"--user", "default", "off", "--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"});
  server.start();
  {
    RedisRegistry reg(options(nullptr, server.url(3, "alice:nope")));
    EXPECT_FALSE(reg.ping());
  }
  RedisRegistry reg(options(nullptr, server.url(3, "alice:alice-pw")));
  ASSERT_TRUE(reg.ping());
  ASSERT_TRUE(reg.add(record("a")));
  test::RawRedis raw3(server.port(), 0);
  raw3.cmd({"AUTH", "alice", "alice-pw"});
  EXPECT_EQ(raw3.integer({"EXISTS", test_prefix() + "mbx:a"}), 0) << "not in db 0";
  raw3.cmd({"SELECT", "3"});
  EXPECT_EQ(raw3.integer({"EXISTS", test_prefix() + "mbx:a"}), 1) << "in db 3";
}

TEST(RedisRegistry, RedisDownThenBack) {
  RedisServer server;
  server.start();
  auto o = options(nullptr, server.url(0));
  o.connect_timeout = 500ms;
  o.command_timeout = 500ms;
  RedisRegistry reg(o);
  ASSERT_TRUE(reg.add(record("a")));
  ASSERT_TRUE(reg.get("a"));  // a second pooled connection may be open now
  EXPECT_TRUE(reg.healthy());

  server.kill();
  for (int i = 0; i < 3; ++i) {
    const auto took = elapsed([&] { EXPECT_THROW(reg.get("a"), store::Unavailable); });
    EXPECT_LT(took, 1500ms);
  }
  EXPECT_FALSE(reg.healthy());
  EXPECT_FALSE(reg.ping());
  try {
    reg.size();
  } catch (const store::Unavailable& e) {
    EXPECT_NE(std::string(e.what()).find(reg.where()), std::string::npos) << e.what();
  }

  server.restart();  // same port, empty (no persistence in this test)
  EXPECT_TRUE(reg.add(record("a"))) << "the first call after the restart works";
  EXPECT_TRUE(reg.healthy());
  EXPECT_TRUE(reg.get("a"));
  EXPECT_EQ(reg.claim("a", "n1", 10s), 2u) << "scripts are loaded again after NOSCRIPT";
}

TEST(RedisRegistry, HungRedisTimesOut) {
  RedisServer server;
  server.start();
  auto o = options(nullptr, server.url(0));
  o.connect_timeout = 300ms;
  o.command_timeout = 300ms;
  RedisRegistry reg(o);
  ASSERT_TRUE(reg.add(record("a")));
  server.pause();  // the kernel still accepts connections; nobody answers
  const auto took = elapsed([&] { EXPECT_THROW(reg.get("a"), store::Unavailable); });
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2500ms);
  EXPECT_FALSE(reg.healthy());
  try {
    reg.size();
    ADD_FAILURE() << "answered while paused";
  } catch (const store::Unavailable& e) {
    EXPECT_NE(std::string(e.what()).find("300 ms"), std::string::npos) << e.what();
  }
  server.resume();
  EXPECT_TRUE(reg.get("a"));
  EXPECT_TRUE(reg.healthy());
}

TEST(RedisRegistry, ScriptCacheFlushFallsBackToEval) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(record("a")));
  ASSERT_TRUE(reg.add(record("b")));
  g_server->raw().cmd({"SCRIPT", "FLUSH"});
  EXPECT_EQ(reg.claim("a", "n1", 10s), 2u);
  g_server->raw().cmd({"SCRIPT", "FLUSH"});
  EXPECT_TRUE(reg.claim("b", "n1", 10s));
  g_server->raw().cmd({"SCRIPT", "FLUSH"});
  auto got = reg.renew("n1", {"a", "b"}, 10s);
  EXPECT_EQ(got, (std::vector<std::optional<std::uint64_t>>{2u, 2u}));
}

TEST(RedisRegistry, CallsRunOnTheBlockingPool) {
  RedisRegistry reg(options());
  ASSERT_NE(reg.blocking_pool(), nullptr);
  ASSERT_TRUE(reg.add(record("a")));
  boost::asio::io_context io;
  std::optional<std::size_t> size;
  std::thread::id ran_on;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        size = co_await store::call(reg, [&] {
          ran_on = std::this_thread::get_id();
          return reg.size();
        });
      },
      boost::asio::detached);
  io.run();
  EXPECT_EQ(size, 1u);
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

// Budget: 2 KiB of Redis memory per mailbox (hash + lease + its share of the id set).
TEST(RedisRegistry, MemoryBudgetPerMailbox) {
  RedisRegistry reg(options(box(kKeyA)));
  auto typical = [](const std::string& id) {
    MailboxRecord r;
    r.config.id = id;
    r.config.email = "jane.doe-accounts@example-company.com";
    r.config.imap.host = "imap.example-company.com";
    r.config.imap.port = 993;
    r.config.imap.username = "jane.doe-accounts@example-company.com";
    r.config.imap.password = core::Secret("Xy7!kq2Lm9#vB4tR8wZp3sD6");
    r.config.folders = {"INBOX"};
    r.config.webhook = core::WebhookTarget{"https://hooks.example-company.com/email-listener/in",
                                           core::Secret("whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0")};
    r.created_at = "2026-03-14T09:26:53.589Z";
    return r;
  };
  const std::string id = "mbx_01HZX3Q8W5N2K7R4T9V6B1C0DE";  // 28 chars, a ULID-style id
  ASSERT_TRUE(reg.add(typical(id)));
  ASSERT_EQ(reg.claim(id, "email-listener-12", 30s), 2u);
  ASSERT_TRUE(reg.save_checkpoint(id, 2, {"INBOX", 1700000000u, 123456u}, 42));
  reg.publish_states({{id, 2, "idle", "", "2026-03-14T09:27:01.120Z"}});

  auto raw = g_server->raw();
  const long long hash =
      raw.integer({"MEMORY", "USAGE", test_prefix() + "mbx:" + id, "SAMPLES", "0"});
  const long long lease = raw.integer({"MEMORY", "USAGE", test_prefix() + "lease:" + id});
  const std::string cfg = raw.str({"HGET", test_prefix() + "mbx:" + id, "cfg"});

  // The id set's share, measured with enough members for its large encoding (skiplist); and
  // the server's own count (used_memory: also its keyspace and expiry tables) for comparison.
  auto used_memory = [&] {
    const std::string info = raw.str({"INFO", "memory"});
    const auto at = info.find("used_memory:");
    return std::stoll(info.substr(at + 12));
  };
  const long long before = used_memory();
  const int n = 1000;
  for (int i = 0; i < n; ++i) {
    const auto id_i = zero_pad(i);
    ASSERT_TRUE(reg.add(typical(id_i)));
    ASSERT_EQ(reg.claim(id_i, "email-listener-12", 30s), 2u);
    ASSERT_TRUE(reg.save_checkpoint(id_i, 2, {"INBOX", 1700000000u, 123456u}, 42));
    reg.publish_states({{id_i, 2, "idle", "", "2026-03-14T09:27:01.120Z"}});
  }
  const long long per_mailbox_used = (used_memory() - before) / n;
  const long long zset =
      raw.integer({"MEMORY", "USAGE", test_prefix() + "mailboxes", "SAMPLES", "0"});
  const long long zset_share = zset / (n + 1);

  std::cout << "cfg JSON " << cfg.size() << " bytes; MEMORY USAGE hash " << hash << " + lease "
            << lease << " + id set share " << zset_share << " = " << hash + lease + zset_share
            << " bytes per mailbox; used_memory grows " << per_mailbox_used
            << " bytes per mailbox\n";
  EXPECT_LT(hash + lease, 2048);
  EXPECT_LT(hash + lease + zset_share, 2048);
}
