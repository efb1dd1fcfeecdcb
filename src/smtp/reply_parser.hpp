// SMTP reply parser without I/O (like Beast's basic_parser): feed bytes, get complete replies,
// multi-line ("250-" ... "250 ") and RFC 3463 enhanced codes, with bounded line length and count.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "smtp/client.hpp"

namespace el::smtp {

struct ReplyParserLimits {
  std::size_t max_line = 4096;  // octets per line, without CRLF
  std::size_t max_lines = 100;  // lines per reply
};

// Keeps its state across calls, so a reply may arrive split at any byte. Not thread-safe.
class ReplyParser {
 public:
  enum class Result { need_more, done, error };

  explicit ReplyParser(ReplyParserLimits limits = {}) : limits_(limits) {}

  // Consumes bytes from `in` until one reply is complete (done: `out` holds it and `used` counts
  // the bytes up to its last line's LF; the rest of `in` is not touched) or `in` ends (need_more:
  // all of it was consumed). error: the input is not SMTP; error() says why, and the parser stays
  // in error until reset().
  Result parse(std::string_view in, std::size_t& used, Reply& out);

  // No partial line or reply is buffered.
  bool idle() const { return line_.empty() && lines_ == 0 && !failed_; }
  const std::string& error() const { return error_; }
  void reset();

 private:
  // One complete line (without CR LF); true when it ended the reply.
  bool take_line(std::string_view line);
  void set_error(std::string msg);

  ReplyParserLimits limits_;
  std::string line_;  // a line split across calls
  Reply reply_;       // the reply being assembled
  std::size_t lines_ = 0;
  bool failed_ = false;
  std::string error_;
};

// "2.1.5 Ok" -> "2.1.5", when `text` starts with an enhanced status code (RFC 3463) of class
// `klass` ('2', '4', '5') followed by a space or the end. Empty otherwise.
std::string_view enhanced_prefix(std::string_view text, char klass);

}  // namespace el::smtp
