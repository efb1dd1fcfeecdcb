#include "queue/task_codec.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <limits>

using namespace el::queue;

TEST(TaskCodec, TaskRoundTrip) {
  FetchTask t;
  t.mailbox_id = "mb-1 \"quoted\" ünicode";
  t.folder = "INBOX/Sub folder";
  t.uidvalidity = std::numeric_limits<std::uint32_t>::max();
  t.after_uid = 41;
  t.epoch = std::numeric_limits<std::uint64_t>::max();
  const auto back = decode_task(encode_task(t));
  EXPECT_EQ(back.mailbox_id, t.mailbox_id);
  EXPECT_EQ(back.folder, t.folder);
  EXPECT_EQ(back.uidvalidity, t.uidvalidity);
  EXPECT_EQ(back.after_uid, t.after_uid);
  EXPECT_EQ(back.epoch, t.epoch);
  EXPECT_EQ(back.borrowed_connection, nullptr);
}

TEST(TaskCodec, BorrowedConnectionIsNeverSerialized) {
  FetchTask t;
  t.mailbox_id = "m";
  t.folder = "INBOX";
  t.borrowed_connection = reinterpret_cast<el::imap::Client*>(0x1234);
  const auto v = boost::json::parse(encode_task(t));
  const auto& o = v.as_object();
  EXPECT_EQ(o.size(), 5u);
  for (const char* key : {"mailbox_id", "folder", "uidvalidity", "after_uid", "epoch"}) {
    EXPECT_TRUE(o.contains(key)) << key;
  }
}

TEST(TaskCodec, ResultRoundTripEveryStatus) {
  for (auto s : {TaskResult::Status::done, TaskResult::Status::retry_later,
                 TaskResult::Status::reset, TaskResult::Status::stale}) {
    TaskResult r;
    r.status = s;
    r.last_uid = 77;
    r.delivered = 3;
    r.error = "sink refused";
    r.connection_failed = true;
    const auto json = encode_result(r);
    const auto back = decode_result(json);
    EXPECT_EQ(back.status, s) << json;
    EXPECT_EQ(back.last_uid, 77u);
    EXPECT_EQ(back.delivered, 3u);
    EXPECT_EQ(back.error, "sink refused");
    EXPECT_TRUE(back.connection_failed);
    EXPECT_NE(json.find("\"status\":\"" + std::string(to_string(s)) + "\""), std::string::npos);
  }
}

TEST(TaskCodec, ResultOptionalFieldsDefault) {
  const auto r = decode_result(R"({"status":"stale","future_field":[1,2]})");
  EXPECT_EQ(r.status, TaskResult::Status::stale);
  EXPECT_EQ(r.last_uid, 0u);
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_TRUE(r.error.empty());
  EXPECT_FALSE(r.connection_failed);
}

TEST(TaskCodec, UnknownTaskKeysAreIgnoredAndIntegralDoublesAccepted) {
  const auto t = decode_task(
      R"({"mailbox_id":"m","folder":"INBOX","uidvalidity":7.0,"after_uid":0,"epoch":3,"x":{}})");
  EXPECT_EQ(t.uidvalidity, 7u);
  EXPECT_EQ(t.epoch, 3u);
}

TEST(TaskCodec, MalformedTasksThrowClearErrors) {
  struct Case {
    const char* json;
    const char* says;
  };
  const Case cases[] = {
      {"", "not JSON"},
      {"{\"mailbox_id\":", "not JSON"},
      {"[1,2]", "not a JSON object"},
      {R"({"folder":"INBOX","uidvalidity":1,"after_uid":1,"epoch":1})", "missing \"mailbox_id\""},
      {R"({"mailbox_id":"m","uidvalidity":1,"after_uid":1,"epoch":1})", "missing \"folder\""},
      {R"({"mailbox_id":"m","folder":"I","after_uid":1,"epoch":1})", "missing \"uidvalidity\""},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":1,"epoch":1})", "missing \"after_uid\""},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":1,"after_uid":1})", "missing \"epoch\""},
      {R"({"mailbox_id":5,"folder":"I","uidvalidity":1,"after_uid":1,"epoch":1})",
       "\"mailbox_id\" is not a string"},
      {R"({"mailbox_id":"","folder":"I","uidvalidity":1,"after_uid":1,"epoch":1})",
       "empty \"mailbox_id\""},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":"1","after_uid":1,"epoch":1})",
       "\"uidvalidity\" is not a number"},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":-1,"after_uid":1,"epoch":1})",
       "\"uidvalidity\" is negative"},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":4294967296,"after_uid":1,"epoch":1})",
       "\"uidvalidity\" is out of range"},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":1,"after_uid":1.5,"epoch":1})",
       "\"after_uid\" is not a non-negative integer"},
      {R"({"mailbox_id":"m","folder":"I","uidvalidity":1,"after_uid":1,"epoch":1e30})",
       "\"epoch\" is not a non-negative integer"},
  };
  for (const auto& c : cases) {
    try {
      decode_task(c.json);
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const TaskCodecError& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos)
          << c.json << " -> " << e.what();
    }
  }
}

TEST(TaskCodec, MalformedResultsThrow) {
  for (const char* json :
       {"nope", "{}", R"({"status":"finished"})", R"({"status":1})",
        R"({"status":"done","last_uid":-3})", R"({"status":"done","connection_failed":"yes"})",
        R"({"status":"done","error":false})"}) {
    EXPECT_THROW(decode_result(json), TaskCodecError) << json;
  }
}
