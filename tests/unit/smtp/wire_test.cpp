// DATA encoding (dot-stuffing, CRLF normalization, chunking), base64 and queue-id parsing.
#include "smtp/wire.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace el::smtp {
namespace {

// Size as the server counts it: without the terminator and the stuffing dots.
std::uint64_t unstuffed_size(const std::string& wire) {
  std::string body = wire.substr(0, wire.size() - 3);
  std::uint64_t dots = 0;
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '.' && (i == 0 || body[i - 1] == '\n')) ++dots;
  }
  return body.size() - dots;
}

TEST(DataEncoder, DotStuffingAndLineEnds) {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"", ".\r\n"},
      {".", "..\r\n.\r\n"},
      {"a\r\n", "a\r\n.\r\n"},
      {"a", "a\r\n.\r\n"},
      {"a\n.b\r\n..c\rd", "a\r\n..b\r\n...c\r\nd\r\n.\r\n"},
      {".\r\n", "..\r\n.\r\n"},
      {"x\r\n.\r\ny", "x\r\n..\r\ny\r\n.\r\n"},
      {"\n\n", "\r\n\r\n.\r\n"},
      {"a.b\n", "a.b\r\n.\r\n"},
      {"x\n.\ny", "x\r\n..\r\ny\r\n.\r\n"},  // SMTP smuggling attempt: "\n.\n" stays data
      {"x\r\n.\ry", "x\r\n..\r\ny\r\n.\r\n"},
  };
  for (const auto& c : cases) {
    std::string wire = encode_data(c.in);
    EXPECT_EQ(wire, c.out) << "input: " << c.in;
    EXPECT_EQ(measure_data(c.in).size, unstuffed_size(wire)) << "input: " << c.in;
  }
}

TEST(DataEncoder, ChunksOfAnySizeGiveTheSameBytes) {
  std::string msg = "Subject: t\n\n.line\r\n..two\nthree\r.four\r\n";
  for (int i = 0; i < 50; ++i) msg += "." + std::string(static_cast<std::size_t>(i), 'x') + "\n";
  const std::string whole = encode_data(msg);
  for (std::size_t max = 1; max < 40; ++max) {
    DataEncoder enc(msg);
    std::string out;
    int calls = 0;
    while (!enc.done()) {
      std::string chunk;
      enc.next(chunk, max);
      EXPECT_FALSE(chunk.empty());
      out += chunk;
      ASSERT_LT(++calls, 100000);
    }
    EXPECT_EQ(out, whole) << "max " << max;
  }
}

TEST(DataEncoder, EightBit) {
  EXPECT_FALSE(measure_data("plain ascii\r\n").eight_bit);
  EXPECT_TRUE(measure_data("Gr\xc3\xbc\xc3\x9f\x65\r\n").eight_bit);
}

TEST(Base64, RoundTrip) {
  const std::vector<std::string> inputs = {"", "a", "ab", "abc", "abcd", std::string("\0u\0p", 4)};
  for (const auto& s : inputs) {
    auto enc = base64_encode(s);
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec) << enc;
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(base64_encode(std::string("\0alice\0secret", 13)), "AGFsaWNlAHNlY3JldA==");
  EXPECT_FALSE(base64_decode("abc"));
  EXPECT_FALSE(base64_decode("ab!="));
}

TEST(QueueId, CommonForms) {
  struct Case {
    const char* text;
    const char* id;
  };
  const Case cases[] = {
      {"Ok: queued as 4F1A2B3C", "4F1A2B3C"},  // Postfix
      {"Ok: queued as 4WQ3Zx0Hq7z9sR1.", "4WQ3Zx0Hq7z9sR1"},
      {"<20240611.abc123@mx.example.com> Message accepted for delivery",
       "20240611.abc123@mx.example.com"},
      {"x9K3abc123 Message accepted for delivery", "x9K3abc123"},  // Sendmail
      {"OK id=1qXyZ-0001ab-Cd", "1qXyZ-0001ab-Cd"},                // Exim
      {"Ok 1234abcd", "1234abcd"},
      {"Ok: 1234abcd", "1234abcd"},
      {"OK  1718035200 d9443c01a7336-1f6f3bb2sm12345pla.123 - gsmtp",  // Gmail
       "d9443c01a7336-1f6f3bb2sm12345pla.123"},
      {"<DB6PR07MB1234.eurprd07.prod.outlook.com> [InternalId=9, Hostname=DB6] Queued mail for "
       "delivery",
       "DB6PR07MB1234.eurprd07.prod.outlook.com"},  // Microsoft 365
      {"Message queued as 1A2B3C4D\nsecond line", "1A2B3C4D"},
      {"Ok", ""},
      {"OK Message accepted", ""},
      {"Requested mail action okay, completed", ""},
      {"", ""},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_queue_id(c.text), c.id) << c.text;
}

}  // namespace
}  // namespace el::smtp
