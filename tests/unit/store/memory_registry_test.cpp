#include "store/memory_registry.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

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
  MemoryRegistry reg({});
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
  MemoryRegistry reg({});
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
  MemoryRegistry reg({});
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
  MemoryRegistry reg({});
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
    MemoryRegistry reg({file});
    reg.add(record("a"));
    reg.add(record("b"));
    reg.save_checkpoint("a", 1, {"INBOX", 42, 1234}, 5);
    reg.remove("b");
    reg.flush();
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "the state file holds passwords";
  }
  MemoryRegistry again({file});
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
  MemoryRegistry reg({file, std::chrono::milliseconds(10)});
  reg.add(record("a"));
  for (int i = 0; i < 200 && !std::filesystem::exists(file); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  MemoryRegistry copy({file});
  EXPECT_TRUE(copy.get("a"));
}

TEST(MemoryRegistry, CorruptStateFileIsRefused) {
  TempDir dir;
  const auto file = (dir.path / "state.json").string();
  std::ofstream(file) << "{\"version\":1,\"mailboxes\":[{\"id\":";
  EXPECT_THROW(MemoryRegistry({file}), std::runtime_error);
  std::ofstream(file, std::ios::trunc) << "{\"version\":99,\"mailboxes\":[]}";
  EXPECT_THROW(MemoryRegistry({file}), std::runtime_error);
}

TEST(MemoryRegistry, ConcurrentCheckpointsAllCounted) {
  MemoryRegistry reg({});
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
  MemoryRegistry reg({file, std::chrono::milliseconds(5000)});
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    reg.add(record("m" + std::to_string(i)));
    reg.flush();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  MemoryRegistry copy({file});
  EXPECT_EQ(copy.size(), 5u);
}
