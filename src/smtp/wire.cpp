// DATA encoding, base64 and queue-id parsing for the SMTP client.
#include "smtp/wire.hpp"

#include <algorithm>

#include "imap/encoding.hpp"

namespace el::smtp {

namespace {

constexpr std::size_t kMaxQueueId = 128;

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// Case-insensitive find of an ASCII needle.
std::size_t ifind(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return lower(a) == lower(b); });
  return it == hay.end() ? std::string_view::npos : static_cast<std::size_t>(it - hay.begin());
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ifind(s.substr(0, prefix.size()), prefix) == 0;
}

bool id_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '_' || c == '.' || c == '@' || c == '=' || c == '+' || c == '/' || c == '$' ||
         c == '%';
}

// The id-like token at the start of `s` (after spaces), trailing dots removed; empty if none.
std::string token_at(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  std::size_t n = 0;
  while (n < s.size() && id_char(s[n])) ++n;
  std::string_view t = s.substr(0, n);
  while (!t.empty() && (t.back() == '.' || t.back() == '-')) t.remove_suffix(1);
  if (t.size() > kMaxQueueId) return {};
  return std::string(t);
}

// Ids carry digits; words such as "Message" or "Ok" do not.
bool has_digit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

DataStats measure_data(std::string_view data) {
  DataStats st;
  bool line_start = true;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
      st.size += 2;
      line_start = true;
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80) st.eight_bit = true;
    ++st.size;
    line_start = false;
  }
  if (!line_start) st.size += 2;
  return st;
}

void DataEncoder::next(std::string& out, std::size_t max) {
  while (out.size() < max && pos_ < data_.size()) {
    const char c = data_[pos_];
    if (c == '\r' || c == '\n') {
      const bool crlf = c == '\r' && pos_ + 1 < data_.size() && data_[pos_ + 1] == '\n';
      pos_ += crlf ? 2 : 1;
      out += "\r\n";
      line_start_ = true;
      continue;
    }
    if (line_start_ && c == '.') out += '.';
    line_start_ = false;
    std::size_t end = data_.find_first_of("\r\n", pos_);
    if (end == std::string_view::npos) end = data_.size();
    const std::size_t room = out.size() < max ? max - out.size() : 1;
    end = std::min(end, pos_ + room);
    out.append(data_.substr(pos_, end - pos_));
    pos_ = end;
  }
  if (pos_ == data_.size() && !finished_) {
    if (!line_start_) out += "\r\n";
    out += ".\r\n";
    finished_ = true;
  }
}

std::string encode_data(std::string_view data) {
  std::string out;
  DataEncoder enc(data);
  enc.next(out, data.size() + data.size() / 8 + 8);
  while (!enc.done()) enc.next(out, out.size() + 4096);
  return out;
}

std::string base64_encode(std::string_view data) { return imap::base64_encode(data); }

std::optional<std::string> base64_decode(std::string_view b64) {
  while (!b64.empty() && (b64.back() == ' ' || b64.back() == '\r')) b64.remove_suffix(1);
  if (b64.size() > (1u << 20)) return std::nullopt;
  return imap::base64_decode(b64);
}

std::string parse_queue_id(std::string_view text) {
  text = text.substr(0, text.find('\n'));  // the first line says it
  // Postfix "Ok: queued as 4F1A2B3C", Haraka, Exchange on-premises "queued as ...".
  if (auto p = ifind(text, "queued as "); p != std::string_view::npos) {
    auto id = token_at(text.substr(p + 10));
    if (!id.empty()) return id;
  }
  // Microsoft 365 and others: "<id> Message accepted", "OK <id> [Hostname=...]".
  if (auto open = text.find('<'); open != std::string_view::npos) {
    auto close = text.find('>', open);
    if (close != std::string_view::npos && close - open - 1 <= kMaxQueueId && close > open + 1) {
      std::string_view id = text.substr(open + 1, close - open - 1);
      if (std::all_of(id.begin(), id.end(), id_char)) return std::string(id);
    }
  }
  // Exim "OK id=1qXyZ-0001ab-Cd" (a word of its own: not Microsoft's "[InternalId=...").
  for (auto p = ifind(text, "id="); p != std::string_view::npos;) {
    if (p == 0 || text[p - 1] == ' ') {
      auto id = token_at(text.substr(p + 3));
      if (!id.empty()) return id;
    }
    auto next = ifind(text.substr(p + 1), "id=");
    p = next == std::string_view::npos ? next : p + 1 + next;
  }
  // Gmail "OK  1718035200 d9443c01a7336-1f6f3bb2sm12345.123 - gsmtp": the token before " - ".
  if (auto p = text.rfind(" - gsmtp"); p != std::string_view::npos) {
    std::string_view head = text.substr(0, p);
    auto sp = head.rfind(' ');
    auto id = token_at(sp == std::string_view::npos ? head : head.substr(sp + 1));
    if (!id.empty()) return id;
  }
  // "Ok 1234abcd", "Ok: 1234abcd", "OK 1718035200 qp 42" (qmail: the first token).
  if (istarts_with(text, "ok")) {
    std::string_view rest = text.substr(2);
    if (!rest.empty() && rest.front() == ':') rest.remove_prefix(1);
    if (!rest.empty() && rest.front() == ' ') {
      auto id = token_at(rest);
      if (!id.empty() && has_digit(id)) return id;
    }
    return {};
  }
  // Sendmail "x9K3abc123 Message accepted for delivery", and "4F1A2B3C queued".
  auto id = token_at(text);
  if (!id.empty() && has_digit(id) && id.size() >= 6) {
    std::string_view rest = text.substr(text.find(id) + id.size());
    if (ifind(rest, "accepted") != std::string_view::npos ||
        ifind(rest, "queued") != std::string_view::npos) {
      return id;
    }
  }
  return {};
}

}  // namespace el::smtp
