// Tests for the incremental IMAP response parser: fragmentation, literals, limits, bad input.
#include "imap/parser.hpp"

#include <gtest/gtest.h>

#include <random>

#include "support/replay_transport.hpp"

namespace el::imap {
namespace {

namespace test = el::testing;

// A canonical rendering of a response, to compare parses of the same bytes.
void render(const Value& v, std::string& out) {
  switch (v.type()) {
    case ValueType::atom:
      out += "A:" + std::string(v.text());
      break;
    case ValueType::number:
      out += "N:" + std::to_string(v.number());
      break;
    case ValueType::quoted:
      out += "Q:" + std::string(v.text());
      break;
    case ValueType::literal:
      out += "L" + std::to_string(v.text().size()) + ":" + std::string(v.text());
      break;
    case ValueType::nil:
      out += "NIL";
      break;
    case ValueType::list: {
      out += "(";
      bool first = true;
      for (Value c : v) {
        if (!first) out += " ";
        first = false;
        render(c, out);
      }
      out += ")";
    }
  }
}

std::string render(const Response& r) {
  std::string out = std::to_string(static_cast<int>(r.kind())) + "|" + std::string(r.tag()) + "|" +
                    (r.has_number() ? std::to_string(r.number()) : "-") + "|" +
                    std::string(r.name()) + "|" + std::to_string(static_cast<int>(r.status())) +
                    "|[" + std::string(r.code()) + "|" + std::string(r.code_text()) + "|";
  for (Value v : r.code_args()) render(v, out += " ");
  out += "]|" + std::string(r.text()) + "|";
  for (Value v : r.data()) render(v, out += " ");
  return out;
}

struct Parsed {
  std::vector<std::string> responses;
  std::vector<std::size_t> ends;  // stream offset where each response ended
  bool error = false;
};

// Feeds `bytes` in pieces whose sizes come from `next_size`.
template <class F>
Parsed feed(std::string_view bytes, F next_size, ParserLimits limits = {}) {
  Parsed p;
  ResponseParser parser(limits);
  Response r;
  std::size_t offset = 0;
  while (offset < bytes.size()) {
    std::string_view piece = bytes.substr(offset, next_size());
    while (!piece.empty()) {
      std::size_t used = 0;
      auto res = parser.parse(piece, used, r);
      EXPECT_LE(used, piece.size());
      piece.remove_prefix(used);
      offset += used;
      if (res == ResponseParser::Result::error) {
        p.error = true;
        return p;
      }
      if (res == ResponseParser::Result::done) {
        p.responses.push_back(render(r));
        p.ends.push_back(offset);
      } else {
        EXPECT_TRUE(piece.empty());
      }
    }
  }
  EXPECT_TRUE(parser.idle());
  return p;
}

Response parse_one(std::string_view s) {
  Response r;
  ResponseParser parser;
  std::size_t used = 0;
  auto res = parser.parse(s, used, r);
  EXPECT_EQ(res, ResponseParser::Result::done) << s << parser.error();
  EXPECT_EQ(used, s.size());
  return r;
}

std::string corpus() {
  std::string all;
  for (const char* f : {"dovecot/session.txt", "dovecot/fetch.txt", "dovecot/select_utf7.txt",
                        "dovecot/idle_exists.txt", "dovecot/login_login.txt"}) {
    all += test::server_bytes(test::load_script(std::string("imap/") + f));
  }
  all +=
      "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
      "* LIST (\\Noselect) NIL {5}\r\na\"b)c\r\n"
      "* OK [ALERT] text with ] and ( unbalanced [ brackets\r\n"
      "* 9 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {4}\r\nab\r\n BINARY[1]<0> ~{2}\r\nxy)\r\n"
      "+ \r\n+\r\n* ID (\"name\" \"Dovecot\" \"esc\" \"a\\\"b\\\\c\")\r\n";
  return all;
}

TEST(ResponseParser, SameResultsWholeByteByByteAndFragments) {
  std::string all = corpus();
  Parsed whole = feed(all, [&] { return all.size(); });
  ASSERT_FALSE(whole.error);
  EXPECT_EQ(whole.responses.size(), 60u);
  Parsed bytes = feed(all, [] { return std::size_t{1}; });
  EXPECT_EQ(bytes.responses, whole.responses);
  EXPECT_EQ(bytes.ends, whole.ends);
  std::mt19937 rng(1234);
  for (int round = 0; round < 50; ++round) {
    std::uniform_int_distribution<std::size_t> size(1, 1 + round * 7);
    Parsed frag = feed(all, [&] { return size(rng); });
    ASSERT_EQ(frag.responses, whole.responses) << "round " << round;
    ASSERT_EQ(frag.ends, whole.ends);
  }
}

TEST(ResponseParser, Tagged) {
  Response r = parse_one("A1 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Logged in\r\n");
  EXPECT_EQ(r.kind(), ResponseKind::tagged);
  EXPECT_EQ(r.tag(), "A1");
  EXPECT_EQ(r.status(), Status::ok);
  EXPECT_TRUE(r.code_is("capability"));
  ASSERT_EQ(r.code_args().size(), 2u);
  EXPECT_EQ(r.code_args()[1].text(), "AUTH=PLAIN");
  EXPECT_EQ(r.text(), "Logged in");
  r = parse_one("A22 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(r.status(), Status::no);
  EXPECT_EQ(r.code(), "AUTHENTICATIONFAILED");
  EXPECT_TRUE(r.code_args().empty());
  r = parse_one("A3 BAD\r\n");
  EXPECT_EQ(r.status(), Status::bad);
  EXPECT_EQ(r.text(), "");
}

TEST(ResponseParser, UntaggedStatusAndData) {
  Response r = parse_one("* 5 EXISTS\r\n");
  EXPECT_TRUE(r.has_number());
  EXPECT_EQ(r.number(), 5u);
  EXPECT_TRUE(r.name_is("exists"));
  r = parse_one("* OK [UIDVALIDITY 3857529045] UIDs valid\r\n");
  EXPECT_EQ(r.status(), Status::ok);
  ASSERT_EQ(r.code_args().size(), 1u);
  EXPECT_EQ(r.code_args()[0].number(), 3857529045u);
  r = parse_one("* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n");
  ASSERT_TRUE(r.code_args()[0].is_list());
  EXPECT_EQ(r.code_args()[0][1].text(), "\\*");
  r = parse_one("* SEARCH 1 2 3\r\n");
  ASSERT_EQ(r.data().size(), 3u);
  EXPECT_EQ(r.data()[2].number(), 3u);
  r = parse_one("* SEARCH\r\n");
  EXPECT_TRUE(r.data().empty());
  r = parse_one("* BYE Autologout; idle for too long\r\n");
  EXPECT_EQ(r.status(), Status::bye);
  EXPECT_EQ(r.text(), "Autologout; idle for too long");
  r = parse_one("* FLAGS (\\Answered \\Seen $Forwarded)\r\n");
  EXPECT_EQ(r.data()[0].size(), 3u);
  r = parse_one("* LIST (\\HasNoChildren) \".\" \"INBOX.Sent\"\r\n");
  EXPECT_EQ(r.data()[1].type(), ValueType::quoted);
  EXPECT_EQ(r.data()[2].text(), "INBOX.Sent");
  r = parse_one("* LIST (\\Noselect) NIL \"\"\r\n");
  EXPECT_TRUE(r.data()[1].is_nil());
  r = parse_one("* CAPABILITY IMAP4rev1 IDLE\r\n");
  EXPECT_EQ(r.data()[1].text(), "IDLE");
  r = parse_one("+ idling\r\n");
  EXPECT_EQ(r.kind(), ResponseKind::continuation);
  EXPECT_EQ(r.text(), "idling");
  r = parse_one("+\r\n");
  EXPECT_EQ(r.text(), "");
}

TEST(ResponseParser, FreeTextMayHoldAnything) {
  Response r = parse_one("* OK [ALERT] Disk ( full ] soon [ \"x\r\n");
  EXPECT_EQ(r.code(), "ALERT");
  EXPECT_EQ(r.text(), "Disk ( full ] soon [ \"x");
  r = parse_one("* OK [unterminated code text\r\n");
  EXPECT_EQ(r.code(), "");
  EXPECT_EQ(r.text(), "[unterminated code text");
  r = parse_one("* NO [REFERRAL imap://a;AUTH=*@b/INBOX] Try there\r\n");
  EXPECT_EQ(r.code(), "REFERRAL");
  EXPECT_EQ(r.code_text(), "imap://a;AUTH=*@b/INBOX");
  EXPECT_EQ(r.text(), "Try there");
}

TEST(ResponseParser, FetchWithLiteral) {
  Response r = parse_one(
      "* 12 FETCH (UID 9 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
      "RFC822.SIZE 12 BODY[] {12}\r\nHello\r\nWorld)\r\n");
  EXPECT_EQ(r.number(), 12u);
  Value items = r.data()[0];
  ASSERT_EQ(items.size(), 10u);
  EXPECT_EQ(items[1].number(), 9u);
  EXPECT_EQ(items[3][0].text(), "\\Seen");
  EXPECT_EQ(items[5].text(), "17-Jul-1996 02:44:25 -0700");
  EXPECT_EQ(items[8].text(), "BODY[]");
  EXPECT_EQ(items[9].type(), ValueType::literal);
  EXPECT_EQ(items[9].text(), "Hello\r\nWorld");
}

TEST(ResponseParser, QuotedEscapesAndSections) {
  Response r = parse_one("* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)]<0> \"a\\\"b\\\\c\")\r\n");
  Value items = r.data()[0];
  EXPECT_EQ(items[0].text(), "BODY[HEADER.FIELDS (SUBJECT)]<0>");
  EXPECT_EQ(items[1].text(), "a\"b\\c");
}

TEST(ResponseParser, LiteralSplitAcrossReads) {
  ResponseParser parser;
  Response r;
  std::size_t used = 0;
  std::string_view a = "* 1 FETCH (BODY[] {10}\r\n01234";
  EXPECT_EQ(parser.parse(a, used, r), ResponseParser::Result::need_more);
  EXPECT_EQ(used, a.size());
  EXPECT_EQ(parser.literal_remaining(), 5u);
  std::string_view b = "56789)\r\n* 2 EXISTS\r\n";
  EXPECT_EQ(parser.parse(b, used, r), ResponseParser::Result::done);
  EXPECT_EQ(used, 8u);
  EXPECT_EQ(r.data()[0][1].text(), "0123456789");
  b.remove_prefix(used);
  EXPECT_EQ(parser.parse(b, used, r), ResponseParser::Result::done);
  EXPECT_EQ(r.number(), 2u);
  // A literal whose bytes contain CRLF and what looks like another literal marker.
  Response s = parse_one("* 3 FETCH (BODY[] {9}\r\nx {2}\r\nyy UID 4)\r\n");
  EXPECT_EQ(s.data()[0][1].text(), "x {2}\r\nyy");
  EXPECT_EQ(s.data()[0][3].number(), 4u);
}

TEST(ResponseParser, LiteralOverLimitIsRejectedWithoutAllocating) {
  ResponseParser parser(ParserLimits{.max_literal = 1000});
  Response r;
  std::size_t used = 0;
  EXPECT_EQ(parser.parse("* 1 FETCH (BODY[] {1001}\r\n", used, r), ResponseParser::Result::error);
  EXPECT_NE(parser.error().find("limit"), std::string::npos);
  ResponseParser huge;
  EXPECT_EQ(huge.parse("* 1 FETCH (BODY[] {99999999999999}\r\n", used, r),
            ResponseParser::Result::error);
  EXPECT_EQ(huge.parse("* 1 FETCH (BODY[] {999999999999999999999999}\r\n", used, r),
            ResponseParser::Result::error);
  ResponseParser ok(ParserLimits{.max_literal = 1000});
  EXPECT_EQ(ok.parse("* 1 FETCH (BODY[] {1000}\r\n", used, r), ResponseParser::Result::need_more);
}

TEST(ResponseParser, LongLineIsRejected) {
  ResponseParser parser(ParserLimits{.max_line = 100});
  Response r;
  std::size_t used = 0;
  std::string line(101, 'a');
  EXPECT_EQ(parser.parse(line, used, r), ResponseParser::Result::error);
}

TEST(ResponseParser, MalformedInputIsAnError) {
  const char* bad[] = {
      "\r\n",
      "A1\r\n",
      "A1 EXISTS\r\n",
      "* \r\n",
      "*5 EXISTS\r\n",
      "* 99999999999 EXISTS\r\n",
      "* 1 FETCH (UID 1\r\n",
      "* 1 FETCH (UID 1))\r\n",
      "* 1 FETCH \"unterminated\r\n",
      "* 1 FETCH (BODY[ 1)\r\n",
      "* X {3}x\r\n",
      "* 1 FETCH (A ~{2} B)\r\n",
  };
  for (const char* s : bad) {
    ResponseParser parser;
    Response r;
    std::size_t used = 0;
    EXPECT_EQ(parser.parse(s, used, r), ResponseParser::Result::error) << s;
    EXPECT_FALSE(parser.error().empty());
    // Once failed, it stays failed until reset().
    EXPECT_EQ(parser.parse("* 1 EXISTS\r\n", used, r), ResponseParser::Result::error);
    parser.reset();
    EXPECT_EQ(parser.parse("* 1 EXISTS\r\n", used, r), ResponseParser::Result::done);
  }
}

TEST(ResponseParser, DeepNestingIsAnError) {
  std::string s = "* X " + std::string(100, '(') + std::string(100, ')') + "\r\n";
  ResponseParser parser;
  Response r;
  std::size_t used = 0;
  EXPECT_EQ(parser.parse(s, used, r), ResponseParser::Result::error);
}

TEST(ResponseParser, RandomGarbageNeverCrashes) {
  std::mt19937 rng(42);
  const std::string alphabet = "* ()[]{}\"\\+~0123456789ABCNIL\r\n";
  std::string base = corpus();
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    if (i % 2) {
      s = base.substr(rng() % base.size(), 300);
      for (int k = 0; k < 5; ++k) s[rng() % s.size()] = alphabet[rng() % alphabet.size()];
    } else {
      std::size_t n = rng() % 200;
      for (std::size_t k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    }
    ResponseParser parser(ParserLimits{.max_literal = 4096, .max_line = 4096});
    Response r;
    std::string_view in = s;
    while (!in.empty()) {
      std::size_t used = 0;
      auto res = parser.parse(in.substr(0, 1 + rng() % 16), used, r);
      if (res == ResponseParser::Result::error) break;
      if (res == ResponseParser::Result::done) (void)render(r);
      in.remove_prefix(used);
    }
  }
}

TEST(ResponseParser, ShrinkReleasesBigBuffers) {
  ResponseParser parser;
  Response r;
  std::string big = "* 1 FETCH (BODY[] {100000}\r\n" + std::string(100000, 'x') + ")\r\n";
  std::size_t used = 0;
  ASSERT_EQ(parser.parse(big, used, r), ResponseParser::Result::done);
  EXPECT_GE(r.capacity(), 100000u);
  r.shrink(16384);
  parser.shrink(16384);
  EXPECT_LT(r.capacity(), 16384u);
  ASSERT_EQ(parser.parse("* 2 EXISTS\r\n", used, r), ResponseParser::Result::done);
  EXPECT_LT(r.capacity(), 16384u);
}

}  // namespace
}  // namespace el::imap
