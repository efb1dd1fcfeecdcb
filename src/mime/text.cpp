// UTF-8 repair, charset decoding through iconv (GMime's descriptor cache) and base64 encoding.
#include "mime/text.hpp"

#include <gmime/gmime.h>
#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace el::mime::detail {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence at p (1..4), or 0 if ill-formed; *bad_len receives
// the length of the maximal ill-formed subpart to replace with one U+FFFD (at least 1).
inline std::size_t utf8_sequence(const unsigned char* p, const unsigned char* end,
                                 std::size_t* bad_len) noexcept {
  const unsigned char c = p[0];
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode table 3-7)
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *bad_len = 1;
    return 0;
  }
  std::size_t i = 1;
  for (; i < need; ++i) {
    if (p + i >= end) break;
    const unsigned char b = p[i];
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  if (i == need) return need;
  *bad_len = i;
  return 0;
}

inline bool all_ascii8(const unsigned char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return (v & 0x8080808080808080ULL) == 0;
}

std::string lower_ascii(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return r;
}

// Charsets whose declared name under-describes what senders actually use; we pick the superset
// that mail clients (and the WHATWG encoding standard) decode them as.
const char* superset_charset(const std::string& cs) {
  if (cs == "iso-8859-1" || cs == "iso8859-1" || cs == "latin1" || cs == "iso_8859-1" ||
      cs == "l1" || cs == "cp819")
    return "WINDOWS-1252";
  if (cs == "gb2312" || cs == "gbk" || cs == "x-gbk" || cs == "euc-cn" || cs == "cp936" ||
      cs == "chinese")
    return "GB18030";
  if (cs == "shift_jis" || cs == "shift-jis" || cs == "sjis" || cs == "x-sjis" ||
      cs == "ms_kanji" || cs == "windows-31j" || cs == "csshiftjis")
    return "CP932";
  if (cs == "ks_c_5601-1987" || cs == "euc-kr" || cs == "ks_c_5601" || cs == "korean")
    return "CP949";
  if (cs == "iso-2022-jp") return "ISO-2022-JP-2";
  if (cs == "tis-620" || cs == "iso-8859-11") return "CP874";
  return nullptr;
}

bool is_utf8_label(const std::string& cs) {
  return cs == "utf-8" || cs == "utf8" || cs == "x-utf-8" || cs == "unicode-1-1-utf-8";
}

bool is_ascii_label(const std::string& cs) {
  return cs.empty() || cs == "us-ascii" || cs == "ascii" || cs == "ansi_x3.4-1968" ||
         cs == "iso646-us" || cs == "646" || cs == "default" || cs == "x-unknown";
}

void append_latin1(std::string& out, std::string_view bytes) {
  for (unsigned char c : bytes) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
}

class Iconv {
 public:
  explicit Iconv(const char* from) : cd_(g_mime_iconv_open("UTF-8", from)) {}
  ~Iconv() {
    if (ok()) g_mime_iconv_close(cd_);
  }
  Iconv(const Iconv&) = delete;
  Iconv& operator=(const Iconv&) = delete;
  bool ok() const { return cd_ != reinterpret_cast<iconv_t>(-1); }
  iconv_t get() const { return cd_; }

 private:
  iconv_t cd_;
};

// Converts with iconv, turning each undecodable byte into U+FFFD instead of failing.
std::size_t convert(iconv_t cd, std::string& out, std::string_view bytes) {
  constexpr auto kFail = static_cast<std::size_t>(-1);
  std::size_t replaced = 0;
  iconv(cd, nullptr, nullptr, nullptr, nullptr);  // reset shift state (stateful charsets)
  char* in = const_cast<char*>(bytes.data());     // iconv's signature; it does not write input
  std::size_t in_left = bytes.size();
  std::size_t used = out.size();
  out.resize(used + bytes.size() * 2 + 16);
  while (in_left > 0) {
    char* dst = out.data() + used;
    std::size_t out_left = out.size() - used;
    const std::size_t rc = iconv(cd, &in, &in_left, &dst, &out_left);
    used = out.size() - out_left;
    if (rc != kFail) continue;
    if (errno == E2BIG) {
      out.resize(out.size() + in_left * 2 + 64);
      continue;
    }
    // EILSEQ (invalid byte) or EINVAL (incomplete sequence at the end): replace and go on.
    if (out.size() - used < kReplacement.size()) out.resize(out.size() + 64);
    std::memcpy(out.data() + used, kReplacement.data(), kReplacement.size());
    used += kReplacement.size();
    ++replaced;
    if (errno == EINVAL) break;
    ++in;
    --in_left;
  }
  // Flush: stateful decoders (ISO-2022-JP, UTF-7) may still hold a pending character.
  for (;;) {
    char* dst = out.data() + used;
    std::size_t out_left = out.size() - used;
    const std::size_t rc = iconv(cd, nullptr, nullptr, &dst, &out_left);
    used = out.size() - out_left;
    if (rc != kFail || errno != E2BIG) break;
    out.resize(out.size() + 64);
  }
  out.resize(used);
  return replaced;
}

}  // namespace

bool is_valid_utf8(std::string_view s) noexcept {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  const auto end = p + s.size();
  while (p < end) {
    if (end - p >= 8 && all_ascii8(p)) {
      p += 8;
      continue;
    }
    std::size_t bad = 0;
    const std::size_t n = utf8_sequence(p, end, &bad);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

std::size_t append_utf8_repaired(std::string& out, std::string_view s) {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  const auto begin = p;
  const auto end = p + s.size();
  auto run = p;  // start of the pending well-formed run, appended in one go
  std::size_t replaced = 0;
  while (p < end) {
    if (end - p >= 8 && all_ascii8(p)) {
      p += 8;
      continue;
    }
    std::size_t bad = 0;
    const std::size_t n = utf8_sequence(p, end, &bad);
    if (n != 0) {
      p += n;
      continue;
    }
    out.append(s.data() + (run - begin), static_cast<std::size_t>(p - run));
    out.append(kReplacement);
    ++replaced;
    p += bad;
    run = p;
  }
  out.append(s.data() + (run - begin), static_cast<std::size_t>(end - run));
  return replaced;
}

std::string to_valid_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  append_utf8_repaired(out, s);
  return out;
}

DecodeResult append_decoded(std::string& out, std::string_view bytes, std::string_view charset) {
  DecodeResult r;
  const std::string cs = lower_ascii(charset);
  if (is_utf8_label(cs)) {
    r.replaced = append_utf8_repaired(out, bytes);
    return r;
  }
  if (is_ascii_label(cs)) {
    // Pure ASCII, or UTF-8 mislabelled as ASCII (common, and unambiguous enough to keep).
    if (is_valid_utf8(bytes)) {
      out.append(bytes);
      return r;
    }
    r.ascii_fallback = true;
    Iconv cd("WINDOWS-1252");
    if (cd.ok()) {
      r.replaced = convert(cd.get(), out, bytes);
    } else {
      append_latin1(out, bytes);
    }
    return r;
  }
  const char* name = superset_charset(cs);
  Iconv cd(name != nullptr ? name : cs.c_str());
  if (!cd.ok() && name != nullptr) {
    Iconv plain(cs.c_str());  // the superset is missing from this iconv: try the label itself
    if (plain.ok()) {
      r.replaced = convert(plain.get(), out, bytes);
      return r;
    }
  }
  if (!cd.ok()) {
    r.unknown_charset = true;
    if (is_valid_utf8(bytes)) {
      out.append(bytes);
    } else {
      append_latin1(out, bytes);  // total mapping: no byte is lost, every byte stays visible
    }
    return r;
  }
  r.replaced = convert(cd.get(), out, bytes);
  return r;
}

void append_normalized_newlines(std::string& out, std::string_view bytes) {
  std::size_t start = 0;
  for (;;) {
    const std::size_t cr = bytes.find('\r', start);
    if (cr == std::string_view::npos) {
      out.append(bytes.substr(start));
      return;
    }
    out.append(bytes.substr(start, cr - start));
    out.push_back('\n');
    start = cr + 1;
    if (start < bytes.size() && bytes[start] == '\n') ++start;
  }
}

void base64_encode(std::string_view in, char* out) noexcept {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto p = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size();
  while (n >= 3) {
    const std::uint32_t v = (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[1]} << 8) | p[2];
    out[0] = kAlphabet[(v >> 18) & 63];
    out[1] = kAlphabet[(v >> 12) & 63];
    out[2] = kAlphabet[(v >> 6) & 63];
    out[3] = kAlphabet[v & 63];
    p += 3;
    n -= 3;
    out += 4;
  }
  if (n > 0) {
    std::uint32_t v = std::uint32_t{p[0]} << 16;
    if (n == 2) v |= std::uint32_t{p[1]} << 8;
    out[0] = kAlphabet[(v >> 18) & 63];
    out[1] = kAlphabet[(v >> 12) & 63];
    out[2] = n == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out[3] = '=';
  }
}

}  // namespace el::mime::detail
