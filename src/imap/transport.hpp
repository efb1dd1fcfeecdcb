// Byte stream under the IMAP client: TCP, TLS, or an in-memory replay in tests.
// Not thread-safe: use from one strand. Errors are thrown as imap::Error.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/types.hpp"
#include "imap/error.hpp"

namespace el::imap {

namespace net = boost::asio;

class Transport {
 public:
  virtual ~Transport() = default;
  virtual net::any_io_executor get_executor() = 0;
  // Reads at least one byte. Throws Error{io} on EOF or error, Error{io} if cancel() was called.
  virtual net::awaitable<std::size_t> read_some(net::mutable_buffer buf) = 0;
  // Writes all of data. Throws Error{io}.
  virtual net::awaitable<void> write_all(std::string_view data) = 0;
  // STARTTLS: upgrades a plain connection to TLS, verifying as configured. Throws Error{tls}.
  virtual net::awaitable<void> start_tls() = 0;
  // Aborts pending reads and writes (they throw). Called by deadlines on the same executor.
  virtual void cancel() = 0;
  virtual void close() = 0;
};

// A deadline on one transport, for the protocol clients (IMAP, SMTP): when it passes, the
// transport is cancelled, so its pending read or write throws, and fired() tells that timeout
// from other failures. Use on the transport's executor; declare it after the transport it
// watches. A timer callback queued after an operation ended, or after this object died, does
// nothing.
class TransportDeadline {
 public:
  explicit TransportDeadline(Transport& transport);
  ~TransportDeadline();
  TransportDeadline(const TransportDeadline&) = delete;
  TransportDeadline& operator=(const TransportDeadline&) = delete;
  void arm(std::chrono::steady_clock::time_point when);
  void disarm();
  bool fired() const;

 private:
  struct State {  // shared with the timer callback
    Transport* transport = nullptr;
    std::uint64_t generation = 0;
    bool fired = false;
  };
  net::steady_timer timer_;
  std::shared_ptr<State> state_;
};

struct ConnectOptions {
  std::string host;
  std::uint16_t port = 993;
  core::Security security = core::Security::tls;
  core::TlsSettings tls;
  std::chrono::milliseconds timeout{30000};  // resolve + connect + TLS handshake
};

// Resolves, connects, and (Security::tls) completes the TLS handshake with certificate and host
// name verification unless tls.insecure. SSL_MODE_RELEASE_BUFFERS keeps idle TLS sessions small.
// STARTTLS is the client's job (it must read the greeting first), via Transport::start_tls.
net::awaitable<std::unique_ptr<Transport>> connect(net::any_io_executor ex,
                                                   const ConnectOptions& opts);

}  // namespace el::imap
