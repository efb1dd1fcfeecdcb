// Byte-level helpers for the SMTP client, without I/O: the DATA encoding (CRLF normalization and
// dot-stuffing, RFC 5321 4.5.2), base64 for SASL, and queue-id extraction from the final reply.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace el::smtp {

// What the server will count (RFC 1870): octets after CRLF normalization, with the final CRLF
// added when missing, without the stuffing dots and the terminating ".".
struct DataStats {
  std::uint64_t size = 0;
  bool eight_bit = false;  // an octet >= 0x80: BODY=8BITMIME when offered
};
DataStats measure_data(std::string_view data);

// Produces the DATA bytes in chunks: every bare LF and bare CR becomes CRLF (a lone CR or LF is
// what SMTP smuggling abuses), a line starting with "." gets another ".", a missing final CRLF is
// added, and ".\r\n" ends it. `data` must outlive the encoder.
class DataEncoder {
 public:
  explicit DataEncoder(std::string_view data) : data_(data) {}
  bool done() const { return finished_; }
  // Appends to `out` until it holds at least `max` bytes or the end (".\r\n") was written.
  void next(std::string& out, std::size_t max);

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  bool line_start_ = true;
  bool finished_ = false;
};

// The whole encoding at once (tests, small messages).
std::string encode_data(std::string_view data);

std::string base64_encode(std::string_view data);
// nullopt when `b64` is not base64.
std::optional<std::string> base64_decode(std::string_view b64);

// Best effort queue id from the text of a 250 reply to the message (code and enhanced status
// already removed): "Ok: queued as 4F1A2B3C" (Postfix), "id=1qXyZ-0001ab-Cd" (Exim),
// "<id> Message accepted for delivery", "x9K3abc123 Message accepted for delivery" (Sendmail),
// "OK 1718035200 d9443c01a7336-1f6f3bb2sm1.123 - gsmtp" (Gmail), "Ok 1234abcd", "Ok: 1234abcd".
// Empty when none of these forms matches.
std::string parse_queue_id(std::string_view text);

}  // namespace el::smtp
