// Validation of POST /v1/mailboxes/{id}/send and /sync bodies: the typed request built from good
// input, and every bad input answered with the right code and the exact offending field.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdio>
#include <string>
#include <variant>

#include "http/router.hpp"

namespace el::http {
namespace {

namespace json = boost::json;

// The one recipient most cases need, so each case changes only what it is about.
constexpr const char* kTo = R"("to":"bob@example.com")";

std::string body_with(std::string_view fields) {
  return std::string("{") + kTo + (fields.empty() ? "" : ",") + std::string(fields) + "}";
}

// Parses a body that must be valid; fails the test (and returns an empty request) otherwise.
service::SendRequest parse_ok(std::string_view body, std::string_view key = {}) {
  auto r = parse_send_body(body, key);
  if (const auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << "refused: " << e->code << " " << e->field << " (" << e->message << ") for "
                  << body;
    return {};
  }
  return std::get<service::SendRequest>(std::move(r));
}

void expect_bad(std::string_view body, std::string_view code, std::string_view field,
                std::string_view key = {}) {
  SCOPED_TRACE(std::string(body.substr(0, 300)));
  auto r = parse_send_body(body, key);
  const auto* e = std::get_if<ApiError>(&r);
  ASSERT_NE(e, nullptr) << "accepted";
  EXPECT_EQ(e->status, 400u);
  EXPECT_EQ(e->code, code) << e->message;
  EXPECT_EQ(e->field, field) << e->message;
  EXPECT_FALSE(e->message.empty());
}

service::SyncRequest sync_ok(std::string_view body) {
  auto r = parse_sync_body(body);
  if (const auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << "refused: " << e->code << " " << e->field << " (" << e->message << ") for "
                  << body;
    return {};
  }
  return std::get<service::SyncRequest>(std::move(r));
}

void expect_sync_bad(std::string_view body, std::string_view code, std::string_view field) {
  SCOPED_TRACE(std::string(body));
  auto r = parse_sync_body(body);
  const auto* e = std::get_if<ApiError>(&r);
  ASSERT_NE(e, nullptr) << "accepted";
  EXPECT_EQ(e->status, 400u);
  EXPECT_EQ(e->code, code) << e->message;
  EXPECT_EQ(e->field, field) << e->message;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr), 1);
  std::string out;
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    out += buf;
  }
  return out;
}

std::string attachment(std::string_view members) {
  return body_with(std::string(R"("attachments":[{)") + std::string(members) + "}]");
}

std::string attachment_b64(std::string_view b64) {
  return attachment(R"("filename":"a.bin","content_base64":)" +
                    json::serialize(json::value(json::string(b64))));
}

// ---- recipients ----

TEST(SendBody, RecipientsAsStringsObjectsAndSingleValues) {
  auto req = parse_ok(R"({
    "to": ["a@example.com", {"address": "b@example.com", "name": "Bé Ü"}],
    "cc": "c@example.com",
    "bcc": {"address": "d@example.com"},
    "reply_to": [{"address": "r@example.com", "name": "Replies"}]})");
  const auto& m = req.message;
  ASSERT_EQ(m.to.size(), 2u);
  EXPECT_EQ(m.to[0].address, "a@example.com");
  EXPECT_EQ(m.to[0].name, "");
  EXPECT_EQ(m.to[1].address, "b@example.com");
  EXPECT_EQ(m.to[1].name, "Bé Ü");
  ASSERT_EQ(m.cc.size(), 1u);
  EXPECT_EQ(m.cc[0].address, "c@example.com");
  ASSERT_EQ(m.bcc.size(), 1u);
  EXPECT_EQ(m.bcc[0].address, "d@example.com");
  EXPECT_EQ(m.bcc[0].name, "");
  ASSERT_EQ(m.reply_to.size(), 1u);
  EXPECT_EQ(m.reply_to[0].name, "Replies");
}

TEST(SendBody, OnlyCcOrOnlyBccIsEnough) {
  EXPECT_EQ(parse_ok(R"({"cc":["c@example.com"]})").message.cc.size(), 1u);
  EXPECT_EQ(parse_ok(R"({"bcc":"d@example.com"})").message.bcc.size(), 1u);
}

TEST(SendBody, NoRecipientIsMissingTo) {
  for (const char* body : {R"({})", R"({"subject":"hi"})", R"({"to":[]})",
                           R"({"to":null,"cc":[],"bcc":[]})", R"({"reply_to":"r@example.com"})"}) {
    expect_bad(body, "missing_field", "to");
  }
}

TEST(SendBody, InvalidAddressesNameTheField) {
  expect_bad(R"({"to":"not-an-address"})", "invalid_value", "to");
  expect_bad(R"({"to":["a@example.com",{"address":"nope"}]})", "invalid_value", "to[1].address");
  expect_bad(R"({"to":["a@example.com","@example.com"]})", "invalid_value", "to[1]");
  expect_bad(R"({"to":{"address":"x@"}})", "invalid_value", "to.address");
  expect_bad(R"({"to":"a@example.com","cc":["c@example.com","bad"]})", "invalid_value", "cc[1]");
  expect_bad(R"({"to":"a@example.com","bcc":[{"address":"a b@example.com"}]})", "invalid_value",
             "bcc[0].address");
  expect_bad(R"({"to":"a@example.com","reply_to":"nope"})", "invalid_value", "reply_to");
}

TEST(SendBody, RecipientShapeAndNameErrors) {
  expect_bad(R"({"to":[{"name":"No Address"}]})", "missing_field", "to[0].address");
  expect_bad(R"({"to":[{"address":5}]})", "invalid_type", "to[0].address");
  expect_bad(R"({"to":[5]})", "invalid_type", "to[0]");
  expect_bad(R"({"to":true})", "invalid_type", "to");
  expect_bad(R"({"to":[{"address":"a@example.com","name":7}]})", "invalid_type", "to[0].name");
  expect_bad(R"({"to":[{"address":"a@example.com","name":"A\r\nBcc: x@evil.test"}]})",
             "invalid_value", "to[0].name");
  expect_bad(R"({"to":[{"address":"a@example.com","name":")" + std::string(257, 'n') + R"("}]})",
             "invalid_value", "to[0].name");
  parse_ok(R"({"to":[{"address":"a@example.com","name":")" + std::string(256, 'n') + R"("}]})");
  expect_bad(R"({"to":[{"address":"a@example.com","nmae":"x"}]})", "unknown_field", "to[0].nmae");
}

std::string addresses(std::size_t n, std::string_view tag) {
  json::array a;
  for (std::size_t i = 0; i < n; ++i)
    a.emplace_back("u" + std::to_string(i) + "." + std::string(tag) + "@example.com");
  return json::serialize(a);
}

TEST(SendBody, AtMost500RecipientsInAll) {
  EXPECT_EQ(parse_ok(R"({"to":)" + addresses(500, "t") + "}").message.to.size(), 500u);
  expect_bad(R"({"to":)" + addresses(501, "t") + "}", "invalid_value", "to");
  // The limit counts to, cc and bcc together; the error names "to" for the sum.
  expect_bad(R"({"to":)" + addresses(300, "t") + R"(,"cc":)" + addresses(150, "c") + R"(,"bcc":)" +
                 addresses(51, "b") + "}",
             "invalid_value", "to");
  const auto ok = parse_ok(R"({"to":)" + addresses(300, "t") + R"(,"cc":)" + addresses(150, "c") +
                           R"(,"bcc":)" + addresses(50, "b") + "}");
  EXPECT_EQ(ok.message.bcc.size(), 50u);
  // A single list over the limit names its own field.
  expect_bad(R"({"to":"a@example.com","cc":)" + addresses(501, "c") + "}", "invalid_value", "cc");
}

// ---- text fields ----

TEST(SendBody, SubjectTextHtml) {
  auto req = parse_ok(
      body_with(R"("subject":"Héllo","text":"line 1\r\nline 2\ttab","html":"<p>hi</p>\n")"));
  EXPECT_EQ(req.message.subject, "Héllo");
  EXPECT_EQ(req.message.text, "line 1\r\nline 2\ttab");
  EXPECT_EQ(req.message.html, "<p>hi</p>\n");
  expect_bad(body_with(R"("subject":"a\r\nBcc: x@evil.test")"), "invalid_value", "subject");
  expect_bad(body_with(R"("subject":"a\u0000b")"), "invalid_value", "subject");
  expect_bad(body_with(R"("subject":5)"), "invalid_type", "subject");
  expect_bad(body_with(R"("text":"nul \u0000 inside")"), "invalid_value", "text");
  expect_bad(body_with(R"("html":["x"])"), "invalid_type", "html");
  expect_bad(body_with(R"("subject":")" + std::string(2001, 's') + "\""), "invalid_value",
             "subject");
  EXPECT_EQ(
      parse_ok(body_with(R"("subject":")" + std::string(2000, 's') + "\"")).message.subject.size(),
      2000u);
}

TEST(SendBody, UnknownFieldsAndBadJson) {
  expect_bad(body_with(R"("bogus":1)"), "unknown_field", "bogus");
  expect_bad(body_with(R"("From":"x@example.com")"), "unknown_field", "From");
  expect_bad(R"({"to":"a@example.com",)", "invalid_json", "");
  expect_bad("", "invalid_json", "");
  expect_bad(R"(["a@example.com"])", "invalid_type", "");
  expect_bad(body_with(R"("attachments":[{"filename":"a","content_base64":"","size":1}])"),
             "unknown_field", "attachments[0].size");
}

// ---- attachments ----

TEST(SendBody, AttachmentDecodedStrictly) {
  auto req = parse_ok(attachment(
      R"("filename":"report.pdf","content_type":"application/pdf","content_base64":"SGVsbG8sIHdvcmxkIQ==")"));
  ASSERT_EQ(req.message.attachments.size(), 1u);
  const auto& a = req.message.attachments[0];
  EXPECT_EQ(a.filename, "report.pdf");
  EXPECT_EQ(a.content_type, "application/pdf");
  EXPECT_EQ(a.content, "Hello, world!");
  EXPECT_EQ(a.content_id, "");
}

TEST(SendBody, Base64WithLineBreaksAndEveryByte) {
  // Every byte value, base64 as a MIME writer lays it out: 76-character lines, CRLF.
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  std::string b64(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  ASSERT_EQ(static_cast<std::size_t>(n), b64.size());
  std::string wrapped;
  for (std::size_t i = 0; i < b64.size(); i += 76) wrapped += b64.substr(i, 76) + "\r\n";
  auto req = parse_ok(attachment_b64(wrapped));
  ASSERT_EQ(req.message.attachments.size(), 1u);
  EXPECT_EQ(req.message.attachments[0].content, bytes);

  // Spaces, tabs and LF alone too; one and two padding characters.
  EXPECT_EQ(parse_ok(attachment_b64("SGVs\nbG8h\n")).message.attachments[0].content, "Hello!");
  EXPECT_EQ(parse_ok(attachment_b64(" QQ== ")).message.attachments[0].content, "A");
  EXPECT_EQ(parse_ok(attachment_b64("QUI=\t")).message.attachments[0].content, "AB");
  EXPECT_EQ(parse_ok(attachment_b64("")).message.attachments[0].content, "");
}

TEST(SendBody, InvalidBase64IsRefused) {
  for (const char* b64 : {
           "SGVsbG8*",      // not in the alphabet
           "SGVs-G8h",      // base64url, not base64
           "SGVs_G8h",      // base64url, not base64
           "SGVsbG8",       // 7 symbols: not a whole quantum
           "QQ=",           // padding cut short
           "Q===",          // three padding characters
           "QQ",            // padding missing
           "QQ==QQ==",      // data after padding
           "QQ==\nQUI=",    // data after padding, across a line break
           "QUI=x",         // data after padding
           "=QUI",          // padding first
           "SGVsbG8h\x01",  // control character
       }) {
    expect_bad(attachment_b64(b64), "invalid_value", "attachments[0].content_base64");
  }
  // The index names the attachment at fault.
  expect_bad(body_with(R"("attachments":[{"filename":"a","content_base64":"QQ=="},
                                          {"filename":"b","content_base64":"QQ="}])"),
             "invalid_value", "attachments[1].content_base64");
  expect_bad(attachment(R"("filename":"a")"), "missing_field", "attachments[0].content_base64");
  expect_bad(attachment(R"("filename":"a","content_base64":5)"), "invalid_type",
             "attachments[0].content_base64");
}

TEST(SendBody, FilenameRules) {
  EXPECT_EQ(parse_ok(attachment(R"("filename":"Überblick 2026.pdf","content_base64":"")"))
                .message.attachments[0]
                .filename,
            "Überblick 2026.pdf");
  parse_ok(attachment(R"("filename":")" + std::string(256, 'f') + R"(","content_base64":"")"));
  for (std::string fn : {std::string(""), std::string("dir/a.txt"), std::string("..\\\\a.txt"),
                         std::string("/etc/passwd"), std::string("a\\r\\nb.txt"),
                         std::string("tab\\there"), std::string(257, 'f')}) {
    expect_bad(attachment(R"("filename":")" + fn + R"(","content_base64":"")"), "invalid_value",
               "attachments[0].filename");
  }
  expect_bad(attachment(R"("content_base64":"")"), "missing_field", "attachments[0].filename");
  expect_bad(attachment(R"("filename":1,"content_base64":"")"), "invalid_type",
             "attachments[0].filename");
  expect_bad(body_with(R"("attachments":"a.txt")"), "invalid_type", "attachments");
  expect_bad(body_with(R"("attachments":["a.txt"])"), "invalid_type", "attachments[0]");
}

TEST(SendBody, ContentTypeRules) {
  for (const char* ct :
       {"image/png", "application/vnd.openxmlformats-officedocument.x+xml", "text/x-c++src"}) {
    auto req = parse_ok(attachment(
        std::string(R"("filename":"a","content_base64":"","content_type":")") + ct + "\""));
    EXPECT_EQ(req.message.attachments[0].content_type, ct);
  }
  // Absent: left empty (compose() uses application/octet-stream).
  EXPECT_EQ(parse_ok(attachment(R"("filename":"a","content_base64":"")"))
                .message.attachments[0]
                .content_type,
            "");
  for (std::string ct :
       {std::string("png"), std::string("/png"), std::string("image/"), std::string("/"),
        std::string("text/plain; charset=utf-8"), std::string("text/pla in"),
        std::string("text/plain\\r\\nX: y"), "a/" + std::string(254, 'b')}) {
    expect_bad(attachment(R"("filename":"a","content_base64":"","content_type":")" + ct + "\""),
               "invalid_value", "attachments[0].content_type");
  }
  expect_bad(attachment(R"("filename":"a","content_base64":"","content_type":1)"), "invalid_type",
             "attachments[0].content_type");
}

TEST(SendBody, ContentIdWithOrWithoutAngleBrackets) {
  for (const char* cid : {"logo@example", "<logo@example>"}) {
    auto req = parse_ok(attachment(
        std::string(R"("filename":"logo.png","content_base64":"","content_id":")") + cid + "\""));
    EXPECT_EQ(req.message.attachments[0].content_id, "logo@example") << cid;
  }
  for (const char* cid : {"", "<>", "a b", "<a<b>", "a>b", "<<x>>", "x\\r\\n"}) {
    expect_bad(attachment(std::string(R"("filename":"a","content_base64":"","content_id":")") +
                          cid + "\""),
               "invalid_value", "attachments[0].content_id");
  }
}

TEST(SendBody, AtMost100Attachments) {
  auto list = [](std::size_t n) {
    json::array a;
    for (std::size_t i = 0; i < n; ++i)
      a.emplace_back(json::object{{"filename", "f" + std::to_string(i)}, {"content_base64", ""}});
    return json::serialize(a);
  };
  EXPECT_EQ(parse_ok(body_with(R"("attachments":)" + list(100))).message.attachments.size(), 100u);
  expect_bad(body_with(R"("attachments":)" + list(101)), "invalid_value", "attachments");
}

// ---- threading ----

TEST(SendBody, ReferencesAsStringOrArray) {
  auto req =
      parse_ok(body_with(R"("in_reply_to":"<b@y.test>","references":"  <a@x.test>\t<b@y.test> ")"));
  EXPECT_EQ(req.message.in_reply_to, "<b@y.test>");
  EXPECT_EQ(req.message.references, (std::vector<std::string>{"<a@x.test>", "<b@y.test>"}));

  req = parse_ok(body_with(R"("references":["<a@x.test>","b@y.test"])"));
  EXPECT_EQ(req.message.references, (std::vector<std::string>{"<a@x.test>", "b@y.test"}));

  expect_bad(body_with(R"("references":["<a@x.test>","a b"])"), "invalid_value", "references[1]");
  expect_bad(body_with(R"("references":["<a@x.test>",""])"), "invalid_value", "references[1]");
  expect_bad(body_with(R"("references":[1])"), "invalid_type", "references[0]");
  expect_bad(body_with(R"("references":{"a":1})"), "invalid_type", "references");
  expect_bad(body_with(R"("references":"<a@x>\r\n<b@y>")"), "invalid_value", "references");
  expect_bad(body_with(R"("in_reply_to":"a b")"), "invalid_value", "in_reply_to");
  expect_bad(body_with(R"("in_reply_to":"<a@x>\r\nBcc: y")"), "invalid_value", "in_reply_to");

  std::string many;
  for (int i = 0; i < 101; ++i) many += "<m" + std::to_string(i) + "@x> ";
  expect_bad(body_with(R"("references":")" + many + "\""), "invalid_value", "references");
  json::array arr;
  for (int i = 0; i < 101; ++i) arr.emplace_back("<m" + std::to_string(i) + "@x>");
  expect_bad(body_with(R"("references":)" + json::serialize(arr)), "invalid_value", "references");
  arr.pop_back();
  EXPECT_EQ(
      parse_ok(body_with(R"("references":)" + json::serialize(arr))).message.references.size(),
      100u);
}

// ---- headers ----

TEST(SendBody, ExtraHeadersInOrder) {
  auto req = parse_ok(body_with(
      R"("headers":{"X-Campaign":"spring","List-Unsubscribe":"<mailto:u@example.com>","X-Empty":""})"));
  using H = std::pair<std::string, std::string>;
  EXPECT_EQ(req.message.headers, (std::vector<H>{{"X-Campaign", "spring"},
                                                 {"List-Unsubscribe", "<mailto:u@example.com>"},
                                                 {"X-Empty", ""}}));
}

TEST(SendBody, ReservedHeadersAreRefused) {
  for (const char* name :
       {"Subject", "subject", "FROM", "To", "Cc", "Bcc", "Reply-To", "Date", "Message-ID",
        "In-Reply-To", "References", "MIME-Version", "Content-Type", "content-transfer-encoding"}) {
    expect_bad(body_with(std::string(R"("headers":{")") + name + R"(":"x"})"), "invalid_value",
               std::string("headers.") + name);
  }
}

TEST(SendBody, HeaderInjectionAndBadNames) {
  for (const char* value :
       {"a\\r\\nBcc: x@evil.test", "a\\nb", "a\\rb", "a\\u0000b", "a\\tb", "a\\u007fb"}) {
    expect_bad(body_with(std::string(R"("headers":{"X-Custom":")") + value + "\"}"),
               "invalid_value", "headers.X-Custom");
  }
  for (const char* name : {"Bad Name", "X:Y", "X\\r\\nBcc", "X\\u00e9", ""}) {
    SCOPED_TRACE(name);
    auto r = parse_send_body(body_with(std::string(R"("headers":{")") + name + R"(":"v"})"), "");
    const auto* e = std::get_if<ApiError>(&r);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->code, "invalid_value");
    EXPECT_TRUE(e->field.starts_with("headers.")) << e->field;
  }
  expect_bad(body_with(R"("headers":{"Bad Name":"v"})"), "invalid_value", "headers.Bad Name");
  expect_bad(body_with(R"("headers":{"X:Y":"v"})"), "invalid_value", "headers.X:Y");
  expect_bad(body_with(R"("headers":{")" + std::string(77, 'X') + R"(":"v"})"), "invalid_value",
             "headers." + std::string(77, 'X'));
  parse_ok(body_with(R"("headers":{")" + std::string(76, 'X') + R"(":"v"})"));
  expect_bad(body_with(R"("headers":{"X-N":1})"), "invalid_type", "headers.X-N");
  expect_bad(body_with(R"("headers":["X-N: 1"])"), "invalid_type", "headers");
  expect_bad(body_with(R"("headers":{"X-Long":")" + std::string(999, 'v') + "\"}"), "invalid_value",
             "headers.X-Long");
  parse_ok(body_with(R"("headers":{"X-Long":")" + std::string(998, 'v') + "\"}"));
  json::object many;
  for (int i = 0; i < 51; ++i) many["X-H" + std::to_string(i)] = "v";
  expect_bad(body_with(R"("headers":)" + json::serialize(many)), "invalid_value", "headers");
}

// ---- Idempotency-Key and body hash ----

TEST(SendBody, IdempotencyKeyPassedThrough) {
  const std::string body = body_with("");
  EXPECT_EQ(parse_ok(body, "order-42/confirmation").idempotency_key, "order-42/confirmation");
  EXPECT_EQ(parse_ok(body, "").idempotency_key, "");
  EXPECT_EQ(parse_ok(body, std::string(255, 'k')).idempotency_key, std::string(255, 'k'));
}

TEST(SendBody, IdempotencyKeyTooLongOrWithControlCharacters) {
  const std::string body = body_with("");
  expect_bad(body, "invalid_value", "Idempotency-Key", std::string(256, 'k'));
  for (std::string key :
       {std::string("a\r\nb"), std::string("a\tb"), std::string("a\x7f"), std::string("a\0b", 3)}) {
    expect_bad(body, "invalid_value", "Idempotency-Key", key);
  }
}

TEST(SendBody, BodyHashIsTheSha256OfTheBody) {
  const std::string a = body_with(R"("subject":"one")");
  const std::string b = body_with(R"("subject":"two")");
  const auto ha = parse_ok(a).body_hash;
  EXPECT_EQ(ha, sha256_hex(a));
  EXPECT_EQ(ha.size(), 64u);
  EXPECT_EQ(ha.find_first_not_of("0123456789abcdef"), std::string::npos) << ha;
  EXPECT_EQ(parse_ok(b).body_hash, sha256_hex(b));
  EXPECT_NE(parse_ok(b).body_hash, ha);
  // The bytes as sent, not the parsed value: whitespace changes the hash.
  const std::string spaced = " " + a;
  EXPECT_EQ(parse_ok(spaced).body_hash, sha256_hex(spaced));
  EXPECT_NE(parse_ok(spaced).body_hash, ha);
  // The key does not enter the hash.
  EXPECT_EQ(parse_ok(a, "k1").body_hash, ha);
}

// ---- sync ----

TEST(SyncBody, SinceUntilAndFolders) {
  auto req = sync_ok(
      R"({"since":"2026-01-01T00:00:00Z","until":"2026-01-02T12:30:00.250+02:00",
          "folders":["INBOX","Archive/2025"]})");
  EXPECT_EQ(core::format_rfc3339(req.since), "2026-01-01T00:00:00.000Z");
  ASSERT_TRUE(req.until);
  EXPECT_EQ(core::format_rfc3339(*req.until), "2026-01-02T10:30:00.250Z");
  EXPECT_EQ(req.folders, (std::vector<std::string>{"INBOX", "Archive/2025"}));

  req = sync_ok(R"({"since":"2025-06-30T23:59:59.999Z"})");
  EXPECT_EQ(core::format_rfc3339(req.since), "2025-06-30T23:59:59.999Z");
  EXPECT_FALSE(req.until);
  EXPECT_TRUE(req.folders.empty());
  EXPECT_FALSE(sync_ok(R"({"since":"2025-06-30T00:00:00Z","until":null})").until);
}

TEST(SyncBody, SinceIsRequiredAndRfc3339) {
  expect_sync_bad(R"({})", "missing_field", "since");
  expect_sync_bad(R"({"since":null})", "missing_field", "since");
  expect_sync_bad(R"({"until":"2026-01-01T00:00:00Z"})", "missing_field", "since");
  expect_sync_bad(R"({"since":1767225600})", "invalid_type", "since");
  for (const char* s : {"2026-01-01", "2026-01-01T00:00:00", "yesterday", "2026-13-01T00:00:00Z",
                        "2026-01-01T25:00:00Z", "2026-01-01T00:00:00.Z", ""}) {
    expect_sync_bad(std::string(R"({"since":")") + s + "\"}", "invalid_value", "since");
  }
  expect_sync_bad(R"({"since":"2026-01-01T00:00:00Z","until":"soon"})", "invalid_value", "until");
  expect_sync_bad(R"({"since":"2026-01-01T00:00:00Z","until":5})", "invalid_type", "until");
}

TEST(SyncBody, UntilMustBeLaterThanSince) {
  expect_sync_bad(R"({"since":"2026-01-02T00:00:00Z","until":"2026-01-01T00:00:00Z"})",
                  "invalid_value", "until");
  expect_sync_bad(R"({"since":"2026-01-02T00:00:00Z","until":"2026-01-02T00:00:00Z"})",
                  "invalid_value", "until");
  // The same instant written with another offset is not later either.
  expect_sync_bad(R"({"since":"2026-01-02T00:00:00Z","until":"2026-01-02T01:00:00+01:00"})",
                  "invalid_value", "until");
  EXPECT_TRUE(
      sync_ok(R"({"since":"2026-01-02T00:00:00Z","until":"2026-01-02T00:00:00.001Z"})").until);
}

TEST(SyncBody, FoldersValidated) {
  const std::string since = R"("since":"2026-01-01T00:00:00Z")";
  auto with = [&](std::string folders) { return "{" + since + R"(,"folders":)" + folders + "}"; };
  expect_sync_bad(with("[]"), "invalid_value", "folders");
  expect_sync_bad(with(R"("INBOX")"), "invalid_type", "folders");
  expect_sync_bad(with(R"(["INBOX",5])"), "invalid_type", "folders[1]");
  expect_sync_bad(with(R"([""])"), "invalid_value", "folders[0]");
  expect_sync_bad(with(R"(["INBOX","a\r\nb"])"), "invalid_value", "folders[1]");
  expect_sync_bad(with("[\"" + std::string(1025, 'f') + "\"]"), "invalid_value", "folders[0]");
  EXPECT_EQ(sync_ok(with("[\"" + std::string(1024, 'f') + "\"]")).folders.size(), 1u);
  json::array many;
  for (int i = 0; i < 201; ++i) many.emplace_back("F" + std::to_string(i));
  expect_sync_bad(with(json::serialize(many)), "invalid_value", "folders");
  many.pop_back();
  EXPECT_EQ(sync_ok(with(json::serialize(many))).folders.size(), 200u);
}

TEST(SyncBody, UnknownFieldsAndBadJson) {
  expect_sync_bad(R"({"since":"2026-01-01T00:00:00Z","to":"x"})", "unknown_field", "to");
  expect_sync_bad(R"({"since":)", "invalid_json", "");
  expect_sync_bad("", "invalid_json", "");
  expect_sync_bad(R"("2026-01-01T00:00:00Z")", "invalid_type", "");
}

}  // namespace
}  // namespace el::http
