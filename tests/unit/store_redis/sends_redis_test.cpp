// Sends, refreshed OAuth2 tokens and sync progress on the Redis registry, against a real
// redis-server this suite starts on a free loopback port (its own, so the file stands alone).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "redis_server.hpp"
#include "store/redis_registry.hpp"

using namespace el;
using namespace std::chrono_literals;
using store::MailboxRecord;
using store::RedisRegistry;
using store::SendRecord;

namespace {

constexpr auto kKeep = std::chrono::seconds(3600);
const char* kKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

std::string every_byte() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

SendRecord send(const std::string& id, const std::string& mailbox, const std::string& key = {}) {
  SendRecord s;
  s.id = id;
  s.mailbox_id = mailbox;
  s.idempotency_key = key;
  s.request_hash = "hash-of-" + id;
  s.state = "queued";
  s.message_id = id + "@example.test";
  s.created_at = "2026-03-01T10:00:00.000Z";
  s.from = mailbox + "@example.test";
  s.recipients = {"bob@example.test"};
  s.raw = "Subject: " + id + "\r\n\r\nbody\r\n";
  return s;
}

MailboxRecord mailbox(const std::string& id) {
  MailboxRecord r;
  r.config.id = id;
  r.config.email = id + "@example.test";
  r.config.imap.host = "127.0.0.1";
  r.config.imap.port = 143;
  r.config.imap.security = core::Security::starttls;
  r.config.imap.username = id;
  r.config.imap.password = core::Secret("imap-pw-" + id);
  core::SmtpSettings smtp;
  smtp.host = "smtp.example.test";
  smtp.password = core::Secret("smtp-pw-" + id);
  smtp.save_to_sent = false;
  r.config.smtp = smtp;
  core::OAuth2Settings a;
  a.access_token = core::Secret("access-1-" + id);
  a.refresh_token = core::Secret("refresh-1-" + id);
  a.expires_at = *core::parse_rfc3339("2026-03-01T11:00:00.000Z");
  a.token_url = "https://login.example.test/token";
  a.client_id = "client-" + id;
  a.client_secret = core::Secret("client-secret-" + id);
  a.mechanism = "oauthbearer";
  r.config.oauth2 = a;
  r.created_at = "2026-01-01T00:00:00.000Z";
  return r;
}

core::OAuth2Settings tokens(const std::string& access, const std::string& refresh,
                            const std::string& expires) {
  core::OAuth2Settings t;
  t.access_token = core::Secret(access);
  t.refresh_token = core::Secret(refresh);
  t.expires_at = *core::parse_rfc3339(expires);
  return t;
}

class RedisSends : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_redis_server()) return;  // reported by SetUp
    server_ = new test::RedisServer();
    server_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (server_ == nullptr) FAIL() << test::missing_redis_message();
  }

  // Each test its own key prefix, so they cannot see each other's keys.
  static std::string prefix() {
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string("s:") + t->name() + ":";
  }
  static store::RedisRegistryOptions options(std::shared_ptr<const core::SecretBox> box = nullptr) {
    store::RedisRegistryOptions o;
    o.url = server_->url();
    o.prefix = prefix();
    o.secret_box = std::move(box);
    o.connect_timeout = 1000ms;
    o.command_timeout = 1000ms;
    return o;
  }
  static test::RawRedis raw() { return server_->raw(); }

  static test::RedisServer* server_;
};

test::RedisServer* RedisSends::server_ = nullptr;

}  // namespace

// ---- sends ----

TEST_F(RedisSends, CreateThenGetWithBinaryRaw) {
  RedisRegistry reg(options());
  auto s = send("s1", "a", "k1");
  s.raw = every_byte();
  s.attempts = 3;
  s.reply_code = 451;
  EXPECT_FALSE(reg.create_send(s, kKeep));
  auto got = reg.get_send("s1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, "s1");
  EXPECT_EQ(got->mailbox_id, "a");
  EXPECT_EQ(got->idempotency_key, "k1");
  EXPECT_EQ(got->request_hash, "hash-of-s1");
  EXPECT_EQ(got->raw, every_byte());
  EXPECT_EQ(got->recipients, s.recipients);
  EXPECT_EQ(got->attempts, 3u);
  EXPECT_EQ(got->reply_code, 451);
  EXPECT_FALSE(reg.get_send("s2"));
}

TEST_F(RedisSends, IdempotencyKeyReturnsTheExistingSend) {
  RedisRegistry reg(options());
  ASSERT_FALSE(reg.create_send(send("s1", "a", "order-7"), kKeep));
  auto again = send("s2", "a", "order-7");
  again.request_hash = "another-body";
  auto existing = reg.create_send(again, kKeep);
  ASSERT_TRUE(existing);
  EXPECT_EQ(existing->id, "s1");
  EXPECT_EQ(existing->request_hash, "hash-of-s1");
  EXPECT_FALSE(reg.get_send("s2")) << "not stored twice";
  EXPECT_EQ(raw().integer({"EXISTS", prefix() + "send:s2"}), 0);
  EXPECT_EQ(reg.pending_sends(10), std::vector<std::string>{"s1"});

  // Another mailbox may use the same key; no key never deduplicates.
  EXPECT_FALSE(reg.create_send(send("s3", "b", "order-7"), kKeep));
  EXPECT_FALSE(reg.create_send(send("s4", "a"), kKeep));
  EXPECT_FALSE(reg.create_send(send("s5", "a"), kKeep));
  for (auto id : {"s1", "s3", "s4", "s5"}) EXPECT_TRUE(reg.get_send(id)) << id;
  EXPECT_EQ(reg.pending_sends(10).size(), 4u);

  // A retry sees the state the send reached.
  auto s1 = *reg.get_send("s1");
  s1.state = "sent";
  reg.update_send(s1);
  EXPECT_EQ(reg.create_send(send("s6", "a", "order-7"), kKeep)->state, "sent");
}

TEST_F(RedisSends, PendingInCreationOrderAndFinalStatesLeaveIt) {
  RedisRegistry reg(options());
  // Created in the opposite order of their ids.
  for (auto id : {"s-c", "s-b", "s-a"}) {
    ASSERT_FALSE(reg.create_send(send(id, "m"), kKeep));
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(reg.pending_sends(10), (std::vector<std::string>{"s-c", "s-b", "s-a"}));
  EXPECT_EQ(reg.pending_sends(2), (std::vector<std::string>{"s-c", "s-b"}));
  EXPECT_TRUE(reg.pending_sends(0).empty());

  auto c = *reg.get_send("s-c");
  c.state = "retrying";
  c.attempts = 1;
  reg.update_send(c);
  EXPECT_EQ(reg.get_send("s-c")->state, "retrying");
  EXPECT_EQ(reg.get_send("s-c")->raw, c.raw) << "needed for the next attempt";
  EXPECT_EQ(reg.pending_sends(10).size(), 3u);

  c.state = "sent";
  c.queue_id = "4Q2x";
  c.reply_text = "250 2.0.0 Ok";
  reg.update_send(c);
  auto got = reg.get_send("s-c");
  EXPECT_EQ(got->state, "sent");
  EXPECT_EQ(got->queue_id, "4Q2x");
  EXPECT_EQ(got->reply_text, "250 2.0.0 Ok");
  EXPECT_TRUE(got->raw.empty()) << "the message is dropped when the send ends";

  auto a = *reg.get_send("s-a");
  a.state = "failed";
  a.error_code = "rejected";
  reg.update_send(a);
  EXPECT_TRUE(reg.get_send("s-a")->raw.empty());
  EXPECT_EQ(reg.pending_sends(10), std::vector<std::string>{"s-b"});

  // An update keeps the retention (KEEPTTL) and never creates a send.
  EXPECT_GT(raw().integer({"PTTL", prefix() + "send:s-c"}), 3000 * 1000);
  reg.update_send(send("ghost", "m"));
  EXPECT_FALSE(reg.get_send("ghost"));
  EXPECT_EQ(reg.pending_sends(10), std::vector<std::string>{"s-b"});
}

TEST_F(RedisSends, ExpiresAfterRetention) {
  RedisRegistry reg(options());
  ASSERT_FALSE(reg.create_send(send("s1", "m", "k1"), 1s));
  EXPECT_TRUE(reg.get_send("s1"));
  const auto ttl = raw().integer({"PTTL", prefix() + "send:s1"});
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 1000);
  const auto key_ttl = raw().integer({"PTTL", prefix() + "sendkey:m:k1"});
  EXPECT_GT(key_ttl, 0);
  EXPECT_LE(key_ttl, 1000);
  EXPECT_EQ(reg.create_send(send("s1-retry", "m", "k1"), 1s)->id, "s1");

  std::this_thread::sleep_for(1300ms);
  EXPECT_FALSE(reg.get_send("s1"));
  // The key is free again once its send is forgotten.
  EXPECT_FALSE(reg.create_send(send("s2", "m", "k1"), kKeep));
  ASSERT_TRUE(reg.get_send("s2"));
  EXPECT_EQ(reg.get_send("s2")->idempotency_key, "k1");
}

TEST_F(RedisSends, ClaimExcludesOtherNodesUntilTheLeaseExpires) {
  RedisRegistry reg(options());
  ASSERT_FALSE(reg.create_send(send("s1", "m"), kKeep));
  EXPECT_TRUE(reg.claim_send("s1", "n1", 300ms));
  EXPECT_FALSE(reg.claim_send("s1", "n2", 300ms));
  EXPECT_EQ(raw().str({"GET", prefix() + "sendclaim:s1"}), "n1");
  std::this_thread::sleep_for(450ms);
  EXPECT_TRUE(reg.claim_send("s1", "n2", 10s)) << "n1's lease expired";
  EXPECT_FALSE(reg.claim_send("s1", "n1", 10s));
}

TEST_F(RedisSends, SameNodeExtendsItsClaim) {
  // Wide margins: the tests may share two cores with a parallel build.
  RedisRegistry reg(options());
  ASSERT_FALSE(reg.create_send(send("s1", "m"), kKeep));
  EXPECT_TRUE(reg.claim_send("s1", "n1", 800ms));
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(reg.claim_send("s1", "n1", 800ms)) << "the holder extends";
  EXPECT_GT(raw().integer({"PTTL", prefix() + "sendclaim:s1"}), 500);
  std::this_thread::sleep_for(500ms);  // 1000ms after the first claim, 500 after the second
  EXPECT_FALSE(reg.claim_send("s1", "n2", 800ms)) << "the extension holds";
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(reg.claim_send("s1", "n2", 800ms));
}

// ---- tokens and sync ----

TEST_F(RedisSends, SaveTokensKeepsTheEpochAndSurvivesGet) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_EQ(reg.claim("a", "n1", 10s), 2u);
  const auto before = reg.epoch("a");

  ASSERT_TRUE(reg.save_tokens("a", tokens("access-2", "refresh-2", "2026-03-01T12:00:00.000Z")));
  EXPECT_EQ(reg.epoch("a"), before) << "a token refresh is not a settings change";
  EXPECT_EQ(reg.renew("n1", {"a"}, 10s).at(0), before);
  auto got = reg.get("a");
  ASSERT_TRUE(got && got->config.oauth2);
  EXPECT_EQ(got->epoch, *before);
  const auto& a = *got->config.oauth2;
  EXPECT_EQ(a.access_token.reveal(), "access-2");
  EXPECT_EQ(a.refresh_token.reveal(), "refresh-2");
  ASSERT_TRUE(a.expires_at);
  EXPECT_EQ(core::format_rfc3339(*a.expires_at), "2026-03-01T12:00:00.000Z");
  EXPECT_EQ(a.client_id, "client-a");
  EXPECT_EQ(a.client_secret.reveal(), "client-secret-a");
  EXPECT_EQ(a.token_url, "https://login.example.test/token");
  EXPECT_EQ(a.mechanism, "oauthbearer");
  EXPECT_EQ(got->config.imap.password.reveal(), "imap-pw-a");
  EXPECT_EQ(reg.list("", 10).at(0).config.oauth2->access_token.reveal(), "access-2");

  // No refresh token in the answer: the latest one stays (as MemoryRegistry keeps it).
  ASSERT_TRUE(reg.save_tokens("a", tokens("access-3", "", "2026-03-01T13:00:00.000Z")));
  got = reg.get("a");
  EXPECT_EQ(got->config.oauth2->access_token.reveal(), "access-3");
  EXPECT_EQ(got->config.oauth2->refresh_token.reveal(), "refresh-2");
  EXPECT_EQ(core::format_rfc3339(*got->config.oauth2->expires_at), "2026-03-01T13:00:00.000Z");
  EXPECT_EQ(reg.epoch("a"), before);

  EXPECT_FALSE(reg.save_tokens("missing", tokens("x", "y", "2026-03-01T12:00:00.000Z")));
  EXPECT_EQ(raw().integer({"EXISTS", prefix() + "mbx:missing"}), 0) << "nothing created";
}

TEST_F(RedisSends, RefreshedTokensAreSealed) {
  auto box = std::make_shared<const core::SecretBox>(core::SecretBox::from_base64(kKey));
  RedisRegistry reg(options(box));
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_TRUE(reg.save_tokens("a", tokens("access-2", "refresh-2", "2026-03-01T12:00:00.000Z")));
  const std::string stored = raw().str({"HGET", prefix() + "mbx:a", "oauth"});
  ASSERT_FALSE(stored.empty());
  EXPECT_EQ(stored.find("access-2"), std::string::npos) << stored;
  EXPECT_EQ(stored.find("refresh-2"), std::string::npos) << stored;
  EXPECT_NE(stored.find("enc:v1:"), std::string::npos) << stored;
  const std::string cfg = raw().str({"HGET", prefix() + "mbx:a", "cfg"});
  for (const char* s : {"smtp-pw-a", "access-1-a", "refresh-1-a", "client-secret-a"})
    EXPECT_EQ(cfg.find(s), std::string::npos) << s << " in clear: " << cfg;
  auto got = reg.get("a");
  EXPECT_EQ(got->config.oauth2->access_token.reveal(), "access-2");
  EXPECT_EQ(got->config.oauth2->refresh_token.reveal(), "refresh-2");
  EXPECT_EQ(got->config.smtp->password.reveal(), "smtp-pw-a");
  // Without the key the record cannot be read.
  RedisRegistry keyless(options());
  EXPECT_THROW(keyless.get("a"), std::runtime_error);
}

TEST_F(RedisSends, ReplaceConfigDropsRefreshedTokens) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_TRUE(reg.save_tokens("a", tokens("access-2", "refresh-2", "2026-03-01T12:00:00.000Z")));
  auto cfg = mailbox("a").config;
  cfg.oauth2->access_token = core::Secret("access-new");
  cfg.oauth2->refresh_token = core::Secret("refresh-new");
  cfg.oauth2->expires_at = *core::parse_rfc3339("2026-04-01T00:00:00.000Z");
  EXPECT_EQ(reg.replace_config(cfg), 2u);
  auto got = reg.get("a");
  ASSERT_TRUE(got && got->config.oauth2);
  EXPECT_EQ(got->config.oauth2->access_token.reveal(), "access-new") << "the settings' tokens win";
  EXPECT_EQ(got->config.oauth2->refresh_token.reveal(), "refresh-new");
  EXPECT_EQ(core::format_rfc3339(*got->config.oauth2->expires_at), "2026-04-01T00:00:00.000Z");
  EXPECT_EQ(raw().integer({"HEXISTS", prefix() + "mbx:a", "oauth"}), 0);
  // Later refreshes apply on top of the new settings.
  ASSERT_TRUE(reg.save_tokens("a", tokens("access-3", "", "2026-04-01T01:00:00.000Z")));
  got = reg.get("a");
  EXPECT_EQ(got->config.oauth2->access_token.reveal(), "access-3");
  EXPECT_EQ(got->config.oauth2->refresh_token.reveal(), "refresh-new");
  EXPECT_EQ(got->epoch, 2u);
}

TEST_F(RedisSends, PutSyncShowsInGet) {
  RedisRegistry reg(options());
  ASSERT_TRUE(reg.add(mailbox("a")));
  EXPECT_EQ(reg.get("a")->sync, "");
  const std::string progress = R"({"sync_id":"sy1","state":"running","delivered":3})";
  ASSERT_TRUE(reg.put_sync("a", progress));
  EXPECT_EQ(reg.get("a")->sync, progress);
  EXPECT_EQ(reg.list("", 10).at(0).sync, progress);
  EXPECT_EQ(reg.epoch("a"), 1u);
  const std::string done = R"({"sync_id":"sy1","state":"done","delivered":9})";
  ASSERT_TRUE(reg.put_sync("a", done));
  EXPECT_EQ(reg.get("a")->sync, done);
  EXPECT_FALSE(reg.put_sync("missing", progress));
  EXPECT_EQ(raw().integer({"EXISTS", prefix() + "mbx:missing"}), 0) << "nothing created";
}
