// SMTP reply parsing: line splitting across reads, code and continuation checks, limits.
#include "smtp/reply_parser.hpp"

#include <utility>

namespace el::smtp {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A run of 1 to 3 digits at `i`; advances `i`.
bool digits(std::string_view s, std::size_t& i) {
  std::size_t start = i;
  while (i < s.size() && i - start < 3 && is_digit(s[i])) ++i;
  return i > start && (i >= s.size() || !is_digit(s[i]));
}

// Printable text for error messages: a hostile server must not fill our logs with control bytes.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::string_view enhanced_prefix(std::string_view text, char klass) {
  // status-code = class "." subject "." detail; subject and detail are 1 to 3 digits.
  if (text.size() < 5 || text[0] != klass || text[1] != '.') return {};
  std::size_t i = 2;
  if (!digits(text, i) || i >= text.size() || text[i] != '.') return {};
  ++i;
  if (!digits(text, i)) return {};
  if (i < text.size() && text[i] != ' ') return {};
  return text.substr(0, i);
}

void ReplyParser::reset() {
  line_.clear();
  reply_ = Reply{};
  lines_ = 0;
  failed_ = false;
  error_.clear();
}

void ReplyParser::set_error(std::string msg) {
  failed_ = true;
  error_ = std::move(msg);
}

ReplyParser::Result ReplyParser::parse(std::string_view in, std::size_t& used, Reply& out) {
  used = 0;
  if (failed_) return Result::error;
  while (used < in.size()) {
    std::string_view rest = in.substr(used);
    const std::size_t lf = rest.find('\n');
    if (lf == std::string_view::npos) {
      // +1: a CR that ends this chunk may still be followed by its LF.
      if (line_.size() + rest.size() > limits_.max_line + 1) {
        set_error("reply line longer than " + std::to_string(limits_.max_line) + " octets");
        return Result::error;
      }
      line_.append(rest);
      used = in.size();
      return Result::need_more;
    }
    used += lf + 1;
    std::string_view line = rest.substr(0, lf);
    if (!line_.empty()) {
      line_.append(line);
      line = line_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > limits_.max_line) {
      set_error("reply line longer than " + std::to_string(limits_.max_line) + " octets");
      return Result::error;
    }
    const bool last = take_line(line);
    line_.clear();
    if (failed_) return Result::error;
    if (last) {
      out = std::move(reply_);
      reply_ = Reply{};
      lines_ = 0;
      return Result::done;
    }
  }
  return Result::need_more;
}

bool ReplyParser::take_line(std::string_view line) {
  // Reply-line = code [ ("-" / SP) text ] CRLF (RFC 5321 4.2); "250" alone ends a reply too.
  if (line.size() < 3 || !(line[0] >= '1' && line[0] <= '5') || !is_digit(line[1]) ||
      !is_digit(line[2]) || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    set_error("malformed reply line: " + printable(line));
    return false;
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (lines_ == 0) {
    reply_.code = code;
  } else if (code != reply_.code) {
    set_error("reply code changed within a multi-line reply: " + printable(line));
    return false;
  }
  if (++lines_ > limits_.max_lines) {
    set_error("reply longer than " + std::to_string(limits_.max_lines) + " lines");
    return false;
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  // Servers with ENHANCEDSTATUSCODES repeat the code on every line; keep it once.
  std::string_view enhanced = enhanced_prefix(text, line[0]);
  if (!enhanced.empty()) {
    if (lines_ == 1) reply_.enhanced = std::string(enhanced);
    text.remove_prefix(enhanced.size());
    if (!text.empty()) text.remove_prefix(1);
  }
  if (lines_ > 1) reply_.text += '\n';
  reply_.text.append(text);
  return line.size() == 3 || line[3] == ' ';
}

}  // namespace el::smtp
