// SMTP submission client on one imap::Transport (TCP, TLS, STARTTLS): greeting, EHLO (HELO
// fallback), STARTTLS, AUTH PLAIN / LOGIN / XOAUTH2, MAIL/RCPT/DATA with PIPELINING when offered,
// SIZE checked before sending, QUIT. Not thread-safe: one coroutine at a time, on the transport's
// executor. Every command has a deadline. Failures throw smtp::Error.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/secret.hpp"
#include "imap/transport.hpp"

namespace el::smtp {

namespace net = boost::asio;

enum class ErrorKind {
  io,         // connection failed, reset, closed: retry later
  timeout,    // a deadline passed: retry later
  tls,        // STARTTLS not offered when required, handshake or verification failed
  protocol,   // the server sent something that is not SMTP
  auth,       // the server refused the credentials (535 and the like), or no usable mechanism
  temporary,  // 4xx reply to MAIL/RCPT/DATA: retry later
  permanent,  // 5xx reply to MAIL/RCPT/DATA: do not retry
  too_large,  // the message exceeds the SIZE the server announced: nothing was sent
};
const char* to_string(ErrorKind k);

// One server reply: code 250, enhanced status "2.0.0" when given, text lines joined with "\n"
// (without the code and the enhanced status).
struct Reply {
  int code = 0;
  std::string enhanced;
  std::string text;
  std::string str() const;  // "250 2.0.0 Ok: queued as 4F1A2"
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what, Reply reply = {})
      : std::runtime_error(what), kind_(kind), reply_(std::move(reply)) {}
  ErrorKind kind() const { return kind_; }
  const Reply& reply() const { return reply_; }  // code 0 when no reply caused it

 private:
  ErrorKind kind_;
  Reply reply_;
};

struct ClientOptions {
  std::chrono::milliseconds command_timeout{60000};  // greeting, EHLO, AUTH, MAIL, RCPT...
  std::chrono::milliseconds data_timeout{600000};    // sending the message and its final reply
  std::string helo_name = "localhost";               // the name given in EHLO/HELO
};

struct Envelope {
  std::string from;             // reverse-path address (may be empty: the null sender)
  std::vector<std::string> to;  // forward-paths, at least one
};

struct SendResult {
  Reply reply;  // the final reply to DATA
  std::string
      queue_id;  // parsed from the reply ("queued as X", "Ok: X", "<id> queued"); may be empty
};

class Client {
 public:
  explicit Client(std::unique_ptr<imap::Transport> transport, ClientOptions opts = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Reads the 220 greeting, EHLO (HELO if EHLO is refused), then if starttls: STARTTLS (the
  // extension must be offered, else Error{tls}), the handshake, and EHLO again.
  net::awaitable<void> start(bool starttls);
  // EHLO keywords, upper-case, with their parameters: {"PIPELINING": "", "SIZE": "10240000",
  // "AUTH": "PLAIN LOGIN XOAUTH2"}.
  const std::map<std::string, std::string>& extensions() const;
  bool has_extension(std::string_view keyword) const;  // case-insensitive
  std::optional<std::uint64_t> max_size() const;       // SIZE n with n > 0

  // AUTH PLAIN (initial response) if offered, else AUTH LOGIN. Refused: Error{auth} with the
  // reply. No AUTH extension or neither mechanism offered: Error{auth}.
  net::awaitable<void> login(std::string_view user, const core::Secret& password);
  // AUTH XOAUTH2 with "user=<user>^Aauth=Bearer <token>^A^A". On a 334 challenge (the error JSON)
  // sends an empty line and throws Error{auth} with the final reply.
  net::awaitable<void> login_xoauth2(std::string_view user, const core::Secret& access_token);

  // MAIL FROM (with SIZE=n when offered), RCPT TO each, DATA, the dot-stuffed message (data
  // uses CRLF line endings; a missing final CRLF is added), "." and the reply. With PIPELINING
  // MAIL and every RCPT go in one write. Any refused RCPT: RSET, and Error{temporary|permanent}
  // whose message names the recipient and whose reply is the server's. A message larger than
  // max_size(): Error{too_large} before anything is sent.
  net::awaitable<SendResult> send(const Envelope& envelope, std::string_view data);
  // RSET; used between messages on one connection.
  net::awaitable<void> reset();
  // QUIT, best effort: never throws.
  net::awaitable<void> quit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace el::smtp
