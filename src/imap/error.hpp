// IMAP failures, classified so the session supervisor knows what to do next.
#pragma once
#include <stdexcept>
#include <string>

namespace el::imap {

enum class ErrorKind {
  io,        // connection failed, reset, closed, EOF: reconnect with backoff
  timeout,   // a deadline passed (connect, command, DONE/NOOP answer): reconnect
  tls,       // handshake or certificate verification failed: reconnect slowly, report
  protocol,  // the server sent something we cannot parse, or a literal over the limit
  auth,      // the server refused the credentials (NO to LOGIN/AUTHENTICATE): do not hammer
  no,        // tagged NO to another command: the connection is still usable
  bad,       // tagged BAD: the connection is still usable
  bye,       // the server said BYE: reconnect
};

const char* to_string(ErrorKind k);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace el::imap
