// el::mime::compose: structure and encodings checked on the raw bytes, content by parsing the
// bytes back with el::mime::to_json.
#include "mime/compose.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mime/message.hpp"

namespace {

namespace json = boost::json;
using el::mime::Address;
using el::mime::compose;
using el::mime::ComposeError;
using el::mime::OutgoingAttachment;
using el::mime::OutgoingMessage;
using el::mime::reserved_header;
using el::mime::valid_address;

// 2023-11-14T22:13:20Z
const auto kDate = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));

OutgoingMessage basic() {
  OutgoingMessage m;
  m.from = {"alice@example.com", "Alice"};
  m.to = {{"bob@example.org", "Bob"}};
  m.subject = "Hello";
  m.text = "Hi Bob\n";
  m.message_id = "m1@example.com";
  m.date = kDate;
  return m;
}

std::string binary_bytes() {
  std::string s;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  }
  s += "\r\n\n\r";  // line endings that 7bit or quoted-printable would have changed
  return s;
}

json::object parse(const std::string& raw) {
  el::mime::initialize();
  return el::mime::to_json(raw, el::mime::MessageMeta{});
}

std::string str(const json::value& v) { return std::string(v.as_string()); }

std::string decode_base64(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (char c : in) {
    const int v = val(c);
    if (v < 0) continue;
    buf = (buf << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xFF));
    }
  }
  return out;
}

std::vector<std::string_view> header_lines(std::string_view raw) {
  std::vector<std::string_view> lines;
  const std::size_t end = raw.find("\r\n\r\n");
  std::string_view head = raw.substr(0, end);
  std::size_t pos = 0;
  while (pos <= head.size()) {
    std::size_t nl = head.find("\r\n", pos);
    if (nl == std::string_view::npos) nl = head.size();
    lines.push_back(head.substr(pos, nl - pos));
    pos = nl + 2;
  }
  return lines;
}

// The top-level header names, in order (continuation lines skipped).
std::vector<std::string> header_names(std::string_view raw) {
  std::vector<std::string> names;
  for (std::string_view l : header_lines(raw)) {
    if (l.empty() || l.front() == ' ' || l.front() == '\t') continue;
    names.emplace_back(l.substr(0, l.find(':')));
  }
  return names;
}

std::size_t count(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

// Every line ends in CRLF, no bare CR or LF, none longer than 998 octets, 7-bit clean.
void expect_wire_safe(const std::string& raw) {
  ASSERT_FALSE(raw.empty());
  EXPECT_TRUE(raw.ends_with("\r\n"));
  std::size_t line_len = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '\r') {
      ASSERT_TRUE(i + 1 < raw.size() && raw[i + 1] == '\n') << "bare CR at " << i;
      ++i;
      line_len = 0;
    } else if (c == '\n') {
      FAIL() << "bare LF at " << i;
    } else {
      ASSERT_LT(static_cast<unsigned char>(c), 0x80) << "8-bit byte at " << i;
      ASSERT_NE(c, '\0') << "NUL at " << i;
      ++line_len;
      ASSERT_LE(line_len, 998u) << "line too long at " << i;
    }
  }
}

// The value of boundary= in each multipart Content-Type, by subtype in document order.
std::vector<std::string> multipart_types(std::string_view raw) {
  std::vector<std::string> v;
  for (std::size_t p = raw.find("Content-Type: multipart/"); p != std::string_view::npos;
       p = raw.find("Content-Type: multipart/", p + 1)) {
    const std::size_t s = p + 24;
    const std::size_t e = raw.find_first_of(";\r", s);
    v.emplace_back(raw.substr(s, e - s));
    const std::size_t b = raw.find("boundary=\"", s);
    EXPECT_NE(b, std::string_view::npos);
    const std::size_t be = raw.find('"', b + 10);
    const std::string boundary(raw.substr(b + 10, be - b - 10));
    EXPECT_GE(count(raw, "\r\n--" + boundary + "\r\n"), 1u) << boundary;
    EXPECT_EQ(count(raw, "\r\n--" + boundary + "--\r\n"), 1u) << boundary;
  }
  return v;
}

std::string top_content_type(std::string_view raw) {
  for (std::string_view l : header_lines(raw)) {
    if (l.starts_with("Content-Type: ")) return std::string(l.substr(14));
  }
  return {};
}

template <typename F>
std::string error_field(F&& f) {
  try {
    f();
  } catch (const ComposeError& e) {
    EXPECT_NE(std::string(e.what()).find(e.field()), std::string::npos) << e.what();
    return e.field();
  }
  return "(no error)";
}

TEST(Compose, RoundTripFullMessage) {
  OutgoingMessage m;
  m.from = {"jurgen@example.com", "Jürgen Müller, Esq."};
  m.to = {{"bob@example.org", "Bob \"The Builder\""}, {"carol@example.net", ""}};
  m.cc = {{"dave@example.com", "Давид"}};
  m.bcc = {{"secret@example.com", "Hidden Person"}};
  m.reply_to = {{"replies@example.com", "Replies"}};
  m.subject = "Grüße — 日本";
  m.text = "Hello — plain\nSecond line\n";
  m.html = "<p>Hello — <b>html</b> <img src=\"cid:logo@x\"></p>\n";
  m.message_id = "abc.123@example.com";
  m.in_reply_to = "<parent@example.com>";
  m.references = {"root@example.com", "<parent@example.com>"};
  m.headers = {{"X-Mailer", "email-listener"}, {"X-Note", "naïve café"}};
  m.date = kDate;
  const std::string bin = binary_bytes();
  m.attachments = {
      {"Résumé 日本語.pdf", "application/pdf", "%PDF-1.4 fake", ""},
      {"data.bin", "", bin, ""},
      {"logo.png", "image/png", "\x89PNG\r\n\x1a\n", "logo@x"},
  };
  const std::string raw = compose(m);
  expect_wire_safe(raw);

  const json::object o = parse(raw);
  EXPECT_FALSE(o.contains("parse_errors")) << json::serialize(o);
  EXPECT_EQ(str(o.at("subject")), "Grüße — 日本");
  EXPECT_EQ(str(o.at("message_id")), "abc.123@example.com");
  EXPECT_EQ(str(o.at("from").at("name")), "Jürgen Müller, Esq.");
  EXPECT_EQ(str(o.at("from").at("address")), "jurgen@example.com");
  const json::array& to = o.at("to").as_array();
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(str(to[0].at("name")), "Bob \"The Builder\"");
  EXPECT_EQ(str(to[0].at("address")), "bob@example.org");
  EXPECT_EQ(str(to[1].at("name")), "");
  EXPECT_EQ(str(to[1].at("address")), "carol@example.net");
  const json::array& cc = o.at("cc").as_array();
  ASSERT_EQ(cc.size(), 1u);
  EXPECT_EQ(str(cc[0].at("name")), "Давид");
  EXPECT_EQ(str(cc[0].at("address")), "dave@example.com");
  EXPECT_TRUE(o.at("bcc").as_array().empty());
  ASSERT_EQ(o.at("reply_to").as_array().size(), 1u);
  EXPECT_EQ(str(o.at("reply_to").as_array()[0].at("address")), "replies@example.com");
  EXPECT_EQ(str(o.at("date")), "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(str(o.at("in_reply_to")), "parent@example.com");
  EXPECT_EQ(o.at("references"), (json::array{"root@example.com", "parent@example.com"}));
  EXPECT_EQ(str(o.at("text")), m.text);
  EXPECT_EQ(str(o.at("html")), m.html);

  bool mailer = false, note = false;
  for (const auto& h : o.at("headers").as_array()) {
    if (h.as_array()[0] == "X-Mailer") mailer = str(h.as_array()[1]) == "email-listener";
    if (h.as_array()[0] == "X-Note") note = str(h.as_array()[1]) == "naïve café";
  }
  EXPECT_TRUE(mailer);
  EXPECT_TRUE(note);

  const json::array& att = o.at("attachments").as_array();
  ASSERT_EQ(att.size(), 3u);
  // Document order: related (the inline image) comes inside the first child of mixed.
  EXPECT_EQ(str(att[0].at("filename")), "logo.png");
  EXPECT_EQ(str(att[0].at("content_type")), "image/png");
  EXPECT_EQ(str(att[0].at("content_id")), "logo@x");
  EXPECT_EQ(str(att[0].at("disposition")), "inline");
  EXPECT_EQ(decode_base64(str(att[0].at("content_base64"))), "\x89PNG\r\n\x1a\n");
  EXPECT_EQ(str(att[1].at("filename")), "Résumé 日本語.pdf");
  EXPECT_EQ(str(att[1].at("content_type")), "application/pdf");
  EXPECT_EQ(str(att[1].at("disposition")), "attachment");
  EXPECT_EQ(decode_base64(str(att[1].at("content_base64"))), "%PDF-1.4 fake");
  EXPECT_EQ(str(att[2].at("filename")), "data.bin");
  EXPECT_EQ(str(att[2].at("content_type")), "application/octet-stream");
  EXPECT_EQ(decode_base64(str(att[2].at("content_base64"))), bin);

  // Encodings on the wire: RFC 2047 for the subject and names, RFC 2231 for the filename.
  EXPECT_NE(raw.find("Subject: =?UTF-8?"), std::string::npos) << raw;
  EXPECT_NE(raw.find("filename*=UTF-8''R%C3%A9sum%C3%A9"), std::string::npos) << raw;
  EXPECT_NE(raw.find("X-Note: =?UTF-8?"), std::string::npos) << raw;
  EXPECT_NE(raw.find("Content-ID: <logo@x>"), std::string::npos);
  EXPECT_NE(raw.find("Content-Disposition: inline"), std::string::npos);
  EXPECT_EQ(multipart_types(raw), (std::vector<std::string>{"mixed", "related", "alternative"}));
  const std::size_t related = raw.find("Content-Type: multipart/related;");
  EXPECT_NE(related, std::string::npos);
  EXPECT_EQ(raw.find("type=\"multipart/alternative\"", related), raw.find("type=\""));
}

TEST(Compose, HeadersInOrderBccNeverWritten) {
  OutgoingMessage m = basic();
  m.cc = {{"cc@example.com", ""}};
  m.bcc = {{"hidden@example.com", "Hidden"}};
  m.reply_to = {{"r@example.com", ""}};
  m.in_reply_to = "p@x";
  m.references = {"<r@x>", "p@x"};
  m.headers = {{"X-B", "2"}, {"X-A", "1"}, {"Sender", "Agent <agent@example.com>"}};
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_EQ(header_names(raw),
            (std::vector<std::string>{"From", "To", "Cc", "Reply-To", "Subject", "Date",
                                      "Message-ID", "In-Reply-To", "References", "MIME-Version",
                                      "X-B", "X-A", "Sender", "Content-Type"}));
  EXPECT_EQ(raw.find("hidden@example.com"), std::string::npos);
  EXPECT_EQ(raw.find("Bcc"), std::string::npos);
  EXPECT_NE(raw.find("\r\nMessage-ID: <m1@example.com>\r\n"), std::string::npos);
  EXPECT_NE(raw.find("\r\nMIME-Version: 1.0\r\n"), std::string::npos);
  EXPECT_NE(raw.find("\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), std::string::npos);
  EXPECT_NE(raw.find("\r\nIn-Reply-To: <p@x>\r\n"), std::string::npos);
  EXPECT_NE(raw.find("\r\nReferences: <r@x> <p@x>\r\n"), std::string::npos);
  EXPECT_TRUE(raw.starts_with("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\n"));
}

TEST(Compose, TextOnlyIsSinglePart) {
  const std::string raw = compose(basic());
  expect_wire_safe(raw);
  EXPECT_TRUE(multipart_types(raw).empty());
  EXPECT_EQ(top_content_type(raw), "text/plain; charset=utf-8");
  EXPECT_EQ(str(parse(raw).at("text")), "Hi Bob\n");
}

TEST(Compose, HtmlOnlyIsSinglePart) {
  OutgoingMessage m = basic();
  m.text.clear();
  m.html = "<p>only</p>";
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_TRUE(multipart_types(raw).empty());
  EXPECT_EQ(top_content_type(raw), "text/html; charset=utf-8");
  const json::object o = parse(raw);
  // A single part's last line break belongs to its content (the message must end in CRLF).
  EXPECT_EQ(str(o.at("html")), "<p>only</p>\n");
  EXPECT_EQ(str(o.at("text")), "");
}

TEST(Compose, TextAndHtmlIsAlternative) {
  OutgoingMessage m = basic();
  m.html = "<p>Hi Bob</p>";
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_EQ(multipart_types(raw), std::vector<std::string>{"alternative"});
  EXPECT_TRUE(top_content_type(raw).starts_with("multipart/alternative; boundary="));
  // The plain part comes first: the last alternative is the preferred one (RFC 2046 5.1.4).
  EXPECT_LT(raw.find("Content-Type: text/plain"), raw.find("Content-Type: text/html"));
  const json::object o = parse(raw);
  EXPECT_EQ(str(o.at("text")), "Hi Bob\n");
  EXPECT_EQ(str(o.at("html")), "<p>Hi Bob</p>");
}

TEST(Compose, InlinePartsMakeRelated) {
  OutgoingMessage m = basic();
  m.text.clear();
  m.html = "<img src=\"cid:img1\">";
  m.attachments = {{"a.gif", "image/gif", "GIF89a", "<img1>"}};
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_EQ(multipart_types(raw), std::vector<std::string>{"related"});
  EXPECT_TRUE(top_content_type(raw).starts_with("multipart/related;"));
  EXPECT_NE(raw.find("type=\"text/html\""), std::string::npos);
  EXPECT_NE(raw.find("Content-ID: <img1>"), std::string::npos);  // brackets not doubled
  const json::object o = parse(raw);
  const json::array& att = o.at("attachments").as_array();
  ASSERT_EQ(att.size(), 1u);
  EXPECT_EQ(str(att[0].at("content_id")), "img1");
  EXPECT_EQ(str(att[0].at("disposition")), "inline");
  EXPECT_EQ(str(o.at("html")), m.html);
}

TEST(Compose, AttachmentsMakeMixed) {
  OutgoingMessage m = basic();
  m.attachments = {{"notes.txt", "text/plain; charset=iso-8859-1", "caf\xe9\n", ""}};
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_EQ(multipart_types(raw), std::vector<std::string>{"mixed"});
  EXPECT_NE(raw.find("Content-Disposition: attachment; filename=notes.txt"), std::string::npos)
      << raw;
  const json::object o = parse(raw);
  EXPECT_EQ(str(o.at("text")), "Hi Bob\n");
  const json::array& att = o.at("attachments").as_array();
  ASSERT_EQ(att.size(), 1u);
  EXPECT_EQ(str(att[0].at("content_type")), "text/plain");
  EXPECT_EQ(str(att[0].at("disposition")), "attachment");
  EXPECT_EQ(decode_base64(str(att[0].at("content_base64"))), "caf\xe9\n");  // bytes kept
}

TEST(Compose, InlinePartWithoutHtmlGoesToMixed) {
  OutgoingMessage m = basic();
  m.attachments = {{"a.png", "image/png", "png", "img@x"}};
  const std::string raw = compose(m);
  EXPECT_EQ(multipart_types(raw), std::vector<std::string>{"mixed"});
  EXPECT_NE(raw.find("Content-ID: <img@x>"), std::string::npos);
  EXPECT_NE(raw.find("Content-Disposition: inline"), std::string::npos);
}

TEST(Compose, EmptyBodyIsEmptyTextPart) {
  OutgoingMessage m = basic();
  m.text.clear();
  m.subject.clear();
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_EQ(top_content_type(raw), "text/plain; charset=utf-8");
  const json::object o = parse(raw);
  EXPECT_FALSE(o.contains("parse_errors")) << json::serialize(o);
  EXPECT_EQ(str(o.at("text")), "");
}

TEST(Compose, ForwardedMessageIsMessageRfc822) {
  OutgoingMessage inner = basic();
  inner.subject = "Inner subject ü";
  inner.text = std::string(3000, 'x') + "\n";
  const std::string inner_raw = compose(inner);
  OutgoingMessage m = basic();
  m.attachments = {{"fwd.eml", "message/rfc822", inner_raw, ""}};
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_NE(raw.find("Content-Type: message/rfc822"), std::string::npos);
  const json::object o = parse(raw);
  const json::array& att = o.at("attachments").as_array();
  ASSERT_EQ(att.size(), 1u);
  EXPECT_EQ(str(att[0].at("content_type")), "message/rfc822");
  EXPECT_EQ(str(att[0].at("filename")), "fwd.eml");
  const json::object back = parse(decode_base64(str(att[0].at("content_base64"))));
  EXPECT_EQ(str(back.at("subject")), "Inner subject ü");
  EXPECT_EQ(str(back.at("text")), inner.text);
}

TEST(Compose, BodiesKeepLinesShortAndCrlf) {
  OutgoingMessage m = basic();
  m.text = std::string(5000, 'a') + "\nbare\rcr and crlf\r\nend";  // ASCII, one very long line
  m.html = "<p>" + std::string(2000, 'z') + "é</p>";
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  const json::object o = parse(raw);
  EXPECT_EQ(str(o.at("text")), std::string(5000, 'a') + "\nbare\ncr and crlf\nend");
  EXPECT_EQ(str(o.at("html")), m.html);
}

TEST(Compose, LongHeaderValuesAreFolded) {
  OutgoingMessage m = basic();
  m.subject = std::string(1500, 's');
  m.headers = {{"X-Long", std::string(1200, 'v') + " tail"}};
  for (int i = 0; i < 60; ++i) m.references.push_back("ref" + std::to_string(i) + "@example.com");
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  const json::object o = parse(raw);
  EXPECT_EQ(str(o.at("subject")), m.subject);
  EXPECT_EQ(o.at("references").as_array().size(), 60u);
}

TEST(Compose, IdnDomainWrittenAsALabel) {
  OutgoingMessage m = basic();
  m.to = {{"user@bücher.example", ""}};
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  EXPECT_NE(raw.find("To: user@xn--bcher-kva.example\r\n"), std::string::npos) << raw;
}

// valid_address() checks the shape of a UTF-8 label; IDNA (libidn2, via GMime) has the last
// word, and a label it refuses is an invalid address.
TEST(Compose, DomainThatIdnaRefuses) {
  EXPECT_TRUE(valid_address("user@\u2603.example"));
  OutgoingMessage m = basic();
  m.to = {{"user@\u2603.example", ""}};
  EXPECT_EQ(error_field([&] { compose(m); }), "to[0]");
}

TEST(Compose, QuotedLocalPartAndLiteral) {
  OutgoingMessage m = basic();
  m.to = {{"\"quoted name\"@example.com", "Q"}, {"user@[127.0.0.1]", ""}};
  const std::string raw = compose(m);
  expect_wire_safe(raw);
  const json::array to = parse(raw).at("to").as_array();
  ASSERT_EQ(to.size(), 2u);
  EXPECT_EQ(str(to[0].at("address")), "\"quoted name\"@example.com");
  EXPECT_EQ(str(to[1].at("address")), "user@[127.0.0.1]");
}

TEST(Compose, InvalidAddressNamesTheField) {
  auto with = [](auto edit) {
    return error_field([&] {
      OutgoingMessage m = basic();
      edit(m);
      compose(m);
    });
  };
  EXPECT_EQ(with([](OutgoingMessage& m) { m.from.address = "nobody"; }), "from");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.from.address.clear(); }), "from");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.to.push_back({"a b@c", ""}); }), "to[1]");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.cc = {{"ok@x.y", ""}, {"x@", ""}}; }), "cc[1]");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.bcc = {{"@b", ""}}; }), "bcc[0]");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.reply_to = {{"a@@b", ""}}; }), "reply_to[0]");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.to[0].name = "Bob\r\nBcc: x@y.z"; }), "to[0]");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.from.name = "\xff\xfe"; }), "from");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.subject = "hi\r\nBcc: x@y.z"; }), "subject");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.message_id.clear(); }), "message_id");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.message_id = "no-at-sign"; }), "message_id");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.message_id = "a b@c"; }), "message_id");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.in_reply_to = "x>\r\nBcc: y"; }), "in_reply_to");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.references = {"a@b", ""}; }), "references[1]");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.text = "\xc3"; }), "text");
  EXPECT_EQ(with([](OutgoingMessage& m) { m.html = "\xed\xa0\x80"; }), "html");
  EXPECT_EQ(with([](OutgoingMessage& m) {
              m.attachments = {{"f", "bogus", "x", ""}};
            }),
            "attachments[0].content_type");
  EXPECT_EQ(with([](OutgoingMessage& m) {
              m.attachments = {{"f", "", "x", ""}, {"f", "multipart/mixed", "x", ""}};
            }),
            "attachments[1].content_type");
  EXPECT_EQ(with([](OutgoingMessage& m) {
              m.attachments = {{"f", "text/plain\r\nBcc: x@y.z", "x", ""}};
            }),
            "attachments[0].content_type");
  EXPECT_EQ(with([](OutgoingMessage& m) {
              m.attachments = {{"a\nb", "", "x", ""}};
            }),
            "attachments[0].filename");
  EXPECT_EQ(with([](OutgoingMessage& m) {
              m.attachments = {{"f", "", "x", "a b"}};
            }),
            "attachments[0].content_id");
}

TEST(Compose, ReservedAndInvalidHeadersRefused) {
  auto with_header = [](std::string name, std::string value) {
    return error_field([&] {
      OutgoingMessage m = basic();
      m.headers = {{"X-Ok", "fine"}, {name, value}};
      compose(m);
    });
  };
  EXPECT_EQ(with_header("bcc", "x@y.z"), "headers.bcc");
  EXPECT_EQ(with_header("Subject", "again"), "headers.Subject");
  EXPECT_EQ(with_header("content-type", "text/html"), "headers.content-type");
  EXPECT_EQ(with_header("Message-Id", "<x@y>"), "headers.Message-Id");
  EXPECT_EQ(with_header("X-Evil", "a\r\nBcc: victim@example.com"), "headers.X-Evil");
  EXPECT_EQ(with_header("X-Evil", "a\nb"), "headers.X-Evil");
  EXPECT_EQ(with_header("X-Evil", std::string("a\0b", 3)), "headers.X-Evil");
  EXPECT_EQ(with_header("X-Bad:Name", "v"), "headers.X-Bad:Name");
  EXPECT_EQ(with_header("X Bad", "v"), "headers.X Bad");
  EXPECT_EQ(with_header("", "v"), "headers.");
  EXPECT_EQ(with_header(std::string(77, 'X'), "v"), "headers." + std::string(77, 'X'));
  EXPECT_EQ(with_header("X-Ünicode", "v"), "headers.X-Ünicode");
  EXPECT_EQ(with_header(std::string(76, 'X'), "v"), "(no error)");
}

TEST(Compose, ReservedHeaderNames) {
  for (const char* n : {"From", "to", "CC", "Bcc", "reply-to", "SUBJECT", "Date", "Message-ID",
                        "message-id", "In-Reply-To", "References", "MIME-Version", "Content-Type",
                        "content-transfer-encoding", "Content-Whatever"}) {
    EXPECT_TRUE(reserved_header(n)) << n;
  }
  for (const char* n : {"X-Mailer", "Sender", "List-Unsubscribe", "Content", "Contents-X",
                        "Auto-Submitted", "Fromage"}) {
    EXPECT_FALSE(reserved_header(n)) << n;
  }
}

TEST(ValidAddress, Good) {
  for (const char* a : {"a@b.c", "first.last+tag@sub.example.com", "\"quoted name\"@example.com",
                        "\"a@b\"@example.com", "\"esc\\\"aped\"@example.com", "user@[127.0.0.1]",
                        "user@[IPv6:2001:db8::1]", "root@localhost", "o'brien@example.ie",
                        "x!#$%&'*+-/=?^_`{|}~@example.com", "user@bücher.example",
                        "user@παράδειγμα.δοκιμή", "u@a-b.example", "u@123.example"}) {
    EXPECT_TRUE(valid_address(a)) << a;
  }
  // Longest allowed: 64-octet local part, 254 octets in all.
  const std::string local(64, 'l');
  std::string dom = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(61, 'c');
  EXPECT_EQ(local.size() + 1 + dom.size(), 254u);
  EXPECT_TRUE(valid_address(local + "@" + dom));
}

TEST(ValidAddress, Bad) {
  for (const char* a : {"",
                        "a",
                        "a@",
                        "@b",
                        "a b@c",
                        "a@b c",
                        "a@@b",
                        "a\r\n@b",
                        "a@b\r\n",
                        " a@b.c",
                        "a@b.c ",
                        "a.@b.c",
                        ".a@b.c",
                        "a..b@c.d",
                        "a@b..c",
                        "a@.b",
                        "a@b.",
                        "a@-b.c",
                        "a@b-.c",
                        "a@b_c.d",
                        "a\t@b.c",
                        "\"\"@b.c",
                        "\"unterminated@b.c",
                        "\"a\"b\"@c.d",
                        "\"tab\there\"@b.c",
                        "a@[1.2.3]",
                        "a@[300.1.1.1]",
                        "a@[IPv6:zz::1]",
                        "a@[example.com]",
                        "a@b,c",
                        "<a@b.c>",
                        "Name <a@b.c>",
                        "a@b.c\xff",
                        "δοκιμή@παράδειγμα.δοκιμή"}) {
    EXPECT_FALSE(valid_address(a)) << a;
  }
  EXPECT_FALSE(valid_address(std::string("a\0@b.c", 6)));
  EXPECT_FALSE(valid_address(std::string(65, 'l') + "@example.com"));  // local part > 64
  EXPECT_FALSE(valid_address("a@" + std::string(64, 'd') + ".com"));   // label > 63
  EXPECT_FALSE(valid_address(std::string(64, 'l') + "@" + std::string(300, 'd')));
  std::string long_addr = "a@";
  for (int i = 0; i < 30; ++i) long_addr += "abcdefghi.";
  long_addr += "com";
  EXPECT_GT(long_addr.size(), 254u);
  EXPECT_FALSE(valid_address(long_addr));
}

// Each call owns its GMime objects: concurrent calls (under ASan/TSan) share nothing mutable.
TEST(Compose, ConcurrentCalls) {
  OutgoingMessage m = basic();
  m.html = "<p>x</p>";
  m.attachments = {{"b.bin", "", binary_bytes(), ""}, {"i.png", "image/png", "p", "i@x"}};
  std::vector<std::thread> threads;
  std::vector<std::string> out(4);
  for (std::size_t t = 0; t < out.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) out[t] = compose(m);
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& raw : out) EXPECT_EQ(multipart_types(raw).size(), 3u);
}

}  // namespace
