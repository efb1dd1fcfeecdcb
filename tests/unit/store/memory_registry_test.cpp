#include "store/memory_registry.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "store/record_json.hpp"

using namespace el;
using store::MailboxRecord;
using store::MemoryRegistry;

namespace {

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
  r.config.webhook = core::WebhookTarget{"http://127.0.0.1:9/hook", core::Secret("s3")};
  r.created_at = "2026-01-01T00:00:00.000Z";
  return r;
}

store::MemoryRegistryOptions opts(
    const std::string& file = {},
    std::chrono::milliseconds write_delay = std::chrono::milliseconds(100),
    std::shared_ptr<const core::SecretBox> secret_box = nullptr) {
  store::MemoryRegistryOptions o;
  o.state_file = file;
  o.write_delay = write_delay;
  o.secret_box = std::move(secret_box);
  return o;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/el-store-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST(MemoryRegistry, AddGetRemove) {
  MemoryRegistry reg(opts());
  EXPECT_TRUE(reg.add(record("a")));
  EXPECT_FALSE(reg.add(record("a")));
  auto got = reg.get("a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->config.imap.password.reveal(), "pw-a");
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_TRUE(reg.remove("a"));
  EXPECT_FALSE(reg.remove("a"));
  EXPECT_FALSE(reg.get("a"));
}

TEST(MemoryRegistry, ListPagesInIdOrder) {
  MemoryRegistry reg(opts());
  for (auto id : {"c", "a", "e", "b", "d"}) reg.add(record(id));
  auto p1 = reg.list("", 2);
  ASSERT_EQ(p1.size(), 2u);
  EXPECT_EQ(p1[0].config.id, "a");
  EXPECT_EQ(p1[1].config.id, "b");
  auto p2 = reg.list("b", 10);
  ASSERT_EQ(p2.size(), 3u);
  EXPECT_EQ(p2[0].config.id, "c");
  EXPECT_EQ(p2[2].config.id, "e");
  EXPECT_TRUE(reg.list("e", 10).empty());
}

TEST(MemoryRegistry, CheckpointsAreFencedByEpoch) {
  MemoryRegistry reg(opts());
  reg.add(record("a"));
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 10}, 1));
  EXPECT_TRUE(reg.save_checkpoint("a", 1, {"INBOX", 7, 11}, 1));
  auto cfg = record("a").config;
  cfg.folders = {"INBOX"};
  auto epoch = reg.replace_config(cfg);
  ASSERT_TRUE(epoch);
  EXPECT_EQ(*epoch, 2u);
  // A session of the old settings can no longer move progress.
  EXPECT_FALSE(reg.save_checkpoint("a", 1, {"INBOX", 7, 99}, 1));
  auto r = reg.get("a");
  ASSERT_TRUE(r);
  ASSERT_NE(r->checkpoint("INBOX"), nullptr);
  EXPECT_EQ(r->checkpoint("INBOX")->last_uid, 11u);  // kept: same account, folder still watched
  EXPECT_EQ(r->delivered, 2u);
  EXPECT_FALSE(reg.save_checkpoint("missing", 1, {"INBOX", 7, 1}, 1));
}

TEST(MemoryRegistry, NewAccountDropsCheckpoints) {
  MemoryRegistry reg(opts());
  reg.add(record("a"));
  reg.save_checkpoint("a", 1, {"INBOX", 7, 10}, 0);
  auto cfg = record("a").config;
  cfg.imap.username = "someone-else";
  reg.replace_config(cfg);
  EXPECT_EQ(reg.get("a")->checkpoint("INBOX"), nullptr);
  EXPECT_FALSE(reg.replace_config(record("zzz").config));
}

TEST(MemoryRegistry, StateFileSurvivesRestart) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  {
    MemoryRegistry reg(opts(file));
    reg.add(record("a"));
    reg.add(record("b"));
    reg.save_checkpoint("a", 1, {"INBOX", 42, 1234}, 5);
    reg.remove("b");
    reg.flush();
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "the state file holds passwords";
  }
  MemoryRegistry again(opts(file));
  EXPECT_EQ(again.size(), 1u);
  auto a = again.get("a");
  ASSERT_TRUE(a);
  ASSERT_NE(a->checkpoint("INBOX"), nullptr);
  EXPECT_EQ(a->checkpoint("INBOX")->uidvalidity, 42u);
  EXPECT_EQ(a->checkpoint("INBOX")->last_uid, 1234u);
  EXPECT_EQ(a->delivered, 5u);
  EXPECT_EQ(a->config.imap.password.reveal(), "pw-a");
  EXPECT_EQ(a->config.webhook->secret.reveal(), "s3");
  EXPECT_EQ(a->config.folders, (std::vector<std::string>{"INBOX", "Archive"}));
  EXPECT_EQ(a->config.imap.security, core::Security::starttls);
}

TEST(MemoryRegistry, ChangesWithoutFlushAreWrittenInBackground) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  MemoryRegistry reg(opts(file, std::chrono::milliseconds(10)));
  reg.add(record("a"));
  for (int i = 0; i < 200 && !std::filesystem::exists(file); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  MemoryRegistry copy(opts(file));
  EXPECT_TRUE(copy.get("a"));
}

TEST(MemoryRegistry, CorruptStateFileIsRefused) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  std::ofstream(file) << "{\"version\":1,\"mailboxes\":[{\"id\":";
  EXPECT_THROW(MemoryRegistry(opts(file)), std::runtime_error);
  std::ofstream(file, std::ios::trunc) << "{\"version\":99,\"mailboxes\":[]}";
  EXPECT_THROW(MemoryRegistry(opts(file)), std::runtime_error);
}

TEST(MemoryRegistry, ConcurrentCheckpointsAllCounted) {
  MemoryRegistry reg(opts());
  reg.add(record("a"));
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (std::uint32_t i = 1; i <= 500; ++i)
        reg.save_checkpoint("a", 1, {"F" + std::to_string(t), 1, i}, 1);
    });
  for (auto& t : ts) t.join();
  auto r = reg.get("a");
  EXPECT_EQ(r->delivered, 2000u);
  for (int t = 0; t < 4; ++t) EXPECT_EQ(r->checkpoint("F" + std::to_string(t))->last_uid, 500u);
}

TEST(MemoryRegistry, RecordJsonRoundTrip) {
  auto r = record("x");
  r.config.since = core::parse_rfc3339("2025-05-01T10:00:00Z");
  r.checkpoints = {{"INBOX", 3, 9}};
  auto back = store::record_from_json(store::record_to_json(r));
  EXPECT_EQ(back.config.id, "x");
  EXPECT_EQ(core::format_rfc3339(*back.config.since), "2025-05-01T10:00:00.000Z");
  EXPECT_EQ(back.checkpoints.at(0).last_uid, 9u);
}

TEST(MemoryRegistry, FlushDoesNotWaitForTheCoalescingWindow) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  // A long window for background writes: flush() must still return at once.
  MemoryRegistry reg(opts(file, std::chrono::milliseconds(5000)));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    reg.add(record("m" + std::to_string(i)));
    reg.flush();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  MemoryRegistry copy(opts(file));
  EXPECT_EQ(copy.size(), 5u);
}

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
const char* kKeyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kKeyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
std::shared_ptr<const core::SecretBox> box(const char* key, const char* old = "") {
  return std::make_shared<const core::SecretBox>(core::SecretBox::from_base64(key, old));
}
}  // namespace

TEST(MemoryRegistry, CredentialsAreEncryptedInTheStateFile) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  {
    MemoryRegistry reg(opts(file, std::chrono::milliseconds(10), box(kKeyA)));
    reg.add(record("a"));
    reg.flush();
  }
  const std::string text = read_file(file);
  EXPECT_EQ(text.find("pw-a"), std::string::npos) << "password in clear: " << text;
  EXPECT_EQ(text.find("\"s3\""), std::string::npos) << "webhook secret in clear: " << text;
  EXPECT_NE(text.find("enc:v1:"), std::string::npos);
  // Same key: readable.
  MemoryRegistry again(opts(file, std::chrono::milliseconds(10), box(kKeyA)));
  EXPECT_EQ(again.get("a")->config.imap.password.reveal(), "pw-a");
  EXPECT_EQ(again.get("a")->config.webhook->secret.reveal(), "s3");
}

TEST(MemoryRegistry, EncryptedStateNeedsTheKey) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  {
    MemoryRegistry reg(opts(file, std::chrono::milliseconds(10), box(kKeyA)));
    reg.add(record("a"));
    reg.flush();
  }
  try {
    MemoryRegistry none(opts(file));
    ADD_FAILURE() << "loaded encrypted credentials without a key";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("EL_SECRET_KEY"), std::string::npos) << e.what();
  }
  EXPECT_THROW(MemoryRegistry(opts(file, std::chrono::milliseconds(10), box(kKeyB))),
               std::runtime_error);
}

TEST(MemoryRegistry, KeyRotationAndMigrationFromPlaintext) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  {
    MemoryRegistry plain(opts(file));  // an older state file, in clear
    plain.add(record("a"));
    plain.flush();
  }
  {
    MemoryRegistry sealed(opts(file, std::chrono::milliseconds(10), box(kKeyA)));
    EXPECT_EQ(sealed.get("a")->config.imap.password.reveal(), "pw-a");
    sealed.save_checkpoint("a", 1, {"INBOX", 1, 1}, 0);  // any change rewrites, sealed
    sealed.flush();
  }
  EXPECT_EQ(read_file(file).find("pw-a"), std::string::npos);
  {
    // Rotation: B seals, A still opens; after a write, B alone is enough.
    MemoryRegistry rotating(opts(file, std::chrono::milliseconds(10), box(kKeyB, kKeyA)));
    EXPECT_EQ(rotating.get("a")->config.imap.password.reveal(), "pw-a");
    rotating.save_checkpoint("a", 1, {"INBOX", 1, 2}, 0);
    rotating.flush();
  }
  MemoryRegistry rotated(opts(file, std::chrono::milliseconds(10), box(kKeyB)));
  EXPECT_EQ(rotated.get("a")->config.imap.password.reveal(), "pw-a");
}
