// el::mime::to_json against the hand-built corpus in tests/fixtures/mime (see make_fixtures.py).
#include "mime/message.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using el::mime::MessageMeta;
using el::mime::ParseOptions;

const fs::path kDir = fs::path(EL_FIXTURES_DIR) / "mime";

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  EXPECT_TRUE(f) << p;
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> corpus() {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(kDir)) {
    if (e.path().extension() == ".eml") v.push_back(e.path());
  }
  std::sort(v.begin(), v.end());
  return v;
}

// Serializes and parses back: boost::json's parser rejects invalid UTF-8, so this proves the
// output is deliverable as is.
json::object round_trip(const json::object& o) {
  json::error_code ec;
  json::value v = json::parse(json::serialize(o), ec);
  EXPECT_FALSE(ec) << ec.message();
  return ec ? json::object{} : v.as_object();
}

json::object parse_raw(std::string_view raw, const ParseOptions& opts = {}) {
  el::mime::initialize();
  return round_trip(el::mime::to_json(raw, MessageMeta{}, opts));
}

json::object parse(const std::string& name, const ParseOptions& opts = {}) {
  return parse_raw(read_file(kDir / name), opts);
}

std::string str(const json::value& v) { return std::string(v.as_string()); }

std::vector<std::string> errors(const json::object& o) {
  std::vector<std::string> r;
  if (auto* p = o.if_contains("parse_errors")) {
    for (const auto& e : p->as_array()) r.push_back(str(e));
  }
  return r;
}

bool has_error(const json::object& o, std::string_view needle) {
  for (const auto& e : errors(o)) {
    if (e.find(needle) != std::string::npos) return true;
  }
  return false;
}

const json::object& attachment(const json::object& o, std::size_t i) {
  return o.at("attachments").as_array().at(i).as_object();
}

json::object addr(std::string_view name, std::string_view address) {
  return json::object{{"name", name}, {"address", address}};
}

void expect_shape(const json::object& o) {
  for (const char* k : {"message_id", "subject", "from", "reply_to", "to", "cc", "bcc", "date",
                        "in_reply_to", "references", "headers", "text", "html", "attachments",
                        "size", "uid", "folder", "flags", "internal_date"}) {
    EXPECT_TRUE(o.contains(k)) << k;
  }
  EXPECT_TRUE(o.at("text").is_string());
  EXPECT_TRUE(o.at("html").is_string());
  for (const char* k : {"reply_to", "to", "cc", "bcc", "references", "headers", "attachments"}) {
    EXPECT_TRUE(o.at(k).is_array()) << k;
  }
  if (auto* p = o.if_contains("parse_errors")) {
    EXPECT_FALSE(p->as_array().empty());
  }
}

TEST(MimeCorpus, EveryFixtureGivesValidJsonOfTheDocumentedShape) {
  const auto files = corpus();
  ASSERT_GE(files.size(), 30u);
  for (const auto& f : files) {
    SCOPED_TRACE(f.filename().string());
    const std::string raw = read_file(f);
    const json::object o = parse_raw(raw);
    expect_shape(o);
    EXPECT_EQ(o.at("size").to_number<std::size_t>(), raw.size());
  }
}

TEST(MimeCorpus, EveryPrefixOfANestedMessageParses) {
  // Cut downloads end anywhere: inside a header, a boundary line, a base64 quantum.
  const std::string raw = read_file(kDir / "nested_3deep.eml");
  for (std::size_t n = 0; n <= raw.size(); n += 7) {
    SCOPED_TRACE(n);
    expect_shape(parse_raw(std::string_view(raw).substr(0, n)));
  }
}

TEST(MimeCorpus, CorruptedBytesNeverBreakTheOutput) {
  const std::string base = read_file(kDir / "mixed_attachments.eml");
  unsigned seed = 12345;
  for (int round = 0; round < 200; ++round) {
    std::string raw = base;
    for (int k = 0; k < 8; ++k) {
      seed = seed * 1103515245u + 12345u;
      const std::size_t pos = (seed >> 8) % raw.size();
      seed = seed * 1103515245u + 12345u;
      raw[pos] = static_cast<char>(seed >> 16);
    }
    SCOPED_TRACE(round);
    expect_shape(parse_raw(raw));
  }
}

TEST(MimeMessage, PlainAscii) {
  const auto o = parse("plain_ascii.eml");
  EXPECT_EQ(str(o.at("message_id")), "lunch-1@example.com");
  EXPECT_EQ(str(o.at("subject")), "Lunch on Friday?");
  EXPECT_EQ(o.at("from").as_object(), addr("Alice Example", "alice@example.com"));
  EXPECT_FALSE(o.contains("sender"));
  EXPECT_EQ(o.at("to").as_array(), json::array({addr("Bob", "bob@example.org")}));
  EXPECT_EQ(str(o.at("date")), "2024-03-05T13:30:00.000Z");
  EXPECT_EQ(str(o.at("text")), "Hi Bob,\n\nAre you free for lunch on Friday at noon?\n\nAlice\n");
  EXPECT_EQ(str(o.at("html")), "");
  EXPECT_TRUE(o.at("in_reply_to").is_null());
  EXPECT_TRUE(o.at("attachments").as_array().empty());
  EXPECT_FALSE(o.contains("parse_errors"));
  const auto& headers = o.at("headers").as_array();
  ASSERT_EQ(headers.size(), 7u);
  EXPECT_EQ(headers[0], json::array({"Return-Path", "<alice@example.com>"}));
  EXPECT_EQ(str(headers[1].as_array()[0]), "Received");
  // Unfolded: the CRLF of each fold is gone, the whitespace stays.
  EXPECT_EQ(str(headers[1].as_array()[1]).find('\n'), std::string::npos);
}

TEST(MimeMessage, QuotedPrintableUtf8AndThreading) {
  const auto o = parse("qp_utf8.eml");
  EXPECT_EQ(o.at("from").as_object(), addr("Jürgen Müller", "juergen@example.de"));
  const std::string text = str(o.at("text"));
  EXPECT_TRUE(text.starts_with("Grüße aus Köln — café ☕\nA long line that goes on")) << text;
  EXPECT_NE(text.find("and on until it has to be soft-wrapped"), std::string::npos);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(str(o.at("in_reply_to")), "lunch-1@example.com");
  EXPECT_EQ(o.at("references").as_array(),
            json::array({"root@example.com", "lunch-1@example.com"}));
  // Content-* headers of the top level belong to the header list too, in input order.
  const auto& headers = o.at("headers").as_array();
  EXPECT_EQ(headers.back(), json::array({"Content-Transfer-Encoding", "quoted-printable"}));
}

TEST(MimeMessage, Base64Body) {
  EXPECT_EQ(str(parse("base64_body.eml").at("text")), "Zażółć gęślą jaźń.\nThe quick brown fox.\n");
}

TEST(MimeMessage, EncodedWordsInSeveralCharsets) {
  auto o = parse("subject_utf8_b.eml");
  EXPECT_EQ(str(o.at("subject")), "Привет, мир! 👋");
  EXPECT_EQ(str(o.at("from").at("name")), "Дмитрий Иванов");

  o = parse("subject_utf8_q.eml");
  EXPECT_EQ(str(o.at("subject")), "Café crème brûlée");  // adjacent words join without space
  EXPECT_EQ(str(o.at("from").at("name")), "Françoise");

  o = parse("subject_latin1.eml");
  EXPECT_EQ(str(o.at("subject")), "Grüße und mehr");
  EXPECT_EQ(str(o.at("from").at("name")), "Søren Ærø");
  EXPECT_EQ(str(o.at("text")), "Grüße aus München, © 2024\n");

  o = parse("subject_koi8r.eml");
  EXPECT_EQ(str(o.at("subject")), "Отчёт за март");
  EXPECT_EQ(str(o.at("from").at("name")), "Борис");
  EXPECT_EQ(str(o.at("text")), "Отчёт готов.\n");

  o = parse("subject_iso2022jp.eml");
  EXPECT_EQ(str(o.at("subject")), "会議の件");
  EXPECT_EQ(str(o.at("from").at("name")), "山田太郎");
  EXPECT_EQ(str(o.at("text")), "明日の会議は十時です。\n");

  o = parse("subject_gb2312.eml");
  EXPECT_EQ(str(o.at("subject")), "你好世界");
  EXPECT_EQ(str(o.at("from").at("name")), "王小明");
  EXPECT_EQ(str(o.at("text")), "中文邮件正文。\n");
  for (const char* f : {"subject_utf8_b.eml", "subject_koi8r.eml", "subject_iso2022jp.eml"}) {
    EXPECT_FALSE(parse(f).contains("parse_errors")) << f;
  }
}

TEST(MimeMessage, InlineTextPartsInDifferentCharsetsAreConcatenated) {
  const auto o = parse("body_charsets_mixed.eml");
  EXPECT_EQ(str(o.at("text")), "Здравствуйте\nこんにちは\nHi Mom -☺-!");
  EXPECT_TRUE(o.at("attachments").as_array().empty());
  EXPECT_FALSE(o.contains("parse_errors"));
}

TEST(MimeMessage, Rfc2231AndEncodedWordFilenames) {
  const auto o = parse("rfc2231_filename.eml");
  EXPECT_EQ(str(o.at("text")), "See attached.");
  ASSERT_EQ(o.at("attachments").as_array().size(), 3u);
  const auto& pdf = attachment(o, 0);
  EXPECT_EQ(str(pdf.at("filename")), "Годовой отчёт 2023.pdf");  // continuations + charset
  EXPECT_EQ(str(pdf.at("content_type")), "application/pdf");
  EXPECT_EQ(str(pdf.at("content_base64")), "JVBERi0xLjQKJWZha2UK");  // "%PDF-1.4\n%fake\n"
  EXPECT_EQ(pdf.at("size").to_number<int>(), 15);
  EXPECT_EQ(str(attachment(o, 1).at("filename")), "Straße über.txt");
  EXPECT_EQ(str(attachment(o, 1).at("disposition")), "attachment");
  EXPECT_EQ(str(attachment(o, 2).at("filename")), "résumé.doc");  // RFC 2047 inside quotes
  EXPECT_EQ(attachment(o, 2).at("size").to_number<int>(), 30);
}

TEST(MimeMessage, AlternativeGivesTextAndHtml) {
  const auto o = parse("alternative.eml");
  EXPECT_EQ(str(o.at("text")), "Plain version.");
  EXPECT_EQ(str(o.at("html")), "<html><body><p>HTML <b>version</b> — fancy.</p></body></html>");
  EXPECT_EQ(o.at("from").as_object(), addr("Newsletter Team", "news@example.com"));
  EXPECT_EQ(o.at("reply_to").as_array(),
            json::array({addr("", "support@example.com"), addr("Sales", "sales@example.com")}));
}

TEST(MimeMessage, MixedWithAttachmentsAndRecipients) {
  const auto o = parse("mixed_attachments.eml");
  EXPECT_EQ(o.at("to").as_array(),
            json::array({addr("", "bob@example.org"), addr("Carol", "carol@example.org")}));
  EXPECT_EQ(o.at("cc").as_array(), json::array({addr("", "dave@example.org")}));
  EXPECT_EQ(o.at("bcc").as_array(), json::array({addr("", "audit@example.org")}));
  EXPECT_EQ(str(o.at("text")), "Report attached.");
  EXPECT_EQ(str(o.at("html")), "<p>Report attached.</p>");
  ASSERT_EQ(o.at("attachments").as_array().size(), 2u);
  const auto& pdf = attachment(o, 0);
  EXPECT_EQ(str(pdf.at("filename")), "report.pdf");
  EXPECT_EQ(pdf.at("size").to_number<int>(), 3009);
  EXPECT_EQ(str(pdf.at("content_base64")).size(), 4012u);
  EXPECT_FALSE(pdf.contains("truncated"));
  EXPECT_FALSE(pdf.contains("content_id"));
  const auto& csv = attachment(o, 1);  // a text part with disposition attachment is a file
  EXPECT_EQ(str(csv.at("filename")), "data.csv");
  EXPECT_EQ(str(csv.at("content_type")), "text/csv");
  EXPECT_EQ(str(csv.at("content_base64")), "YSxiLGMNCjEsMiwz");  // "a,b,c\r\n1,2,3"
}

TEST(MimeMessage, AttachmentBudgetCoversAPrefixOfTheAttachments) {
  ParseOptions opts;
  opts.max_attachment_bytes = 3009;  // exactly the PDF
  auto o = parse("mixed_attachments.eml", opts);
  EXPECT_TRUE(attachment(o, 0).contains("content_base64"));
  EXPECT_FALSE(attachment(o, 1).contains("content_base64"));
  EXPECT_TRUE(attachment(o, 1).at("truncated").as_bool());
  EXPECT_EQ(attachment(o, 1).at("size").to_number<int>(), 12);  // size stays exact

  opts.max_attachment_bytes = 100;  // the PDF does not fit, so nothing after it is sent either
  o = parse("mixed_attachments.eml", opts);
  EXPECT_TRUE(attachment(o, 0).at("truncated").as_bool());
  EXPECT_TRUE(attachment(o, 1).at("truncated").as_bool());
  EXPECT_EQ(attachment(o, 0).at("size").to_number<int>(), 3009);

  opts.max_attachment_bytes = 0;
  o = parse("large_photos_100k.eml", opts);
  ASSERT_EQ(o.at("attachments").as_array().size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(attachment(o, i).at("truncated").as_bool());
    EXPECT_FALSE(attachment(o, i).contains("content_base64"));
  }
  EXPECT_EQ(attachment(o, 0).at("size").to_number<int>(), 38000);
  EXPECT_EQ(attachment(o, 1).at("size").to_number<int>(), 36000);
}

TEST(MimeMessage, RelatedInlineImageHasContentId) {
  const auto o = parse("related_inline_image.eml");
  EXPECT_EQ(str(o.at("text")), "");  // HTML only: text stays "" (never rendered from HTML)
  EXPECT_EQ(str(o.at("html")),
            "<html><body><img src=\"cid:logo@example.com\"> Welcome</body></html>");
  ASSERT_EQ(o.at("attachments").as_array().size(), 1u);
  const auto& img = attachment(o, 0);
  EXPECT_EQ(str(img.at("content_id")), "logo@example.com");
  EXPECT_EQ(str(img.at("content_type")), "image/png");
  EXPECT_EQ(str(img.at("disposition")), "inline");
  EXPECT_TRUE(img.at("filename").is_null());
  EXPECT_EQ(img.at("size").to_number<int>(), 1208);
  EXPECT_TRUE(str(img.at("content_base64")).starts_with("iVBORw0KGg"));  // PNG signature
}

TEST(MimeMessage, NestedThreeDeep) {
  const auto o = parse("nested_3deep.eml");
  EXPECT_EQ(str(o.at("text")), "Deep plain text.");
  EXPECT_EQ(str(o.at("html")), "<p>Deep <img src=\"cid:dot\"></p>");
  ASSERT_EQ(o.at("attachments").as_array().size(), 2u);
  EXPECT_EQ(str(attachment(o, 0).at("content_id")), "dot");
  EXPECT_EQ(attachment(o, 0).at("size").to_number<int>(), 506);
  EXPECT_EQ(str(attachment(o, 1).at("filename")), "archive.zip");
  EXPECT_EQ(attachment(o, 1).at("size").to_number<int>(), 704);
}

TEST(MimeMessage, ForwardedMessageIsOneAttachment) {
  const auto o = parse("forwarded_rfc822.eml");
  EXPECT_EQ(str(o.at("text")), "Forwarding this.");  // the inner text is not merged
  ASSERT_EQ(o.at("attachments").as_array().size(), 1u);
  const auto& fwd = attachment(o, 0);
  EXPECT_EQ(str(fwd.at("content_type")), "message/rfc822");
  EXPECT_EQ(str(fwd.at("disposition")), "inline");
  const std::string b64 = str(fwd.at("content_base64"));
  // "From: Original Sender <orig@example.net>\r\n..." re-emitted with the input's CRLF.
  EXPECT_TRUE(b64.starts_with("RnJvbTogT3JpZ2luYWwgU2VuZGVyIDxvcmlnQGV4YW1wbGUubmV0Pg0K")) << b64;
  EXPECT_EQ(fwd.at("size").to_number<std::size_t>(),
            b64.size() / 4 * 3 - (b64.ends_with("==")  ? 2
                                  : b64.ends_with("=") ? 1
                                                       : 0));
}

TEST(MimeMessage, Unlabelled8BitHeadersAreReadAsWindows1252) {
  const auto o = parse("8bit_headers_latin1.eml");
  EXPECT_EQ(str(o.at("subject")), "Café au lait à 8h");
  EXPECT_EQ(o.at("from").as_object(), addr("André François", "andre@example.fr"));
  EXPECT_EQ(str(o.at("text")), "Réunion demain.\n");
  EXPECT_TRUE(has_error(o, "unencoded 8-bit header: Subject"));
}

TEST(MimeMessage, InvalidUtf8BytesBecomeReplacementCharacters) {
  const auto o = parse("invalid_utf8_body.eml");
  // \xff \xfe -> 2; \xe2\x82 (truncated) -> 1; \xc0 \xaf (overlong) -> 2.
  EXPECT_EQ(str(o.at("text")), "ok é bad �� then � truncated and �� overlong end\n");
  EXPECT_TRUE(has_error(o, "5 undecodable byte sequence(s) in part 1"));
}

TEST(MimeMessage, UnknownCharsetIsDecodedBestEffortAndReported) {
  const auto o = parse("unknown_charset.eml");
  EXPECT_EQ(str(o.at("text")), "Qaplaé ¡\n");
  EXPECT_TRUE(has_error(o, "unknown charset \"x-klingon-9\""));
}

TEST(MimeMessage, HtmlOnlyInWindows1252) {
  const auto o = parse("html_only.eml");
  EXPECT_EQ(str(o.at("text")), "");
  EXPECT_EQ(str(o.at("html")), "<html><body><h1>Sale – 50% off € prices</h1></body></html>\n");
  EXPECT_FALSE(o.contains("parse_errors"));
}

TEST(MimeMessage, BrokenBoundaryKeepsWhatWasRead) {
  const auto o = parse("broken_boundary.eml");
  EXPECT_EQ(str(o.at("text")), "First part text.");
  ASSERT_EQ(o.at("attachments").as_array().size(), 1u);
  EXPECT_EQ(str(attachment(o, 0).at("filename")), "partial.bin");
  EXPECT_EQ(attachment(o, 0).at("size").to_number<int>(), 300);
  EXPECT_TRUE(has_error(o, "truncated message"));
}

TEST(MimeMessage, TruncatedBase64IsReported) {
  const auto o = parse("truncated_base64.eml");
  ASSERT_EQ(o.at("attachments").as_array().size(), 1u);
  EXPECT_EQ(str(attachment(o, 0).at("filename")), "cut.jpg");
  EXPECT_EQ(attachment(o, 0).at("size").to_number<int>(), 96);  // 100 bytes, last 4 lost
  EXPECT_TRUE(has_error(o, "truncated base64 in part 2"));
}

TEST(MimeMessage, NoBodyAndHeaderOnly) {
  auto o = parse("no_body.eml");
  EXPECT_EQ(str(o.at("subject")), "No body");
  EXPECT_EQ(str(o.at("text")), "");
  EXPECT_FALSE(o.contains("parse_errors"));

  o = parse("header_only.eml");
  EXPECT_EQ(str(o.at("subject")), "Header only");
  EXPECT_EQ(str(o.at("message_id")), "hdronly@example.com");
  EXPECT_EQ(str(o.at("text")), "");
  EXPECT_TRUE(has_error(o, "no end of headers"));
}

TEST(MimeMessage, HugeFoldedHeaders) {
  const auto o = parse("huge_folding.eml");
  const std::string subject = str(o.at("subject"));
  EXPECT_TRUE(subject.starts_with("segment-00 of a very long subject segment-01")) << subject;
  EXPECT_TRUE(subject.ends_with("segment-29 of a very long subject"));
  EXPECT_EQ(subject.find('\n'), std::string::npos);
  const auto& refs = o.at("references").as_array();
  ASSERT_EQ(refs.size(), 120u);
  EXPECT_EQ(str(refs[0]), "ref000@lists.example.org");
  EXPECT_EQ(str(refs[119]), "ref119@lists.example.org");
  const auto& to = o.at("to").as_array();
  ASSERT_EQ(to.size(), 60u);
  EXPECT_EQ(to[59].as_object(), addr("User 59", "user59@example.org"));
  EXPECT_EQ(str(o.at("text")), "Body after long headers.\n");
}

TEST(MimeMessage, GroupsAreFlattened) {
  const auto o = parse("group_addresses.eml");
  EXPECT_TRUE(o.at("to").as_array().empty());  // "undisclosed-recipients:;"
  EXPECT_EQ(o.at("cc").as_array(),
            json::array({addr("", "ann@example.com"), addr("Ben B.", "ben@example.com"),
                         addr("", "solo@example.com")}));
}

TEST(MimeMessage, MissingFromAndDate) {
  const auto o = parse("missing_from.eml");
  EXPECT_TRUE(o.at("from").is_null());
  EXPECT_TRUE(o.at("date").is_null());
  EXPECT_EQ(str(o.at("text")), "Who sent this?\n");
  EXPECT_TRUE(has_error(o, "missing From header"));
  EXPECT_TRUE(has_error(o, "missing Date header"));
}

TEST(MimeMessage, UnparsableDate) {
  const auto o = parse("bad_date.eml");
  EXPECT_TRUE(o.at("date").is_null());
  EXPECT_TRUE(has_error(o, "unparsable Date header: sometime last week"));
}

TEST(MimeMessage, MissingMimeVersionIsReportedButInterpreted) {
  const auto o = parse("missing_mime_version.eml");
  EXPECT_EQ(str(o.at("text")), "Still parsed.");
  EXPECT_EQ(str(o.at("html")), "<p>Still parsed.</p>");
  EXPECT_TRUE(has_error(o, "missing MIME-Version"));
}

TEST(MimeMessage, GarbageAndEmptyInput) {
  auto o = parse("garbage.eml");
  EXPECT_TRUE(o.at("from").is_null());
  EXPECT_FALSE(errors(o).empty());

  o = parse_raw("");
  expect_shape(o);
  EXPECT_TRUE(has_error(o, "empty message"));
  EXPECT_EQ(o.at("size").to_number<int>(), 0);
}

TEST(MimeMessage, SignedMessageWithLfLineEndings) {
  const auto o = parse("lf_only_signed.eml");
  EXPECT_EQ(str(o.at("text")), "Signed text.");
  ASSERT_EQ(o.at("attachments").as_array().size(), 1u);
  EXPECT_EQ(str(attachment(o, 0).at("content_type")), "application/pgp-signature");
  EXPECT_EQ(str(attachment(o, 0).at("filename")), "signature.asc");
}

TEST(MimeMessage, SenderOnlyWhenPresentAndNulInHeaderData) {
  const std::string raw =
      "From: a@example.com\r\nSender: \"List Bot\" <bot@example.com>\r\nSubject: x\r\n"
      "Date: Tue, 05 Mar 2024 14:30:00 +0100\r\n\r\nbody with a NUL: [" +
      std::string(1, '\0') + "]\r\n";
  const auto o = parse_raw(raw);
  EXPECT_EQ(o.at("sender").as_object(), addr("List Bot", "bot@example.com"));
  EXPECT_EQ(str(o.at("text")), std::string("body with a NUL: [") + '\0' + "]\n");
}

TEST(MimeMessage, MetaIsCopied) {
  el::mime::initialize();
  MessageMeta meta{7, "Archive/2024", {"\\Seen", "\\Flagged"}, "2024-03-05T13:30:02.000Z"};
  auto o = round_trip(el::mime::to_json(read_file(kDir / "plain_ascii.eml"), meta));
  EXPECT_EQ(o.at("uid").to_number<int>(), 7);
  EXPECT_EQ(str(o.at("folder")), "Archive/2024");
  EXPECT_EQ(o.at("flags").as_array(), json::array({"\\Seen", "\\Flagged"}));
  EXPECT_EQ(str(o.at("internal_date")), "2024-03-05T13:30:02.000Z");
  meta.internal_date.clear();
  meta.folder = "bad \xff folder";  // never trusted to be UTF-8
  o = round_trip(el::mime::to_json(read_file(kDir / "plain_ascii.eml"), meta));
  EXPECT_TRUE(o.at("internal_date").is_null());
  EXPECT_EQ(str(o.at("folder")), "bad \xEF\xBF\xBD folder");
}

TEST(MimeConcurrency, ParallelCallsGiveTheSameResults) {
  el::mime::initialize();
  std::vector<std::string> raws;
  std::vector<std::string> expected;
  for (const auto& f : corpus()) {
    raws.push_back(read_file(f));
    expected.push_back(json::serialize(el::mime::to_json(raws.back(), MessageMeta{})));
  }
  constexpr int kThreads = 4;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (std::size_t i = 0; i < raws.size(); ++i) {
          // Start each thread at a different message so different charsets overlap in time.
          const std::size_t k = (i + static_cast<std::size_t>(t) * 7) % raws.size();
          if (json::serialize(el::mime::to_json(raws[k], MessageMeta{})) != expected[k]) {
            ++mismatches[static_cast<std::size_t>(t)];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[static_cast<std::size_t>(t)], 0);
}

}  // namespace
