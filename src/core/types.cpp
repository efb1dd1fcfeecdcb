// Domain type helpers: enum names, stable event ids, RFC 3339 time.
#include "core/types.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace el::core {

std::string_view to_string(Security s) {
  switch (s) {
    case Security::tls:
      return "tls";
    case Security::starttls:
      return "starttls";
    case Security::none:
      return "none";
  }
  return "none";
}

std::optional<Security> security_from_string(std::string_view s) {
  if (s == "tls") return Security::tls;
  if (s == "starttls") return Security::starttls;
  if (s == "none") return Security::none;
  return std::nullopt;
}

std::string_view to_string(SessionState s) {
  switch (s) {
    case SessionState::connecting:
      return "connecting";
    case SessionState::idle:
      return "idle";
    case SessionState::polling:
      return "polling";
    case SessionState::backoff:
      return "backoff";
    case SessionState::auth_failed:
      return "auth_failed";
    case SessionState::stopped:
      return "stopped";
  }
  return "stopped";
}

namespace {
std::string to_hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}
}  // namespace

std::string message_event_id(std::string_view mailbox_id, std::string_view folder,
                             std::uint32_t uidvalidity, std::uint32_t uid) {
  // Length-prefixed fields so that ("a","bc") and ("ab","c") cannot collide.
  std::string input;
  input.reserve(mailbox_id.size() + folder.size() + 48);
  input += std::to_string(mailbox_id.size()) + ':';
  input += mailbox_id;
  input += std::to_string(folder.size()) + ':';
  input += folder;
  input += std::to_string(uidvalidity) + ':' + std::to_string(uid);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256 failed");
  return to_hex(md, 16);
}

std::string random_event_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
  return to_hex(b, sizeof b);
}

std::string format_rfc3339(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  if (ms < 0 && ms % 1000) --secs;
  int millis = static_cast<int>(((ms % 1000) + 1000) % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto digits = [&](std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int Y, M, D, h, m, sec;
  if (!digits(0, 4, Y) || s.size() < 20 || s[4] != '-' || !digits(5, 2, M) || s[7] != '-' ||
      !digits(8, 2, D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(11, 2, h) ||
      s[13] != ':' || !digits(14, 2, m) || s[16] != ':' || !digits(17, 2, sec))
    return std::nullopt;
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return std::nullopt;
  std::size_t pos = 19;
  long long frac_ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int nd = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (nd < 3) frac_ms = frac_ms * 10 + (s[pos] - '0');
      ++nd;
      ++pos;
    }
    if (nd == 0) return std::nullopt;
    for (int i = nd; i < 3; ++i) frac_ms *= 10;
  }
  long offset_s = 0;
  if (pos == s.size()) return std::nullopt;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!digits(pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(pos + 4, 2, om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_s = (oh * 3600L + om * 60L) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{year{Y}, month{static_cast<unsigned>(M)}, day{static_cast<unsigned>(D)}};
  if (!ymd.ok()) return std::nullopt;
  const auto tp = sys_days{ymd} + hours{h} + minutes{m} + seconds{sec} + milliseconds{frac_ms} -
                  seconds{offset_s};
  return time_point_cast<system_clock::duration>(tp);
}

std::uint16_t SmtpSettings::effective_port() const {
  if (port != 0) return port;
  switch (security) {
    case Security::tls:
      return 465;
    case Security::starttls:
      return 587;
    case Security::none:
      return 25;
  }
  return 465;
}

}  // namespace el::core
