// UTF-8 repair, charset decoding and base64 helpers behind el::mime::to_json.
#include "mime/text.hpp"

#include <gtest/gtest.h>

#include <string>

#include "mime/message.hpp"

namespace {

using namespace el::mime::detail;

std::string repaired(std::string_view s) {
  std::string out;
  append_utf8_repaired(out, s);
  return out;
}

std::string decoded(std::string_view bytes, std::string_view charset, DecodeResult* r = nullptr) {
  el::mime::initialize();  // iconv descriptors come from GMime's cache
  std::string out;
  DecodeResult res = append_decoded(out, bytes, charset);
  if (r != nullptr) *r = res;
  return out;
}

TEST(Utf8, ValidInputIsKept) {
  for (std::string_view s :
       {"", "ascii only, longer than eight bytes", "é", "€", "𝄞", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(is_valid_utf8(s)) << s;
    EXPECT_EQ(repaired(s), s);
  }
}

TEST(Utf8, MaximalSubpartsBecomeOneReplacementEach) {
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));
  EXPECT_EQ(repaired("a\xC0\xAF"
                     "b"),
            "a\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");                                   // overlong: 2
  EXPECT_EQ(repaired("\xE2\x82"), "\xEF\xBF\xBD");  // truncated: 1
  EXPECT_EQ(repaired("\xE2\x82"
                     "x"),
            "\xEF\xBF\xBD"
            "x");
  EXPECT_EQ(repaired("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(repaired("\xF4\x90\x80\x80"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // above U+10FFFF
  EXPECT_EQ(repaired("12345678\xFF"), "12345678\xEF\xBF\xBD");
  std::string out;
  EXPECT_EQ(append_utf8_repaired(out, "\xFF\xFE ok"), 2u);
}

TEST(Charset, CommonCharsetsDecode) {
  EXPECT_EQ(decoded("Gr\xFC\xDF"
                    "e \x80",
                    "ISO-8859-1"),
            "Grüße €");  // read as windows-1252
  EXPECT_EQ(decoded("\xD0\xD2\xC9\xD7\xC5\xD4", "koi8-r"), "привет");
  EXPECT_EQ(decoded("\x82\xB1\x82\xF1", "Shift_JIS"), "こん");
  EXPECT_EQ(decoded("\xC4\xE3\xBA\xC3", "gb2312"), "你好");
  EXPECT_EQ(decoded("Hi +Jjo-", "UTF-7"), "Hi ☺");
  EXPECT_EQ(decoded("\x1B$B$3$s\x1B(B!", "iso-2022-jp"), "こん!");
  EXPECT_EQ(decoded("\xC7\xE4", "windows-1251"), "Зд");
}

TEST(Charset, UndecodableBytesAreReplacedAndCounted) {
  DecodeResult r;
  EXPECT_EQ(decoded("a\x81"
                    "b",
                    "windows-1252", &r),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(r.replaced, 1u);
  EXPECT_EQ(decoded("\x82", "shift_jis", &r), "\xEF\xBF\xBD");  // incomplete at the end
  EXPECT_EQ(r.replaced, 1u);
}

TEST(Charset, UnknownAndAsciiLabels) {
  DecodeResult r;
  EXPECT_EQ(decoded("caf\xE9", "x-nonexistent", &r), "café");
  EXPECT_TRUE(r.unknown_charset);
  EXPECT_EQ(decoded("caf\xC3\xA9", "x-nonexistent", &r), "café");
  EXPECT_EQ(decoded("caf\xC3\xA9", "us-ascii", &r), "café");  // mislabelled UTF-8 is kept
  EXPECT_FALSE(r.ascii_fallback);
  EXPECT_EQ(decoded("caf\xE9", "", &r), "café");
  EXPECT_TRUE(r.ascii_fallback);
}

TEST(Newlines, CrLfAndLoneCrBecomeLf) {
  std::string out;
  append_normalized_newlines(out, "a\r\nb\rc\n\r\n");
  EXPECT_EQ(out, "a\nb\nc\n\n");
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> cases[] = {{"", ""},
                                                                 {"f", "Zg=="},
                                                                 {"fo", "Zm8="},
                                                                 {"foo", "Zm9v"},
                                                                 {"foob", "Zm9vYg=="},
                                                                 {"fooba", "Zm9vYmE="},
                                                                 {"foobar", "Zm9vYmFy"}};
  for (auto [in, want] : cases) {
    std::string out(base64_encoded_size(in.size()), '?');
    base64_encode(in, out.data());
    EXPECT_EQ(out, want);
  }
}

}  // namespace
