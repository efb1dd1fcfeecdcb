#include "core/types.hpp"

#include <gtest/gtest.h>

#include <sstream>

#include "core/event.hpp"

using namespace el::core;

TEST(EventId, StableAndDistinct) {
  EXPECT_EQ(message_event_id("mb1", "INBOX", 7, 42), message_event_id("mb1", "INBOX", 7, 42));
  EXPECT_EQ(message_event_id("mb1", "INBOX", 7, 42).size(), 32u);
  EXPECT_NE(message_event_id("mb1", "INBOX", 7, 42), message_event_id("mb1", "INBOX", 7, 43));
  EXPECT_NE(message_event_id("mb1", "INBOX", 7, 42), message_event_id("mb1", "INBOX", 8, 42));
  EXPECT_NE(message_event_id("mb1", "INBOX", 7, 42), message_event_id("mb1", "Sent", 7, 42));
  // Field boundaries matter: no collision by moving characters between fields.
  EXPECT_NE(message_event_id("ab", "c", 1, 1), message_event_id("a", "bc", 1, 1));
  EXPECT_NE(random_event_id(), random_event_id());
}

TEST(Rfc3339, RoundTrip) {
  auto t = parse_rfc3339("2024-02-29T13:45:07.250Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_rfc3339(*t), "2024-02-29T13:45:07.250Z");
  auto off = parse_rfc3339("2024-02-29T15:45:07+02:00");
  ASSERT_TRUE(off);
  EXPECT_EQ(format_rfc3339(*off), "2024-02-29T13:45:07.000Z");
  auto epoch = parse_rfc3339("1970-01-01T00:00:00Z");
  ASSERT_TRUE(epoch);
  EXPECT_EQ(epoch->time_since_epoch().count(), 0);
}

TEST(Rfc3339, RejectsMalformed) {
  for (const char* bad : {"", "2024-02-29", "2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z",
                          "2024-02-29T24:00:00Z", "2024-02-29T13:45:07", "2024-02-29T13:45:07.Z",
                          "2024-02-29T13:45:07Zjunk", "2024-02-29T13:45:07+2:00", "yesterday"}) {
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  }
}

TEST(Secret, NeverPrints) {
  Secret s("hunter2");
  std::ostringstream os;
  os << s;
  EXPECT_EQ(os.str(), "***");
  EXPECT_EQ(s.reveal(), "hunter2");
}

TEST(Event, SerializesAllFields) {
  Event e{"id1", "message.new", "mb", "2024-01-01T00:00:00.000Z", {{"uid", 5}}};
  EXPECT_EQ(
      serialize(e),
      R"({"id":"id1","type":"message.new","mailbox_id":"mb","created_at":"2024-01-01T00:00:00.000Z","data":{"uid":5}})");
}
