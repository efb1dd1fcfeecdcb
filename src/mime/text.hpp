// Byte-level text helpers for el::mime: UTF-8 validation/repair, charset decoding, base64.
// Pure functions, thread-safe (iconv descriptors come from GMime's locked cache).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace el::mime::detail {

// True if s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

// Appends s to out with every maximal ill-formed subsequence replaced by U+FFFD (the Unicode
// "substitution of maximal subparts" practice, as browsers do). Returns the replacements made.
std::size_t append_utf8_repaired(std::string& out, std::string_view s);

// s as valid UTF-8 (a copy, repaired if needed).
std::string to_valid_utf8(std::string_view s);

struct DecodeResult {
  std::size_t replaced = 0;      // bytes or sequences that became U+FFFD
  bool unknown_charset = false;  // iconv knows no such charset: decoded as UTF-8 or Latin-1
  bool ascii_fallback = false;   // us-ascii/unlabelled text had 8-bit bytes: read as Windows-1252
};

// Appends bytes (in charset, as declared by the part; empty = unlabelled) to out as UTF-8.
// Never fails: undecodable input becomes U+FFFD and is counted in the result.
DecodeResult append_decoded(std::string& out, std::string_view bytes, std::string_view charset);

// Appends bytes to out with CRLF (and lone CR) turned into LF.
void append_normalized_newlines(std::string& out, std::string_view bytes);

// Encoded length and encoder (standard alphabet, padded, no line breaks).
constexpr std::size_t base64_encoded_size(std::size_t n) { return (n + 2) / 3 * 4; }
void base64_encode(std::string_view in, char* out) noexcept;

}  // namespace el::mime::detail
