// Outgoing messages: a structured message -> RFC 5322 bytes (GMime 3), for SMTP and the Sent
// folder. Thread-safe after mime::initialize(). No I/O.
#pragma once
#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace el::mime {

struct Address {
  std::string address;  // addr-spec: local@domain (an IDN domain is accepted as UTF-8)
  std::string name;     // display name, any Unicode; empty: none
};

struct OutgoingAttachment {
  std::string filename;      // any Unicode (RFC 2231 encoded when not ASCII)
  std::string content_type;  // "application/pdf"; empty: application/octet-stream
  std::string content;       // decoded bytes
  std::string content_id;    // non-empty: an inline part (Content-ID <id>, disposition inline),
                             // referenced from the HTML as cid:id
};

struct OutgoingMessage {
  Address from;
  std::vector<Address> to, cc, bcc, reply_to;
  std::string subject;  // any Unicode (RFC 2047 encoded when not ASCII)
  std::string text;     // text/plain body; empty: none
  std::string html;     // text/html body; empty: none
  std::vector<OutgoingAttachment> attachments;
  std::string message_id;               // without angle brackets; required
  std::string in_reply_to;              // message id, with or without angle brackets
  std::vector<std::string> references;  // message ids, with or without angle brackets
  // Extra headers, in order. Names must be valid field names and not ones compose() writes.
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::system_clock::time_point date;
};

// A message that cannot be built; field names the input at fault ("headers.X-Foo", "to[1]").
class ComposeError : public std::invalid_argument {
 public:
  ComposeError(std::string field, const std::string& what)
      : std::invalid_argument(what), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// RFC 5322 message with CRLF line endings, ready for SMTP DATA (not dot-stuffed) and IMAP
// APPEND. Structure: text and html -> multipart/alternative; inline parts (content_id) wrap the
// html in multipart/related; other attachments -> multipart/mixed around everything. Bodies are
// UTF-8, quoted-printable or base64, whichever is shorter; lines never exceed 998 octets.
// Bcc is never written. Date, Message-ID, MIME-Version are always written.
// Throws ComposeError for an invalid address or header.
std::string compose(const OutgoingMessage& msg);

// addr-spec check: dot-atom or quoted local part, '@', a domain of labels (or an address
// literal); no whitespace or control characters; at most 254 octets.
bool valid_address(std::string_view address);
// Header names a caller may not set through OutgoingMessage::headers (compose() owns them):
// From, To, Cc, Bcc, Reply-To, Subject, Date, Message-ID, In-Reply-To, References,
// MIME-Version, Content-*. Case-insensitive.
bool reserved_header(std::string_view name);

}  // namespace el::mime
