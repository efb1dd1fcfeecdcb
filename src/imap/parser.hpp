// Incremental IMAP response parser (RFC 3501/9051 server responses). Does no I/O: feed bytes,
// get complete responses and how many bytes were consumed. Not thread-safe; one per connection.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace el::imap {

enum class ValueType : std::uint8_t { atom, number, quoted, literal, nil, list };

enum class ResponseKind : std::uint8_t { tagged, untagged, continuation };

// Status of OK/NO/BAD/BYE/PREAUTH responses; `none` for untagged data (EXISTS, FETCH, ...).
enum class Status : std::uint8_t { none, ok, no, bad, bye, preauth };

class Response;
struct ParserLimits;

// A node of a response's value tree: a cheap view into the Response that owns it (valid while
// that Response is alive and not re-parsed into).
class Value {
 public:
  class iterator {
   public:
    iterator(const Response* r, std::uint32_t i) : r_(r), i_(i) {}
    Value operator*() const { return Value(r_, i_); }
    iterator& operator++();
    bool operator==(const iterator& o) const { return i_ == o.i_; }

   private:
    const Response* r_;
    std::uint32_t i_;
  };

  Value(const Response* r, std::uint32_t i) : r_(r), i_(i) {}
  ValueType type() const;
  bool is_list() const { return type() == ValueType::list; }
  bool is_nil() const { return type() == ValueType::nil; }
  bool is_number() const { return type() == ValueType::number; }
  // quoted, literal, or atom/number (an astring): anything that has text.
  bool is_string() const { return type() != ValueType::list && type() != ValueType::nil; }
  // Atom, number, quoted (unescaped) or literal bytes; empty for NIL and lists.
  std::string_view text() const;
  std::uint64_t number() const;  // valid when is_number()
  // Children of a list (empty range otherwise).
  std::size_t size() const;
  iterator begin() const;
  iterator end() const;
  Value operator[](std::size_t i) const;  // O(i); i < size()

 private:
  const Response* r_;
  std::uint32_t i_;
};

// A range of sibling values (top-level data, or resp-code arguments).
struct ValueRange {
  const Response* r = nullptr;
  std::uint32_t first = 0;  // node index, kNone when empty
  std::uint32_t count = 0;
  Value::iterator begin() const { return Value::iterator(r, first); }
  Value::iterator end() const;
  std::size_t size() const { return count; }
  bool empty() const { return count == 0; }
  Value operator[](std::size_t i) const;  // O(i); i < size()
};

// One complete server response. Owns the bytes (including literals); Values point into them.
// Reusable: parsing into the same object keeps its capacity.
class Response {
 public:
  static constexpr std::uint32_t kNone = 0xffffffffu;

  struct Node {
    ValueType type = ValueType::nil;
    std::uint32_t off = 0;  // text in raw_
    std::uint32_t len = 0;
    std::uint32_t next = kNone;  // next sibling
    std::uint32_t count = 0;     // children (lists); the first child is the next node
    std::uint64_t number = 0;
  };

  ResponseKind kind() const { return kind_; }
  std::string_view tag() const { return view(tag_); }  // tagged only
  bool has_number() const { return has_number_; }      // "* 5 EXISTS"
  std::uint32_t number() const { return number_; }
  // The response name as sent: "OK", "EXISTS", "FETCH", "CAPABILITY"... (empty for '+').
  std::string_view name() const { return view(name_); }
  bool name_is(std::string_view n) const;  // case-insensitive
  Status status() const { return status_; }
  // [resp-text-code]: the code atom ("UIDVALIDITY"), its arguments as text and as values
  // (values are empty when the arguments do not parse as IMAP values, e.g. a URL).
  std::string_view code() const { return view(code_); }
  bool code_is(std::string_view c) const;  // case-insensitive
  std::string_view code_text() const { return view(code_text_); }
  ValueRange code_args() const { return {this, code_first_, code_count_}; }
  // Human-readable text of a status response, or the text of a continuation ("+ idling").
  std::string_view text() const { return view(text_); }
  // Untagged data after the name: "* SEARCH 1 2" -> 1, 2; "* 1 FETCH (...)" -> one list.
  ValueRange data() const { return {this, data_first_, data_count_}; }
  // The whole response as received, CRLF included.
  std::string_view raw() const { return raw_; }

  std::size_t capacity() const { return raw_.capacity() + nodes_.capacity() * sizeof(Node); }
  // Drops the buffers when they hold more than max_capacity bytes (after a big literal).
  void shrink(std::size_t max_capacity);

 private:
  friend class ResponseParser;
  friend class Value;
  friend class Tokenizer;
  friend bool parse_complete(std::string_view, Response&, std::string&, const ParserLimits&);
  struct Span {
    std::uint32_t off = 0, len = 0;
  };
  std::string_view view(Span s) const { return std::string_view(raw_).substr(s.off, s.len); }
  void clear();

  std::string raw_;
  std::vector<Node> nodes_;
  ResponseKind kind_ = ResponseKind::untagged;
  Status status_ = Status::none;
  bool has_number_ = false;
  std::uint32_t number_ = 0;
  Span tag_, name_, code_, code_text_, text_;
  std::uint32_t code_first_ = kNone, code_count_ = 0;
  std::uint32_t data_first_ = kNone, data_count_ = 0;
};

struct ParserLimits {
  std::size_t max_literal = 64 * 1024 * 1024;  // one literal larger than this: error
  std::size_t max_line = 1024 * 1024;          // one line (between literals) longer: error
  std::size_t max_depth = 64;                  // list nesting
};

class ResponseParser {
 public:
  enum class Result { need_more, done, error };

  explicit ResponseParser(ParserLimits limits = {}) : limits_(limits) {}

  // Consumes a prefix of `data`. need_more: all of data was consumed and buffered; done: `out`
  // holds a complete response and `consumed` counts the bytes up to its end (feed the rest
  // again); error: see error(); `consumed` counts the bytes up to the end of the bad response
  // when its end is known. After an error the parser must be reset() before reuse.
  Result parse(std::string_view data, std::size_t& consumed, Response& out);

  const std::string& error() const { return error_; }
  // Bytes still expected for the literal in progress (0 when not inside a literal): lets the
  // caller read large literals with a bigger buffer.
  std::size_t literal_remaining() const { return in_literal_ ? literal_left_ : 0; }
  bool idle() const { return pending_.empty() && !in_literal_; }  // between responses
  void reset();
  // Frees the buffer of the response in progress when it is empty and holds more than
  // max_capacity bytes (after a big literal), so idle sessions stay small.
  void shrink(std::size_t max_capacity);

 private:
  Result fail(std::string msg);
  bool finish_line(std::size_t line_end);  // returns true when the response is complete

  ParserLimits limits_;
  std::string pending_;         // bytes of the response in progress
  std::size_t line_start_ = 0;  // in pending_: start of the current line segment
  bool in_literal_ = false;
  std::size_t literal_left_ = 0;
  std::string error_;
};

// Parses one complete response held in `bytes` (as framed by ResponseParser): for tests and
// fuzzing. Returns false with `error` set when malformed.
bool parse_complete(std::string_view bytes, Response& out, std::string& error,
                    const ParserLimits& limits = {});

}  // namespace el::imap
