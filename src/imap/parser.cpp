// Incremental IMAP response parser: framing (lines and literals) across partial input, then a
// single-pass tokenizer over the complete response into a flat value tree.
#include "imap/parser.hpp"

#include <algorithm>
#include <cstring>

namespace el::imap {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Finds a literal marker "{n}" / "{n+}" / "~{n}" at the end of a line (CRLF already stripped).
// Returns false when the line does not end in one; sets `bad` when it does but n is malformed.
bool literal_marker(std::string_view line, std::uint64_t& n, bool& bad) {
  bad = false;
  if (line.empty() || line.back() != '}') return false;
  std::size_t i = line.size() - 1;
  if (i > 0 && line[i - 1] == '+') --i;  // LITERAL+ / LITERAL- (servers do not send it; harmless)
  std::size_t digits_end = i;
  while (i > 0 && is_digit(line[i - 1])) --i;
  if (i == 0 || line[i - 1] != '{') return false;
  if (i == digits_end || digits_end - i > 19) {
    bad = true;
    return true;
  }
  n = 0;
  for (std::size_t k = i; k < digits_end; ++k) n = n * 10 + static_cast<unsigned>(line[k] - '0');
  return true;
}

}  // namespace

// ---- Value / Response --------------------------------------------------------------------------

Value::iterator& Value::iterator::operator++() {
  i_ = r_->nodes_[i_].next;
  return *this;
}

ValueType Value::type() const { return r_->nodes_[i_].type; }

std::string_view Value::text() const {
  const auto& n = r_->nodes_[i_];
  if (n.type == ValueType::list || n.type == ValueType::nil) return {};
  return std::string_view(r_->raw_).substr(n.off, n.len);
}

std::uint64_t Value::number() const { return r_->nodes_[i_].number; }

std::size_t Value::size() const {
  const auto& n = r_->nodes_[i_];
  return n.type == ValueType::list ? n.count : 0;
}

Value::iterator Value::begin() const { return iterator(r_, size() > 0 ? i_ + 1 : Response::kNone); }

Value::iterator Value::end() const { return iterator(r_, Response::kNone); }

Value Value::operator[](std::size_t i) const {
  auto it = begin();
  while (i-- > 0) ++it;
  return *it;
}

Value::iterator ValueRange::end() const { return Value::iterator(r, Response::kNone); }

Value ValueRange::operator[](std::size_t i) const {
  auto it = begin();
  while (i-- > 0) ++it;
  return *it;
}

bool Response::name_is(std::string_view n) const { return iequals(name(), n); }
bool Response::code_is(std::string_view c) const { return iequals(code(), c); }

void Response::clear() {
  nodes_.clear();
  kind_ = ResponseKind::untagged;
  status_ = Status::none;
  has_number_ = false;
  number_ = 0;
  tag_ = name_ = code_ = code_text_ = text_ = {};
  code_first_ = data_first_ = kNone;
  code_count_ = data_count_ = 0;
}

void Response::shrink(std::size_t max_capacity) {
  if (capacity() <= max_capacity) return;
  clear();
  std::string().swap(raw_);
  std::vector<Node>().swap(nodes_);
}

// ---- Tokenizer: one complete response ----------------------------------------------------------

class Tokenizer {
 public:
  Tokenizer(Response& r, const ParserLimits& limits, std::string& err)
      : r_(r), s_(r.raw_), limits_(limits), err_(err) {}

  bool run() {
    r_.clear();
    end_ = s_.size();
    if (end_ >= 2 && s_[end_ - 2] == '\r' && s_[end_ - 1] == '\n') {
      end_ -= 2;
    } else if (end_ >= 1 && s_[end_ - 1] == '\n') {
      end_ -= 1;  // tolerate a bare LF
    } else {
      return fail("response does not end in CRLF");
    }
    if (end_ == 0) return fail("empty response line");
    if (s_[0] == '+') {
      r_.kind_ = ResponseKind::continuation;
      pos_ = 1;
      if (pos_ < end_ && s_[pos_] == ' ') ++pos_;
      r_.text_ = span(pos_, end_);
      return true;
    }
    if (s_[0] == '*') {
      if (end_ < 2 || s_[1] != ' ') return fail("expected SP after '*'");
      r_.kind_ = ResponseKind::untagged;
      pos_ = 2;
      if (pos_ < end_ && is_digit(s_[pos_])) {
        std::uint64_t n = 0;
        std::size_t start = pos_;
        while (pos_ < end_ && is_digit(s_[pos_])) n = n * 10 + (s_[pos_++] - '0');
        if (pos_ - start > 10 || n > 0xffffffffull) return fail("message number out of range");
        if (pos_ >= end_ || s_[pos_] != ' ') return fail("expected SP after number");
        ++pos_;
        r_.has_number_ = true;
        r_.number_ = static_cast<std::uint32_t>(n);
      }
    } else {
      std::size_t start = pos_ = 0;
      while (pos_ < end_ && s_[pos_] != ' ' && is_tag_char(s_[pos_])) ++pos_;
      if (pos_ == start || pos_ >= end_ || s_[pos_] != ' ') return fail("malformed tag");
      r_.kind_ = ResponseKind::tagged;
      r_.tag_ = span(start, pos_);
      ++pos_;
    }
    std::size_t name_start = pos_;
    while (pos_ < end_ && s_[pos_] != ' ' && s_[pos_] != '\r' && s_[pos_] != '\n' &&
           s_[pos_] != '(' && s_[pos_] != '[')
      ++pos_;
    if (pos_ == name_start) return fail("missing response name");
    r_.name_ = span(name_start, pos_);
    r_.status_ = classify(r_.name());
    if (r_.kind_ == ResponseKind::tagged &&
        (r_.status_ == Status::none || r_.status_ == Status::preauth))
      return fail("tagged response without OK/NO/BAD");
    if (r_.status_ != Status::none && !r_.has_number_) return resp_text();
    if (r_.status_ != Status::none) r_.status_ = Status::none;  // "* 3 OK": treat as data
    std::uint32_t first = Response::kNone, count = 0;
    if (!values(0, '\0', first, count)) return false;
    if (pos_ != end_) return fail("unexpected data at end of response");
    r_.data_first_ = first;
    r_.data_count_ = count;
    return true;
  }

 private:
  static bool is_tag_char(char c) {
    return c > ' ' && c < 127 && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
           c != '"' && c != '\\' && c != '+';
  }

  static Status classify(std::string_view n) {
    if (iequals(n, "OK")) return Status::ok;
    if (iequals(n, "NO")) return Status::no;
    if (iequals(n, "BAD")) return Status::bad;
    if (iequals(n, "BYE")) return Status::bye;
    if (iequals(n, "PREAUTH")) return Status::preauth;
    return Status::none;
  }

  Response::Span span(std::size_t a, std::size_t b) const {
    return {static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b - a)};
  }

  bool fail(const char* msg) {
    err_ = msg;
    return false;
  }

  // resp-text = ["[" resp-text-code "]" SP] text. Free text may hold anything but CRLF, so it is
  // only delimited, never tokenized.
  bool resp_text() {
    if (pos_ < end_ && s_[pos_] == ' ') ++pos_;
    if (pos_ < end_ && s_[pos_] == '[') {
      std::size_t save_pos = pos_;
      ++pos_;
      std::size_t code_start = pos_;
      while (pos_ < end_ && s_[pos_] != ' ' && s_[pos_] != ']') ++pos_;
      if (pos_ >= end_ || pos_ == code_start) {
        pos_ = save_pos;  // no closing bracket: all of it is text
      } else {
        r_.code_ = span(code_start, pos_);
        if (s_[pos_] == ' ') {
          ++pos_;
          std::size_t args_start = pos_;
          std::uint32_t first = Response::kNone, count = 0;
          std::size_t nodes = r_.nodes_.size();
          std::string saved_err = err_;
          if (values(0, ']', first, count) && pos_ < end_ && s_[pos_] == ']') {
            r_.code_first_ = first;
            r_.code_count_ = count;
          } else {  // e.g. [REFERRAL imap://...]: keep the text only
            err_ = saved_err;
            r_.nodes_.resize(nodes);
            pos_ = args_start;
            while (pos_ < end_ && s_[pos_] != ']') ++pos_;
          }
          r_.code_text_ = span(args_start, pos_);
        }
        if (pos_ >= end_) {  // no closing bracket: not a code after all, all of it is text
          r_.code_ = r_.code_text_ = {};
          r_.code_first_ = Response::kNone;
          r_.code_count_ = 0;
          pos_ = save_pos;
        } else {
          ++pos_;  // ']'
          if (pos_ < end_ && s_[pos_] == ' ') ++pos_;
        }
      }
    }
    r_.text_ = span(pos_, end_);
    return true;
  }

  // Values separated by spaces until `stop` (or the end of the response when stop is '\0').
  bool values(std::size_t depth, char stop, std::uint32_t& first, std::uint32_t& count) {
    std::uint32_t prev = Response::kNone;
    while (true) {
      while (pos_ < end_ && s_[pos_] == ' ') ++pos_;
      if (pos_ >= end_) {
        if (stop == '\0' || stop == ']') return true;  // ']' is checked by the caller
        return fail("unterminated list");
      }
      if (s_[pos_] == stop) return true;
      std::uint32_t idx = static_cast<std::uint32_t>(r_.nodes_.size());
      if (!value(depth)) return false;
      if (prev == Response::kNone) {
        first = idx;
      } else {
        r_.nodes_[prev].next = idx;
      }
      prev = idx;
      ++count;
    }
  }

  bool value(std::size_t depth) {
    char c = s_[pos_];
    std::uint32_t idx = static_cast<std::uint32_t>(r_.nodes_.size());
    r_.nodes_.emplace_back();
    if (c == '(') {
      if (depth >= limits_.max_depth) return fail("lists nested too deeply");
      ++pos_;
      std::uint32_t first = Response::kNone, count = 0;
      if (!values(depth + 1, ')', first, count)) return false;
      ++pos_;  // ')'
      auto& n = r_.nodes_[idx];
      n.type = ValueType::list;
      n.count = count;
      return true;
    }
    if (c == '"') return quoted(idx);
    if (c == '{' || (c == '~' && pos_ + 1 < end_ && s_[pos_ + 1] == '{')) return literal(idx);
    if (c == ')' || c == '\r' || c == '\n') return fail("unexpected character");
    return atom(idx);
  }

  bool quoted(std::uint32_t idx) {
    std::size_t start = ++pos_;
    std::size_t w = start;
    while (true) {
      if (pos_ >= end_) return fail("unterminated quoted string");
      char c = s_[pos_];
      if (c == '"') break;
      if (c == '\r' || c == '\n') return fail("CR/LF in quoted string");
      if (c == '\\') {
        if (++pos_ >= end_) return fail("unterminated quoted string");
        c = s_[pos_];
      }
      s_[w++] = c;  // unescape in place: the text only shrinks
      ++pos_;
    }
    ++pos_;
    auto& n = r_.nodes_[idx];
    n.type = ValueType::quoted;
    n.off = static_cast<std::uint32_t>(start);
    n.len = static_cast<std::uint32_t>(w - start);
    return true;
  }

  bool literal(std::uint32_t idx) {
    if (s_[pos_] == '~') ++pos_;
    ++pos_;  // '{'
    std::uint64_t n = 0;
    std::size_t start = pos_;
    while (pos_ < end_ && is_digit(s_[pos_])) n = n * 10 + (s_[pos_++] - '0');
    if (pos_ == start || pos_ - start > 19) return fail("malformed literal size");
    if (n > limits_.max_literal) return fail("literal over the size limit");
    if (pos_ < end_ && s_[pos_] == '+') ++pos_;
    if (pos_ >= end_ || s_[pos_] != '}') return fail("malformed literal");
    ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '\r') ++pos_;
    if (pos_ >= s_.size() || s_[pos_] != '\n') return fail("literal size not followed by CRLF");
    ++pos_;
    if (n > end_ - std::min(pos_, end_)) return fail("literal runs past the response");
    auto& node = r_.nodes_[idx];
    node.type = ValueType::literal;
    node.off = static_cast<std::uint32_t>(pos_);
    node.len = static_cast<std::uint32_t>(n);
    pos_ += n;
    return true;
  }

  bool atom(std::uint32_t idx) {
    std::size_t start = pos_;
    int brackets = 0;  // BODY[HEADER.FIELDS (A B)]<0>: the section is part of the atom
    while (pos_ < end_) {
      char c = s_[pos_];
      if (c == '\r' || c == '\n') break;
      if (brackets == 0) {
        if (c == ' ' || c == '(' || c == ')' || c == ']' || c == '"' || c == '{') break;
        if (c == '[') ++brackets;
      } else if (c == '[') {
        ++brackets;
      } else if (c == ']') {
        --brackets;
      }
      ++pos_;
    }
    if (brackets != 0) return fail("unbalanced '[' in atom");
    if (pos_ == start) return fail("unexpected character");
    std::string_view t(s_.data() + start, pos_ - start);
    auto& n = r_.nodes_[idx];
    n.off = static_cast<std::uint32_t>(start);
    n.len = static_cast<std::uint32_t>(t.size());
    if (iequals(t, "NIL")) {
      n.type = ValueType::nil;
      return true;
    }
    n.type = ValueType::atom;
    if (t.size() <= 19 && std::all_of(t.begin(), t.end(), is_digit)) {
      std::uint64_t v = 0;
      for (char d : t) v = v * 10 + static_cast<unsigned>(d - '0');
      n.type = ValueType::number;
      n.number = v;
    }
    return true;
  }

  Response& r_;
  std::string& s_;
  const ParserLimits& limits_;
  std::string& err_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;  // before the final CRLF
};

// ---- ResponseParser: framing -------------------------------------------------------------------

void ResponseParser::reset() {
  pending_.clear();
  line_start_ = 0;
  in_literal_ = false;
  literal_left_ = 0;
  error_.clear();
}

void ResponseParser::shrink(std::size_t max_capacity) {
  if (!pending_.empty() || pending_.capacity() <= max_capacity) return;
  std::string().swap(pending_);
}

ResponseParser::Result ResponseParser::fail(std::string msg) {
  error_ = std::move(msg);
  return Result::error;
}

ResponseParser::Result ResponseParser::parse(std::string_view data, std::size_t& consumed,
                                             Response& out) {
  consumed = 0;
  if (!error_.empty()) return Result::error;
  while (consumed < data.size()) {
    if (in_literal_) {
      std::size_t n = std::min<std::size_t>(literal_left_, data.size() - consumed);
      pending_.append(data.data() + consumed, n);
      consumed += n;
      literal_left_ -= n;
      if (literal_left_ == 0) {
        in_literal_ = false;
        line_start_ = pending_.size();
      }
      continue;
    }
    const char* p = data.data() + consumed;
    std::size_t avail = data.size() - consumed;
    const void* nl = std::memchr(p, '\n', avail);
    std::size_t take = nl ? static_cast<const char*>(nl) - p + 1 : avail;
    if (pending_.size() - line_start_ + take > limits_.max_line) {
      return fail("response line over the size limit");
    }
    pending_.append(p, take);
    consumed += take;
    if (!nl) break;

    std::string_view line(pending_.data() + line_start_, pending_.size() - line_start_ - 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::uint64_t n = 0;
    bool bad = false;
    if (literal_marker(line, n, bad)) {
      if (bad) return fail("malformed literal size");
      if (n > limits_.max_literal) {
        return fail("literal of " + std::to_string(n) + " bytes over the limit of " +
                    std::to_string(limits_.max_literal));
      }
      // Many literals in one response must not add up past what one big literal may use.
      if (pending_.size() + n > limits_.max_literal + limits_.max_line) {
        return fail("response over the size limit");
      }
      literal_left_ = static_cast<std::size_t>(n);
      in_literal_ = n > 0;
      line_start_ = pending_.size();
      continue;
    }
    // The response is complete: hand its bytes to `out` (swapping keeps both capacities).
    out.raw_.swap(pending_);
    pending_.clear();
    line_start_ = 0;
    Tokenizer t(out, limits_, error_);
    if (!t.run()) {
      if (error_.empty()) error_ = "malformed response";
      return Result::error;
    }
    return Result::done;
  }
  return Result::need_more;
}

bool parse_complete(std::string_view bytes, Response& out, std::string& error,
                    const ParserLimits& limits) {
  out.raw_.assign(bytes.data(), bytes.size());
  error.clear();
  Tokenizer t(out, limits, error);
  return t.run();
}

}  // namespace el::imap
