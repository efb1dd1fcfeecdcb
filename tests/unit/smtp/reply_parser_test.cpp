// ReplyParser fed whole, at every split point and byte by byte; limits and malformed input.
#include "smtp/reply_parser.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace el::smtp {
namespace {

struct Parsed {
  std::vector<Reply> replies;
  bool error = false;
  std::string message;
  std::size_t consumed = 0;  // total bytes used
};

// Feeds `input` in pieces of `step` bytes (0: all at once), collecting every reply.
Parsed feed(std::string_view input, std::size_t step = 0, ReplyParserLimits limits = {}) {
  ReplyParser p(limits);
  Parsed out;
  std::size_t pos = 0;
  while (pos < input.size()) {
    std::size_t n = step == 0 ? input.size() - pos : std::min(step, input.size() - pos);
    std::string_view piece = input.substr(pos, n);
    while (!piece.empty()) {
      std::size_t used = 0;
      Reply r;
      auto res = p.parse(piece, used, r);
      EXPECT_LE(used, piece.size());
      out.consumed += used;
      piece.remove_prefix(used);
      if (res == ReplyParser::Result::error) {
        out.error = true;
        out.message = p.error();
        return out;
      }
      if (res == ReplyParser::Result::done) {
        out.replies.push_back(std::move(r));
      } else {
        EXPECT_TRUE(piece.empty()) << "need_more must consume everything";
      }
    }
    pos += n;
  }
  return out;
}

void expect_same(const Parsed& a, const Parsed& b) {
  ASSERT_EQ(a.replies.size(), b.replies.size());
  EXPECT_EQ(a.error, b.error);
  for (std::size_t i = 0; i < a.replies.size(); ++i) {
    EXPECT_EQ(a.replies[i].code, b.replies[i].code);
    EXPECT_EQ(a.replies[i].enhanced, b.replies[i].enhanced);
    EXPECT_EQ(a.replies[i].text, b.replies[i].text);
  }
}

const char kEhlo[] =
    "250-mail.example.com Hello client [192.0.2.1]\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 10240000\r\n"
    "250-AUTH PLAIN LOGIN XOAUTH2\r\n"
    "250-ENHANCEDSTATUSCODES\r\n"
    "250 8BITMIME\r\n";

TEST(ReplyParser, SingleLine) {
  ReplyParser p;
  Reply r;
  std::size_t used = 0;
  std::string_view in = "220 mail.example.com ESMTP Postfix\r\n";
  EXPECT_EQ(p.parse(in, used, r), ReplyParser::Result::done);
  EXPECT_EQ(used, in.size());
  EXPECT_EQ(r.code, 220);
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.text, "mail.example.com ESMTP Postfix");
  EXPECT_TRUE(p.idle());
  EXPECT_EQ(r.str(), "220 mail.example.com ESMTP Postfix");
}

TEST(ReplyParser, MultiLine) {
  auto out = feed(kEhlo);
  ASSERT_FALSE(out.error) << out.message;
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].code, 250);
  EXPECT_EQ(out.replies[0].text,
            "mail.example.com Hello client [192.0.2.1]\nPIPELINING\nSIZE 10240000\n"
            "AUTH PLAIN LOGIN XOAUTH2\nENHANCEDSTATUSCODES\n8BITMIME");
  EXPECT_EQ(out.consumed, sizeof kEhlo - 1);
}

TEST(ReplyParser, EverySplitPointAndByteByByte) {
  const std::string input = std::string(kEhlo) +
                            "250-2.1.0 Sender ok\r\n250 2.1.0 really\r\n"
                            "354 End data with <CR><LF>.<CR><LF>\r\n"
                            "250 2.0.0 Ok: queued as 4F1A2B3C\r\n";
  auto whole = feed(input);
  ASSERT_EQ(whole.replies.size(), 4u);
  for (std::size_t step = 1; step <= 9; ++step) expect_same(whole, feed(input, step));
  // Two pieces, split at every byte.
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    ReplyParser p;
    std::vector<Reply> got;
    for (std::string_view piece :
         {std::string_view(input).substr(0, cut), std::string_view(input).substr(cut)}) {
      while (!piece.empty()) {
        std::size_t used = 0;
        Reply r;
        auto res = p.parse(piece, used, r);
        ASSERT_NE(res, ReplyParser::Result::error) << "cut at " << cut;
        piece.remove_prefix(used);
        if (res == ReplyParser::Result::done) got.push_back(r);
      }
    }
    ASSERT_EQ(got.size(), 4u) << "cut at " << cut;
    EXPECT_EQ(got[1].text, "Sender ok\nreally");
    EXPECT_EQ(got[3].text, "Ok: queued as 4F1A2B3C");
  }
}

TEST(ReplyParser, StopsAfterOneReply) {
  ReplyParser p;
  Reply r;
  std::size_t used = 0;
  std::string_view in = "250 first\r\n251 second\r\n";
  EXPECT_EQ(p.parse(in, used, r), ReplyParser::Result::done);
  EXPECT_EQ(used, 11u);
  EXPECT_EQ(r.text, "first");
  in.remove_prefix(used);
  EXPECT_EQ(p.parse(in, used, r), ReplyParser::Result::done);
  EXPECT_EQ(used, in.size());
  EXPECT_EQ(r.code, 251);
}

TEST(ReplyParser, EnhancedCodes) {
  auto out = feed(
      "550-5.1.1 <bob@example.com>: Recipient address rejected:\r\n"
      "550 5.1.1 User unknown in virtual mailbox table\r\n"
      "250 2.0.0\r\n"
      "550 2.0.0 class differs, kept as text\r\n"
      "250 2.1.5.x not a code\r\n"
      "452 4.5.3 Too many recipients\r\n");
  ASSERT_FALSE(out.error) << out.message;
  ASSERT_EQ(out.replies.size(), 5u);
  EXPECT_EQ(out.replies[0].code, 550);
  EXPECT_EQ(out.replies[0].enhanced, "5.1.1");
  EXPECT_EQ(
      out.replies[0].text,
      "<bob@example.com>: Recipient address rejected:\nUser unknown in virtual mailbox table");
  EXPECT_EQ(out.replies[0].str(),
            "550 5.1.1 <bob@example.com>: Recipient address rejected:\nUser unknown in virtual "
            "mailbox table");
  EXPECT_EQ(out.replies[1].enhanced, "2.0.0");
  EXPECT_EQ(out.replies[1].text, "");
  EXPECT_EQ(out.replies[2].enhanced, "");
  EXPECT_EQ(out.replies[2].text, "2.0.0 class differs, kept as text");
  EXPECT_EQ(out.replies[3].enhanced, "");
  EXPECT_EQ(out.replies[4].enhanced, "4.5.3");
  EXPECT_EQ(out.replies[4].text, "Too many recipients");
}

TEST(ReplyParser, CodeAloneAndBareLf) {
  auto out = feed("250\r\n250-a\n250 b\n");
  ASSERT_FALSE(out.error) << out.message;
  ASSERT_EQ(out.replies.size(), 2u);
  EXPECT_EQ(out.replies[0].code, 250);
  EXPECT_EQ(out.replies[0].text, "");
  EXPECT_EQ(out.replies[1].text, "a\nb");
}

TEST(ReplyParser, MalformedLines) {
  for (const char* bad : {"25 short\r\n", "abc def\r\n", "250x\r\n", "650 bad class\r\n", "\r\n",
                          "250-a\r\n251 b\r\n", "099 x\r\n"}) {
    for (std::size_t step : {std::size_t{0}, std::size_t{1}}) {
      auto out = feed(bad, step);
      EXPECT_TRUE(out.error) << bad;
      EXPECT_TRUE(out.replies.empty()) << bad;
      EXPECT_FALSE(out.message.empty());
    }
  }
}

TEST(ReplyParser, LineLengthLimit) {
  ReplyParserLimits limits{.max_line = 64, .max_lines = 100};
  std::string ok = "250 " + std::string(60, 'x') + "\r\n";  // exactly 64
  auto out = feed(ok, 1, limits);
  EXPECT_FALSE(out.error) << out.message;
  EXPECT_EQ(out.replies.size(), 1u);

  std::string too_long = "250 " + std::string(61, 'x') + "\r\n";
  for (std::size_t step : {std::size_t{0}, std::size_t{1}, std::size_t{7}}) {
    out = feed(too_long, step, limits);
    EXPECT_TRUE(out.error) << "step " << step;
  }
  // Without a line end at all: refused once the limit is passed, not buffered forever.
  out = feed(std::string(1000, '2'), 10, limits);
  EXPECT_TRUE(out.error);
  EXPECT_LE(out.consumed, 80u);

  // The default: 4 KiB.
  out = feed("250 " + std::string(5000, 'y') + "\r\n", 100);
  EXPECT_TRUE(out.error);
  EXPECT_NE(out.message.find("4096"), std::string::npos) << out.message;
}

TEST(ReplyParser, LineCountLimit) {
  std::string many;
  for (int i = 0; i < 100; ++i) many += "250-line\r\n";
  auto out = feed(many + "250 end\r\n");
  EXPECT_TRUE(out.error);
  out = feed(many.substr(10) + "250 end\r\n");  // 100 lines in all
  EXPECT_FALSE(out.error) << out.message;
  ASSERT_EQ(out.replies.size(), 1u);
}

TEST(ReplyParser, ErrorIsStickyUntilReset) {
  ReplyParser p;
  Reply r;
  std::size_t used = 0;
  EXPECT_EQ(p.parse("xyz\r\n", used, r), ReplyParser::Result::error);
  EXPECT_EQ(p.parse("250 ok\r\n", used, r), ReplyParser::Result::error);
  EXPECT_FALSE(p.idle());
  p.reset();
  EXPECT_TRUE(p.idle());
  EXPECT_EQ(p.parse("250 ok\r\n", used, r), ReplyParser::Result::done);
}

TEST(ReplyParser, IdleOnlyBetweenReplies) {
  ReplyParser p;
  Reply r;
  std::size_t used = 0;
  EXPECT_EQ(p.parse("250-a\r\n", used, r), ReplyParser::Result::need_more);
  EXPECT_FALSE(p.idle());
  EXPECT_EQ(p.parse("250 b", used, r), ReplyParser::Result::need_more);
  EXPECT_FALSE(p.idle());
  EXPECT_EQ(p.parse("\r\n", used, r), ReplyParser::Result::done);
  EXPECT_TRUE(p.idle());
}

}  // namespace
}  // namespace el::smtp
