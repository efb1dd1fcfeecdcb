// In-memory Transport that replays a server script and checks what the client sends (like
// MailKit's ImapReplayStream), records every write (to assert batching such as SMTP
// PIPELINING), and injects Beast-style failures: the Nth I/O operation fails. Shared by the IMAP
// and SMTP client tests (the SMTP client runs on the IMAP module's byte transport).
#pragma once
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "imap/transport.hpp"

namespace el::testing {

namespace net = boost::asio;

struct Step {
  enum Kind { client, server, hang } kind;
  std::string bytes;
};

// One step a line (format also in tests/fixtures/imap/dovecot/README.txt):
//   "S: text"  the server sends text CRLF; an S: line ending in {@} opens a literal
//   "L: text"  a line (CRLF appended) of the literal opened by the S: line above; {@} becomes {n}
//   "P: text"  the server sends text without CRLF (a partial line)
//   "C: text"  the client must send text CRLF; "C:" alone is an empty line
//   "HANG"     the server sends nothing more and keeps the connection open: reads block until
//              the client cancels (deadlines, IDLE)
// Lines starting with # and blank lines are ignored. After the last step the server closes the
// connection.
std::vector<Step> parse_script(const std::string& text);
// Loads tests/fixtures/<path> (e.g. "imap/dovecot/session.txt") in the same format.
std::vector<Step> load_script(const std::string& path);
// All server bytes of a script, concatenated (a corpus for parser tests).
std::string server_bytes(const std::vector<Step>& script);

// What the test inspects after the client (which owns the transport) is gone.
struct ReplayState {
  int ops = 0;       // read/write/start_tls calls so far
  int fail_at = -1;  // this op (1-based) throws imap::Error{io}
  bool injected = false;
  std::string mismatch;             // first difference between the expected and the actual bytes
  std::vector<std::string> writes;  // every write_all, as passed
  std::size_t step = 0;             // steps the server got through
  std::size_t steps = 0;
  bool client_done = false;  // every expected client line was sent
  bool closed = false;
  bool tls_started = false;
  bool complete() const { return step == steps && client_done; }
  std::string written() const {
    std::string all;
    for (const auto& w : writes) all += w;
    return all;
  }
};

class ReplayTransport final : public imap::Transport {
 public:
  ReplayTransport(net::any_io_executor ex, std::vector<Step> script,
                  std::shared_ptr<ReplayState> state, std::size_t chunk = 1 << 20);

  net::any_io_executor get_executor() override { return ex_; }
  net::awaitable<std::size_t> read_some(net::mutable_buffer buf) override;
  net::awaitable<void> write_all(std::string_view data) override;
  net::awaitable<void> start_tls() override;
  void cancel() override;
  void close() override;

 private:
  void maybe_fail(const char* what);
  void update_state();

  net::any_io_executor ex_;
  std::vector<Step> script_;
  std::shared_ptr<ReplayState> state_;
  std::size_t chunk_;
  std::size_t server_step_ = 0, server_offset_ = 0;  // what the client has read
  std::size_t client_step_ = 0, client_offset_ = 0;  // what the client has written
  net::steady_timer wake_;  // a blocked read waits on it; writes and cancel() fire it
  bool reading_ = false;
  bool cancelled_ = false;
};

}  // namespace el::testing
