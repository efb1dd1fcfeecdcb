// TCP and TLS transports over Asio: resolve/connect/handshake under one deadline, shared
// ssl::context per trust configuration, STARTTLS upgrade, errors mapped to imap::Error.
#include "imap/transport.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
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

class AsioTransport final : public Transport {
 public:
  AsioTransport(tcp::socket sock, std::string host, core::TlsSettings tls)
      : sock_(std::move(sock)), host_(std::move(host)), tls_settings_(std::move(tls)) {}

  net::any_io_executor get_executor() override { return lowest().get_executor(); }

  net::awaitable<std::size_t> read_some(net::mutable_buffer buf) override {
    error_code ec;
    std::size_t n = 0;
    if (tls_) {
      std::tie(ec, n) = co_await tls_->async_read_some(buf, kTuple);
    } else {
      std::tie(ec, n) = co_await sock_.async_read_some(buf, kTuple);
    }
    if (ec) throw Error(ErrorKind::io, "read from " + host_ + ": " + describe(ec));
    co_return n;
  }

  net::awaitable<void> write_all(std::string_view data) override {
    error_code ec;
    if (tls_) {
      std::tie(ec, std::ignore) = co_await net::async_write(*tls_, net::buffer(data), kTuple);
    } else {
      std::tie(ec, std::ignore) = co_await net::async_write(sock_, net::buffer(data), kTuple);
    }
    if (ec) throw Error(ErrorKind::io, "write to " + host_ + ": " + describe(ec));
  }

  net::awaitable<void> start_tls() override {
    if (tls_) throw Error(ErrorKind::tls, "TLS is already active");
    co_await handshake();
  }

  void cancel() override {
    error_code ec;
    lowest().cancel(ec);
  }

  void close() override {
    error_code ec;
    // No close_notify: it would need a round trip, and the server copes with a plain close.
    lowest().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close(ec);
  }

  net::awaitable<void> handshake() {
    ctx_ = shared_context(tls_settings_);
    tls_ = std::make_unique<ssl::stream<tcp::socket>>(std::move(sock_), *ctx_);
    SSL* ssl = tls_->native_handle();
    // Per SSL too, in case the context was set up elsewhere: idle sessions drop their
    // read/write buffers (~34 KiB) between records.
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    if (!is_ip_address(host_)) SSL_set_tlsext_host_name(ssl, host_.c_str());
    if (!tls_settings_.insecure) {
      tls_->set_verify_callback(
          [v = ssl::host_name_verification(host_)](bool pre, ssl::verify_context& vc) {
            bool ok = v(pre, vc);
            // host_name_verification leaves the error unset; name it so the report says why.
            if (pre && !ok) {
              X509_STORE_CTX_set_error(vc.native_handle(), X509_V_ERR_HOSTNAME_MISMATCH);
            }
            return ok;
          });
    }
    auto [ec] = co_await tls_->async_handshake(ssl::stream_base::client, kTuple);
    if (ec) {
      std::string msg = "TLS handshake with " + host_ + " failed: " + ec.message();
      long vr = SSL_get_verify_result(ssl);
      if (vr != X509_V_OK) msg += std::string(" (") + X509_verify_cert_error_string(vr) + ")";
      if (ec == net::error::operation_aborted) {
        throw Error(ErrorKind::timeout, "TLS handshake with " + host_ + " timed out");
      }
      throw Error(ErrorKind::tls, msg);
    }
  }

 private:
  tcp::socket& lowest() { return tls_ ? tls_->next_layer() : sock_; }

  tcp::socket sock_;  // moved into tls_ once TLS starts
  std::string host_;
  core::TlsSettings tls_settings_;
  std::shared_ptr<ssl::context> ctx_;
  std::unique_ptr<ssl::stream<tcp::socket>> tls_;
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

}  // namespace el::imap
