// Modified UTF-7, quoting and base64 for the IMAP client.
#include "imap/encoding.hpp"

#include <cstdint>
#include <vector>

namespace el::imap {

namespace {

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Decodes one UTF-8 code point at s[i]; advances i. Returns false when malformed.
bool next_code_point(std::string_view s, std::size_t& i, std::uint32_t& cp) {
  auto b = static_cast<unsigned char>(s[i]);
  int extra = 0;
  if (b < 0x80) {
    cp = b;
  } else if ((b & 0xe0) == 0xc0) {
    cp = b & 0x1f;
    extra = 1;
  } else if ((b & 0xf0) == 0xe0) {
    cp = b & 0x0f;
    extra = 2;
  } else if ((b & 0xf8) == 0xf0) {
    cp = b & 0x07;
    extra = 3;
  } else {
    return false;
  }
  if (i + static_cast<std::size_t>(extra) >= s.size()) return false;
  for (int k = 1; k <= extra; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (c & 0x3f);
  }
  static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  i += 1 + extra;
  return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

void flush_utf16(std::string& out, std::vector<std::uint16_t>& units) {
  if (units.empty()) return;
  out += '&';
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint16_t u : units) {
    acc = (acc << 16) | u;
    bits += 16;
    while (bits >= 6) {
      bits -= 6;
      char c = kB64[(acc >> bits) & 0x3f];
      out += c == '/' ? ',' : c;
    }
    acc &= (1u << bits) - 1;
  }
  if (bits > 0) {
    char c = kB64[(acc << (6 - bits)) & 0x3f];
    out += c == '/' ? ',' : c;
  }
  out += '-';
  units.clear();
}

int b64_value(char c, bool modified) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == (modified ? ',' : '/')) return 63;
  return -1;
}

}  // namespace

std::optional<std::string> encode_mutf7(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() + 8);
  std::vector<std::uint16_t> units;
  std::size_t i = 0;
  while (i < utf8.size()) {
    std::uint32_t cp = 0;
    if (!next_code_point(utf8, i, cp)) return std::nullopt;
    if (cp >= 0x20 && cp <= 0x7e) {
      flush_utf16(out, units);
      out += static_cast<char>(cp);
      if (cp == '&') out += '-';
    } else if (cp < 0x10000) {
      units.push_back(static_cast<std::uint16_t>(cp));
    } else {
      cp -= 0x10000;
      units.push_back(static_cast<std::uint16_t>(0xd800 + (cp >> 10)));
      units.push_back(static_cast<std::uint16_t>(0xdc00 + (cp & 0x3ff)));
    }
  }
  flush_utf16(out, units);
  return out;
}

std::optional<std::string> decode_mutf7(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      return std::nullopt;
    }
    if (c != '&') {
      out += c;
      ++i;
      continue;
    }
    ++i;
    if (i < s.size() && s[i] == '-') {
      out += '&';
      ++i;
      continue;
    }
    std::uint32_t acc = 0;
    int bits = 0;
    std::uint32_t high = 0;  // pending high surrogate
    bool any = false;
    while (i < s.size() && s[i] != '-') {
      int v = b64_value(s[i], true);
      if (v < 0) return std::nullopt;
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 16) {
        bits -= 16;
        std::uint32_t u = (acc >> bits) & 0xffff;
        acc &= (1u << bits) - 1;
        any = true;
        if (u >= 0xd800 && u <= 0xdbff) {
          if (high) return std::nullopt;
          high = u;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
          if (!high) return std::nullopt;
          append_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
          high = 0;
        } else {
          if (high) return std::nullopt;
          append_utf8(out, u);
        }
      }
      ++i;
    }
    if (i >= s.size() || !any || high || acc != 0) return std::nullopt;
    ++i;  // '-'
  }
  return out;
}

bool needs_literal(std::string_view s) {
  if (s.size() > 1024) return true;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0 || u == '\r' || u == '\n' || u >= 0x80) return true;
  }
  return false;
}

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string base64_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    std::uint32_t v = (static_cast<unsigned char>(data[i]) << 16) |
                      (static_cast<unsigned char>(data[i + 1]) << 8) |
                      static_cast<unsigned char>(data[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 0x3f];
    out += kB64[(v >> 6) & 0x3f];
    out += kB64[v & 0x3f];
  }
  if (i < data.size()) {
    std::uint32_t v = static_cast<unsigned char>(data[i]) << 16;
    if (i + 1 < data.size()) v |= static_cast<unsigned char>(data[i + 1]) << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 0x3f];
    out += i + 1 < data.size() ? kB64[(v >> 6) & 0x3f] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view b64) {
  if (b64.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < 2 && pad < b64.size() && b64[b64.size() - 1 - pad] == '=') ++pad;
  std::string out;
  out.reserve(b64.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < b64.size() - pad; ++i) {
    int v = b64_value(b64[i], false);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return std::nullopt;  // non-canonical: stray bits before the padding
  return out;
}

}  // namespace el::imap
