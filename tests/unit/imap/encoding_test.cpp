// Tests for modified UTF-7, quoting, base64 and IMAP dates.
#include "imap/encoding.hpp"

#include <gtest/gtest.h>

#include "imap/client.hpp"

namespace el::imap {
namespace {

TEST(ModifiedUtf7, Rfc3501Examples) {
  EXPECT_EQ(
      encode_mutf7("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"),
      "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  EXPECT_EQ(encode_mutf7("A&B"), "A&-B");
  EXPECT_EQ(encode_mutf7("Entw\xc3\xbcrfe"), "Entw&APw-rfe");
  EXPECT_EQ(encode_mutf7("INBOX"), "INBOX");
  EXPECT_EQ(encode_mutf7("\xf0\x9f\x93\xa7"), "&2D3c5w-");  // U+1F4E7, a surrogate pair
  EXPECT_FALSE(encode_mutf7("\xff"));
  EXPECT_FALSE(encode_mutf7("\xc3"));
  for (const char* s : {"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "A&-B", "Entw&APw-rfe", "&2D3c5w-"}) {
    auto d = decode_mutf7(s);
    ASSERT_TRUE(d) << s;
    EXPECT_EQ(encode_mutf7(*d), s);
  }
  EXPECT_FALSE(decode_mutf7("&Jjo!"));
  EXPECT_FALSE(decode_mutf7("&-&"));
}

TEST(Quoting, Astrings) {
  EXPECT_FALSE(needs_literal("simple"));
  EXPECT_TRUE(needs_literal("a\r\nb"));
  EXPECT_TRUE(needs_literal("\xc3\xa9"));
  EXPECT_EQ(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(quote(""), "\"\"");
}

TEST(Base64, Encodes) {
  EXPECT_EQ(base64_encode(std::string("\0alice\0secret", 13)), "AGFsaWNlAHNlY3JldA==");
  EXPECT_EQ(base64_encode("ab"), "YWI=");
  EXPECT_EQ(base64_encode("abc"), "YWJj");
  EXPECT_EQ(base64_encode(""), "");
}

TEST(InternalDate, Parses) {
  using namespace std::chrono;
  auto t = parse_internal_date("17-Jul-1996 02:44:25 -0700");
  ASSERT_TRUE(t);
  EXPECT_EQ(duration_cast<seconds>(t->time_since_epoch()).count(), 837596665);
  auto u = parse_internal_date(" 2-Jun-2024 08:00:00 +0200");
  ASSERT_TRUE(u);
  EXPECT_EQ(duration_cast<seconds>(u->time_since_epoch()).count(), 1717308000);
  EXPECT_FALSE(parse_internal_date(""));
  EXPECT_FALSE(parse_internal_date("17-Foo-1996 02:44:25 -0700"));
  EXPECT_FALSE(parse_internal_date("32-Jul-1996 02:44:25 -0700"));
  EXPECT_FALSE(parse_internal_date("17-Jul-1996 02:44:25"));
  EXPECT_FALSE(parse_internal_date("17-Jul-1996 02:44:25 -0700 x"));
}

TEST(SearchDate, Formats) {
  using namespace std::chrono;
  EXPECT_EQ(format_search_date(system_clock::time_point(seconds(1706745600))), "1-Feb-2024");
  EXPECT_EQ(format_search_date(system_clock::time_point(seconds(837596665))), "17-Jul-1996");
}

}  // namespace
}  // namespace el::imap
