// Sends, refreshed OAuth2 tokens and sync progress on the memory registry: idempotency keys,
// pending order, final states, retention, claims, and what survives a reload of the state file.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "store/memory_registry.hpp"

using namespace el;
using namespace std::chrono_literals;
using store::MailboxRecord;
using store::MemoryRegistry;
using store::SendRecord;

namespace {

constexpr auto kKeep = std::chrono::seconds(3600);

std::string every_byte() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  return s;
}

SendRecord send(const std::string& id, const std::string& mailbox, const std::string& key = {},
                const std::string& created_at = "2026-03-01T10:00:00.000Z") {
  SendRecord s;
  s.id = id;
  s.mailbox_id = mailbox;
  s.idempotency_key = key;
  s.request_hash = "hash-of-" + id;
  s.state = "queued";
  s.message_id = id + "@example.test";
  s.created_at = created_at;
  s.updated_at = created_at;
  s.from = mailbox + "@example.test";
  s.recipients = {"bob@example.test", "carol@example.test"};
  s.raw = "Subject: " + id + "\r\n\r\nbody of " + id + "\r\n";
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
  smtp.port = 587;
  smtp.security = core::Security::starttls;
  smtp.username = "smtp-user";
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

store::MemoryRegistryOptions file_opts(const std::string& file,
                                       std::shared_ptr<const core::SecretBox> box = nullptr) {
  store::MemoryRegistryOptions o;
  o.state_file = file;
  o.write_delay = 10ms;
  o.secret_box = std::move(box);
  return o;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/el-sends-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

}  // namespace

// ---- sends ----

TEST(MemorySends, CreateThenGetEveryField) {
  MemoryRegistry reg({});
  auto s = send("s1", "a", "k1");
  s.raw = every_byte();
  s.attempts = 2;
  s.next_attempt_at = "2026-03-01T10:05:00.000Z";
  EXPECT_FALSE(reg.create_send(s, kKeep)) << "a new send returns nothing";
  auto got = reg.get_send("s1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, "s1");
  EXPECT_EQ(got->mailbox_id, "a");
  EXPECT_EQ(got->idempotency_key, "k1");
  EXPECT_EQ(got->request_hash, "hash-of-s1");
  EXPECT_EQ(got->state, "queued");
  EXPECT_EQ(got->recipients, s.recipients);
  EXPECT_EQ(got->raw, every_byte());
  EXPECT_EQ(got->attempts, 2u);
  EXPECT_EQ(got->next_attempt_at, "2026-03-01T10:05:00.000Z");
  EXPECT_FALSE(reg.get_send("s2"));
}

TEST(MemorySends, IdempotencyKeyReturnsTheExistingSend) {
  MemoryRegistry reg({});
  ASSERT_FALSE(reg.create_send(send("s1", "a", "order-7"), kKeep));
  auto again = send("s2", "a", "order-7");
  again.request_hash = "another-body";
  auto existing = reg.create_send(again, kKeep);
  ASSERT_TRUE(existing) << "the key names a send already";
  EXPECT_EQ(existing->id, "s1");
  EXPECT_EQ(existing->request_hash, "hash-of-s1") << "the caller compares it with its own";
  EXPECT_FALSE(reg.get_send("s2")) << "not stored twice";
  EXPECT_EQ(reg.pending_sends(10), std::vector<std::string>{"s1"});
  // The state the send reached is what a retry sees.
  auto s1 = *reg.get_send("s1");
  s1.state = "sent";
  reg.update_send(s1);
  EXPECT_EQ(reg.create_send(send("s3", "a", "order-7"), kKeep)->state, "sent");
}

TEST(MemorySends, KeysAreScopedByMailboxAndOptional) {
  MemoryRegistry reg({});
  EXPECT_FALSE(reg.create_send(send("s1", "a", "k"), kKeep));
  EXPECT_FALSE(reg.create_send(send("s2", "b", "k"), kKeep)) << "another mailbox, same key";
  EXPECT_FALSE(reg.create_send(send("s3", "a", "k2"), kKeep));
  EXPECT_FALSE(reg.create_send(send("s4", "a"), kKeep)) << "no key";
  EXPECT_FALSE(reg.create_send(send("s5", "a"), kKeep)) << "no key: never a duplicate";
  for (auto id : {"s1", "s2", "s3", "s4", "s5"}) EXPECT_TRUE(reg.get_send(id)) << id;
  EXPECT_EQ(reg.pending_sends(10).size(), 5u);
}

TEST(MemorySends, PendingOldestFirst) {
  MemoryRegistry reg({});
  // Ids in the opposite order of creation: the order must come from created_at.
  reg.create_send(send("s-a", "m", "", "2026-03-01T10:00:03.000Z"), kKeep);
  reg.create_send(send("s-b", "m", "", "2026-03-01T10:00:01.000Z"), kKeep);
  reg.create_send(send("s-c", "m", "", "2026-03-01T10:00:02.000Z"), kKeep);
  EXPECT_EQ(reg.pending_sends(10), (std::vector<std::string>{"s-b", "s-c", "s-a"}));
  EXPECT_EQ(reg.pending_sends(2), (std::vector<std::string>{"s-b", "s-c"}));
  EXPECT_TRUE(reg.pending_sends(0).empty());
}

TEST(MemorySends, FinalStatesLeavePendingAndDropRaw) {
  MemoryRegistry reg({});
  reg.create_send(send("s1", "m", "", "2026-03-01T10:00:01.000Z"), kKeep);
  reg.create_send(send("s2", "m", "", "2026-03-01T10:00:02.000Z"), kKeep);
  reg.create_send(send("s3", "m", "", "2026-03-01T10:00:03.000Z"), kKeep);

  auto s1 = *reg.get_send("s1");
  s1.state = "retrying";
  s1.attempts = 1;
  s1.error_code = "smtp_421";
  reg.update_send(s1);
  auto got = reg.get_send("s1");
  EXPECT_EQ(got->state, "retrying");
  EXPECT_EQ(got->attempts, 1u);
  EXPECT_EQ(got->raw, s1.raw) << "still needed for the next attempt";
  EXPECT_EQ(reg.pending_sends(10), (std::vector<std::string>{"s1", "s2", "s3"}));

  s1.state = "sent";
  s1.queue_id = "4Q2x";
  s1.reply_code = 250;
  s1.reply_text = "250 2.0.0 Ok: queued as 4Q2x";
  reg.update_send(s1);
  got = reg.get_send("s1");
  EXPECT_EQ(got->state, "sent");
  EXPECT_EQ(got->queue_id, "4Q2x");
  EXPECT_EQ(got->reply_code, 250);
  EXPECT_EQ(got->reply_text, "250 2.0.0 Ok: queued as 4Q2x");
  EXPECT_TRUE(got->raw.empty()) << "the message is dropped when the send ends";

  auto s3 = *reg.get_send("s3");
  s3.state = "failed";
  s3.error_code = "rejected";
  reg.update_send(s3);
  EXPECT_TRUE(reg.get_send("s3")->raw.empty());
  EXPECT_EQ(reg.get_send("s3")->error_code, "rejected");
  EXPECT_EQ(reg.pending_sends(10), std::vector<std::string>{"s2"});

  // Updating a send that does not exist creates nothing.
  reg.update_send(send("ghost", "m"));
  EXPECT_FALSE(reg.get_send("ghost"));
  EXPECT_EQ(reg.pending_sends(10), std::vector<std::string>{"s2"});
}

TEST(MemorySends, ForgottenAfterRetention) {
  MemoryRegistry reg({});
  ASSERT_FALSE(reg.create_send(send("s0", "m", "k0"), 0s));
  EXPECT_FALSE(reg.get_send("s0")) << "0s retention: gone at once";
  EXPECT_TRUE(reg.pending_sends(10).empty()) << "an expired send is not pending";

  ASSERT_FALSE(reg.create_send(send("s1", "m", "k1"), 1s));
  EXPECT_TRUE(reg.get_send("s1"));
  EXPECT_EQ(reg.create_send(send("s1-retry", "m", "k1"), 1s)->id, "s1");
  std::this_thread::sleep_for(1100ms);
  EXPECT_FALSE(reg.get_send("s1"));
  EXPECT_TRUE(reg.pending_sends(10).empty());
  // The key is free again once its send is forgotten.
  EXPECT_FALSE(reg.create_send(send("s2", "m", "k1"), kKeep));
  EXPECT_EQ(reg.get_send("s2")->idempotency_key, "k1");
  EXPECT_FALSE(reg.get_send("s1"));
}

TEST(MemorySends, ClaimExcludesOtherNodesUntilTheLeaseExpires) {
  MemoryRegistry reg({});
  reg.create_send(send("s1", "m"), kKeep);
  EXPECT_FALSE(reg.claim_send("missing", "n1", 10s));
  EXPECT_TRUE(reg.claim_send("s1", "n1", 300ms));
  EXPECT_FALSE(reg.claim_send("s1", "n2", 300ms));
  std::this_thread::sleep_for(400ms);
  EXPECT_TRUE(reg.claim_send("s1", "n2", 10s)) << "n1's lease expired";
  EXPECT_FALSE(reg.claim_send("s1", "n1", 10s));
}

TEST(MemorySends, SameNodeExtendsItsClaim) {
  // Wide margins: the tests may share two cores with a parallel build.
  MemoryRegistry reg({});
  reg.create_send(send("s1", "m"), kKeep);
  EXPECT_TRUE(reg.claim_send("s1", "n1", 800ms));
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(reg.claim_send("s1", "n1", 800ms)) << "the holder extends";
  std::this_thread::sleep_for(500ms);  // 1000ms after the first claim, 500 after the second
  EXPECT_FALSE(reg.claim_send("s1", "n2", 800ms)) << "the extension holds";
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(reg.claim_send("s1", "n2", 800ms));
}

TEST(MemorySends, FinalSendReleasesItsClaim) {
  MemoryRegistry reg({});
  reg.create_send(send("s1", "m"), kKeep);
  ASSERT_TRUE(reg.claim_send("s1", "n1", 10s));
  auto s = *reg.get_send("s1");
  s.state = "failed";
  reg.update_send(s);
  EXPECT_TRUE(reg.claim_send("s1", "n2", 10s));
}

// ---- tokens and sync ----

TEST(MemoryTokens, SaveTokensKeepsTheEpoch) {
  MemoryRegistry reg({});
  ASSERT_TRUE(reg.add(mailbox("a")));
  ASSERT_TRUE(reg.claim("a", "n1", 10s));
  const auto before = reg.epoch("a");
  ASSERT_TRUE(before);
  EXPECT_EQ(*before, 2u);

  ASSERT_TRUE(reg.save_tokens("a", tokens("access-2", "refresh-2", "2026-03-01T12:00:00.000Z")));
  EXPECT_EQ(reg.epoch("a"), before) << "a token refresh is not a settings change";
  auto got = reg.get("a");
  ASSERT_TRUE(got && got->config.oauth2);
  EXPECT_EQ(got->epoch, *before);
  const auto& a = *got->config.oauth2;
  EXPECT_EQ(a.access_token.reveal(), "access-2");
  EXPECT_EQ(a.refresh_token.reveal(), "refresh-2");
  ASSERT_TRUE(a.expires_at);
  EXPECT_EQ(core::format_rfc3339(*a.expires_at), "2026-03-01T12:00:00.000Z");
  // The rest of the settings are untouched.
  EXPECT_EQ(a.client_id, "client-a");
  EXPECT_EQ(a.client_secret.reveal(), "client-secret-a");
  EXPECT_EQ(a.token_url, "https://login.example.test/token");
  EXPECT_EQ(a.mechanism, "oauthbearer");
  EXPECT_EQ(got->config.imap.password.reveal(), "imap-pw-a");
  // A renewal still sees the epoch it holds.
  EXPECT_EQ(reg.renew("n1", {"a"}, 10s).at(0), before);

  // No refresh token in the answer: the latest one stays.
  ASSERT_TRUE(reg.save_tokens("a", tokens("access-3", "", "2026-03-01T13:00:00.000Z")));
  got = reg.get("a");
  EXPECT_EQ(got->config.oauth2->access_token.reveal(), "access-3");
  EXPECT_EQ(got->config.oauth2->refresh_token.reveal(), "refresh-2");
  EXPECT_EQ(core::format_rfc3339(*got->config.oauth2->expires_at), "2026-03-01T13:00:00.000Z");
  EXPECT_EQ(reg.epoch("a"), before);

  // No expiry in the answer: none is kept.
  core::OAuth2Settings no_expiry;
  no_expiry.access_token = core::Secret("access-4");
  ASSERT_TRUE(reg.save_tokens("a", no_expiry));
  EXPECT_FALSE(reg.get("a")->config.oauth2->expires_at);

  EXPECT_FALSE(reg.save_tokens("missing", tokens("x", "y", "2026-03-01T12:00:00.000Z")));
  EXPECT_FALSE(reg.get("missing"));
}

TEST(MemoryTokens, PutSyncShowsInGet) {
  MemoryRegistry reg({});
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
}

// ---- the state file ----

TEST(MemorySends, EverythingSurvivesAReload) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  const std::string progress = R"({"sync_id":"sy1","state":"running"})";
  std::uint64_t epoch = 0;
  {
    MemoryRegistry reg(file_opts(file));
    ASSERT_TRUE(reg.add(mailbox("a")));
    epoch = *reg.epoch("a");
    ASSERT_TRUE(reg.save_tokens("a", tokens("access-2", "refresh-2", "2026-03-01T12:00:00.000Z")));
    ASSERT_TRUE(reg.put_sync("a", progress));
    auto binary = send("s-bin", "a", "key-bin", "2026-03-01T10:00:01.000Z");
    binary.raw = every_byte();
    ASSERT_FALSE(reg.create_send(binary, kKeep));
    ASSERT_FALSE(reg.create_send(send("s-done", "a", "", "2026-03-01T10:00:00.000Z"), kKeep));
    ASSERT_FALSE(reg.create_send(send("s-late", "a", "", "2026-03-01T10:00:02.000Z"), kKeep));
    auto done = *reg.get_send("s-done");
    done.state = "sent";
    done.reply_code = 250;
    reg.update_send(done);
    reg.flush();
  }
  MemoryRegistry again(file_opts(file));
  auto a = again.get("a");
  ASSERT_TRUE(a && a->config.oauth2 && a->config.smtp);
  EXPECT_EQ(a->epoch, epoch);
  EXPECT_EQ(a->sync, progress);
  EXPECT_EQ(a->config.oauth2->access_token.reveal(), "access-2");
  EXPECT_EQ(a->config.oauth2->refresh_token.reveal(), "refresh-2");
  EXPECT_EQ(core::format_rfc3339(*a->config.oauth2->expires_at), "2026-03-01T12:00:00.000Z");
  EXPECT_EQ(a->config.oauth2->client_secret.reveal(), "client-secret-a");
  EXPECT_EQ(a->config.oauth2->mechanism, "oauthbearer");
  EXPECT_EQ(a->config.smtp->password.reveal(), "smtp-pw-a");
  EXPECT_FALSE(a->config.smtp->save_to_sent);

  auto bin = again.get_send("s-bin");
  ASSERT_TRUE(bin);
  EXPECT_EQ(bin->raw, every_byte()) << "every byte value survives the JSON file";
  EXPECT_EQ(bin->recipients, send("x", "a").recipients);
  EXPECT_EQ(again.get_send("s-done")->state, "sent");
  EXPECT_EQ(again.get_send("s-done")->reply_code, 250);
  EXPECT_TRUE(again.get_send("s-done")->raw.empty());
  EXPECT_EQ(again.pending_sends(10), (std::vector<std::string>{"s-bin", "s-late"}));
  // The idempotency key still names its send.
  auto dup = again.create_send(send("s-dup", "a", "key-bin"), kKeep);
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->id, "s-bin");
  EXPECT_FALSE(again.get_send("s-dup"));
}

TEST(MemorySends, ExpiredSendsAreNotReloaded) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  {
    MemoryRegistry reg(file_opts(file));
    ASSERT_FALSE(reg.create_send(send("short", "a", "k"), 1s));
    ASSERT_FALSE(reg.create_send(send("long", "a"), kKeep));
    reg.flush();
  }
  std::this_thread::sleep_for(1100ms);
  MemoryRegistry again(file_opts(file));
  EXPECT_FALSE(again.get_send("short"));
  EXPECT_TRUE(again.get_send("long"));
  EXPECT_EQ(again.pending_sends(10), std::vector<std::string>{"long"});
  EXPECT_FALSE(again.create_send(send("new", "a", "k"), kKeep)) << "the key expired with it";
}

TEST(MemorySends, SecretsAreSealedInTheStateFile) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  auto box = std::make_shared<const core::SecretBox>(core::SecretBox::from_base64(kKey));
  const std::vector<std::string> secrets{"imap-pw-a",   "smtp-pw-a",       "access-1-a",
                                         "refresh-1-a", "client-secret-a", "access-2",
                                         "refresh-2"};
  {
    MemoryRegistry reg(file_opts(file, box));
    ASSERT_TRUE(reg.add(mailbox("a")));
    std::string text = reg.snapshot();
    for (const auto& s : {"imap-pw-a", "smtp-pw-a", "access-1-a", "refresh-1-a", "client-secret-a"})
      EXPECT_EQ(text.find(s), std::string::npos) << s << " in clear: " << text;
    EXPECT_NE(text.find("enc:v1:"), std::string::npos);
    // Refreshed tokens are sealed too.
    ASSERT_TRUE(reg.save_tokens("a", tokens("access-2", "refresh-2", "2026-03-01T12:00:00.000Z")));
    text = reg.snapshot();
    for (const auto& s : secrets) EXPECT_EQ(text.find(s), std::string::npos) << s << ": " << text;
    // The non-secret settings stay readable.
    EXPECT_NE(text.find("client-a"), std::string::npos);
    EXPECT_NE(text.find("smtp.example.test"), std::string::npos);
    reg.flush();
  }
  const std::string on_disk = read_file(file);
  for (const auto& s : secrets) EXPECT_EQ(on_disk.find(s), std::string::npos) << s;

  MemoryRegistry again(file_opts(file, box));
  auto a = again.get("a");
  ASSERT_TRUE(a && a->config.oauth2 && a->config.smtp);
  EXPECT_EQ(a->config.smtp->password.reveal(), "smtp-pw-a");
  EXPECT_EQ(a->config.oauth2->access_token.reveal(), "access-2");
  EXPECT_EQ(a->config.oauth2->refresh_token.reveal(), "refresh-2");
  EXPECT_EQ(a->config.oauth2->client_secret.reveal(), "client-secret-a");
  EXPECT_EQ(a->config.imap.password.reveal(), "imap-pw-a");
  // Without the key the file does not load.
  EXPECT_THROW(MemoryRegistry(file_opts(file)), std::runtime_error);
}
