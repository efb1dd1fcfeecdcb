// TCP and TLS transports over Asio: resolve/connect/handshake under one deadline, shared
// ssl::context per trust configuration, STARTTLS upgrade, errors mapped to imap::Error.
#include "imap/transport.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace el::imap {

namespace {

namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

std::string describe(const error_code& ec) {
  if (ec == net::error::eof || ec == ssl::error::stream_truncated) {
    return "connection closed by server";
  }
  if (ec == net::error::operation_aborted) return "cancelled";
  return ec.message();
}

bool is_ip_address(const std::string& host) {
  error_code ec;
  (void)net::ip::make_address(host, ec);
  return !ec;
}

// One ssl::context per (ca_file, insecure): each context holds its own copy of the trust store,
// which is far too much memory to repeat for 10,000 sessions. Contexts are thread-safe for
// creating SSL objects; they die with the last transport that uses them.
std::shared_ptr<ssl::context> shared_context(const core::TlsSettings& tls) {
  static std::mutex mu;
  static std::map<std::pair<std::string, bool>, std::weak_ptr<ssl::context>> cache;
  std::lock_guard lock(mu);
  auto key = std::make_pair(tls.ca_file, tls.insecure);
  if (auto it = cache.find(key); it != cache.end()) {
    if (auto ctx = it->second.lock()) return ctx;
  }
  std::erase_if(cache, [](const auto& kv) { return kv.second.expired(); });

  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3);
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  if (tls.insecure) {
    ctx->set_verify_mode(ssl::verify_none);
  } else {
    error_code ec;
    ctx->set_default_verify_paths(ec);
    if (ec) throw Error(ErrorKind::tls, "cannot load the system trust store: " + ec.message());
    if (!tls.ca_file.empty()) {
      ctx->load_verify_file(tls.ca_file, ec);
      if (ec) {
        throw Error(ErrorKind::tls, "cannot load CA file " + tls.ca_file + ": " + ec.message());
      }
    }
    ctx->set_verify_mode(ssl::verify_peer);
  }
  cache[key] = ctx;
  return ctx;
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};

// The OpenSSL error queue as text (and clears it).
std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// TLS straight on the non-blocking socket (SSL_set_fd), waiting for readiness with Asio, instead
// of asio::ssl::stream: the stream keeps two 17 KiB buffers and a BIO pair with two more per
// connection for its whole life, ~70 KiB that an idle IMAP session never needs. Here an idle TLS
// session is the SSL object alone, its record buffers released between records
// (SSL_MODE_RELEASE_BUFFERS). Used from one strand, like every Transport.
class AsioTransport final : public Transport {
 public:
  AsioTransport(tcp::socket sock, std::string host, core::TlsSettings tls)
      : sock_(std::move(sock)), host_(std::move(host)), tls_settings_(std::move(tls)) {}

  net::any_io_executor get_executor() override { return sock_.get_executor(); }

  net::awaitable<std::size_t> read_some(net::mutable_buffer buf) override {
    if (!ssl_) {
      auto [ec, n] = co_await sock_.async_read_some(buf, kTuple);
      if (ec) throw Error(ErrorKind::io, "read from " + host_ + ": " + describe(ec));
      co_return n;
    }
    const int len = static_cast<int>(std::min<std::size_t>(buf.size(), 1 << 30));
    while (true) {
      ERR_clear_error();
      const int n = SSL_read(ssl_.get(), buf.data(), len);
      if (n > 0) co_return static_cast<std::size_t>(n);
      co_await wait_for(SSL_get_error(ssl_.get(), n), "read from");
    }
  }

  net::awaitable<void> write_all(std::string_view data) override {
    if (!ssl_) {
      auto [ec, n] = co_await net::async_write(sock_, net::buffer(data), kTuple);
      (void)n;
      if (ec) throw Error(ErrorKind::io, "write to " + host_ + ": " + describe(ec));
      co_return;
    }
    while (!data.empty()) {
      ERR_clear_error();
      const int len = static_cast<int>(std::min<std::size_t>(data.size(), 1 << 30));
      const int n = SSL_write(ssl_.get(), data.data(), len);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      co_await wait_for(SSL_get_error(ssl_.get(), n), "write to");
    }
  }

  net::awaitable<void> start_tls() override {
    if (ssl_) throw Error(ErrorKind::tls, "TLS is already active");
    co_await handshake();
  }

  void cancel() override {
    error_code ec;
    sock_.cancel(ec);
  }

  void close() override {
    error_code ec;
    // No close_notify: it would need a round trip, and the server copes with a plain close.
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

  net::awaitable<void> handshake() {
    ctx_ = shared_context(tls_settings_);
    ssl_.reset(SSL_new(ctx_->native_handle()));
    if (!ssl_) throw Error(ErrorKind::tls, "SSL_new failed: " + ssl_errors());
    SSL* ssl = ssl_.get();
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    error_code ec;
    sock_.non_blocking(true, ec);
    if (ec || SSL_set_fd(ssl, sock_.native_handle()) != 1)
      throw Error(ErrorKind::tls, "cannot attach TLS to the socket: " + ec.message());
    const bool ip = is_ip_address(host_);
    if (!ip) SSL_set_tlsext_host_name(ssl, host_.c_str());
    if (!tls_settings_.insecure) {
      // The certificate must name the host we connected to (RFC 6125), by DNS name or IP.
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host_.c_str())
                        : X509_VERIFY_PARAM_set1_host(param, host_.c_str(), 0);
      if (ok != 1) throw Error(ErrorKind::tls, "cannot set the expected host name " + host_);
    }
    while (true) {
      ERR_clear_error();
      const int r = SSL_connect(ssl);
      if (r == 1) break;
      const int err = SSL_get_error(ssl, r);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        auto [wec] = co_await sock_.async_wait(
            err == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write, kTuple);
        if (wec == net::error::operation_aborted)
          throw Error(ErrorKind::timeout, "TLS handshake with " + host_ + " timed out");
        if (wec) throw Error(ErrorKind::tls, "TLS handshake with " + host_ + ": " + wec.message());
        continue;
      }
      std::string msg = "TLS handshake with " + host_ + " failed";
      const std::string detail = ssl_errors();
      if (!detail.empty()) msg += ": " + detail;
      const long vr = SSL_get_verify_result(ssl);
      if (vr != X509_V_OK) msg += std::string(" (") + X509_verify_cert_error_string(vr) + ")";
      if (err == SSL_ERROR_SYSCALL && detail.empty()) msg += ": connection closed by server";
      throw Error(ErrorKind::tls, msg);
    }
  }

 private:
  // After SSL_read/SSL_write returned <= 0: waits for the socket when OpenSSL needs it, or
  // throws Error{io} for anything else (EOF, reset, protocol error, cancel()).
  net::awaitable<void> wait_for(int err, const char* what) {
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await sock_.async_wait(
          err == SSL_ERROR_WANT_READ ? tcp::socket::wait_read : tcp::socket::wait_write, kTuple);
      if (ec) throw Error(ErrorKind::io, std::string(what) + " " + host_ + ": " + describe(ec));
      co_return;
    }
    std::string why;
    if (err == SSL_ERROR_ZERO_RETURN) {
      why = "connection closed by server";
    } else {
      why = ssl_errors();
      if (why.empty()) why = errno != 0 ? std::strerror(errno) : "connection closed by server";
    }
    throw Error(ErrorKind::io, std::string(what) + " " + host_ + ": " + why);
  }

  tcp::socket sock_;
  std::string host_;
  core::TlsSettings tls_settings_;
  std::shared_ptr<ssl::context> ctx_;  // the shared SSL_CTX, kept alive while ssl_ uses it
  std::unique_ptr<SSL, SslFree> ssl_;  // set once TLS is active
};

// Shared with the timer callback so that it never touches a finished coroutine's frame.
struct ConnectDeadline {
  bool done = false;
  bool fired = false;
  tcp::resolver* resolver = nullptr;
  tcp::socket* socket = nullptr;
  Transport* transport = nullptr;
};

}  // namespace

net::awaitable<std::unique_ptr<Transport>> connect(net::any_io_executor ex,
                                                   const ConnectOptions& opts) {
  std::string where = opts.host + ":" + std::to_string(opts.port);
  auto dl = std::make_shared<ConnectDeadline>();
  tcp::resolver resolver(ex);
  tcp::socket sock(ex);
  dl->resolver = &resolver;
  dl->socket = &sock;
  net::steady_timer timer(ex);
  timer.expires_after(opts.timeout);
  timer.async_wait([dl](error_code ec) {
    if (ec || dl->done) return;
    dl->fired = true;
    if (dl->resolver) dl->resolver->cancel();
    error_code ignored;
    if (dl->socket) dl->socket->cancel(ignored);
    if (dl->transport) dl->transport->cancel();
  });
  struct Finish {  // whatever happens, the callback must stop using our locals
    std::shared_ptr<ConnectDeadline> dl;
    net::steady_timer& timer;
    ~Finish() {
      dl->done = true;
      timer.cancel();
    }
  } finish{dl, timer};

  auto [rec, endpoints] =
      co_await resolver.async_resolve(opts.host, std::to_string(opts.port), kTuple);
  if (dl->fired) throw Error(ErrorKind::timeout, "resolving " + opts.host + " timed out");
  if (rec) throw Error(ErrorKind::io, "resolve " + opts.host + ": " + rec.message());
  dl->resolver = nullptr;

  auto [cec, ep] = co_await net::async_connect(sock, endpoints, kTuple);
  if (dl->fired) throw Error(ErrorKind::timeout, "connect to " + where + " timed out");
  if (cec) throw Error(ErrorKind::io, "connect to " + where + ": " + cec.message());
  (void)ep;
  error_code ignored;
  sock.set_option(tcp::no_delay(true), ignored);
  // Keepalive lets the kernel notice a peer that vanished while we sat in IDLE.
  sock.set_option(net::socket_base::keep_alive(true), ignored);
  dl->socket = nullptr;

  auto t = std::make_unique<AsioTransport>(std::move(sock), opts.host, opts.tls);
  if (opts.security == core::Security::tls) {
    dl->transport = t.get();
    try {
      co_await t->handshake();
    } catch (const Error&) {
      if (dl->fired) throw Error(ErrorKind::timeout, "TLS handshake with " + where + " timed out");
      throw;
    }
    dl->transport = nullptr;
  }
  co_return t;
}

TransportDeadline::TransportDeadline(Transport& transport)
    : timer_(transport.get_executor()), state_(std::make_shared<State>()) {
  state_->transport = &transport;
}

TransportDeadline::~TransportDeadline() {
  state_->transport = nullptr;
  ++state_->generation;
}

void TransportDeadline::arm(std::chrono::steady_clock::time_point when) {
  const auto gen = ++state_->generation;
  state_->fired = false;
  timer_.expires_at(when);
  timer_.async_wait([s = state_, gen](boost::system::error_code ec) {
    if (ec || s->generation != gen || s->transport == nullptr) return;
    s->fired = true;
    s->transport->cancel();
  });
}

void TransportDeadline::disarm() {
  ++state_->generation;
  timer_.cancel();
}

bool TransportDeadline::fired() const { return state_->fired; }

}  // namespace el::imap
