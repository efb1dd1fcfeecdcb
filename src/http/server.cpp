// The HTTP listener: one coroutine per connection on its own strand, Beast parser limits and
// deadlines, and a registry of live connections so that stop() can close them.
#include "http/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "core/log.hpp"
#include "http/internal.hpp"
#include "http/router.hpp"

namespace el::http {
namespace {

namespace beast = boost::beast;
using tcp = net::ip::tcp;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

constexpr std::uint32_t kHeaderLimit = 16 * 1024;
// After an error response, how long to read and discard what the client is still sending, so the
// close does not turn into a reset that destroys the response before the client reads it.
constexpr std::chrono::milliseconds kLingerTime{1000};

struct Connection {
  explicit Connection(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;  // its executor is the connection's strand
  bool busy = false;         // a request is in the handler; touched on the strand only
};

std::string path_of(std::string_view target) {
  return internal::truncate_utf8(target.substr(0, target.find('?')), 256);
}

std::string millis_since(std::chrono::steady_clock::time_point start) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(us) / 1000.0);
  return buf;
}

void access_log(std::string_view method, std::string_view target, unsigned status,
                std::chrono::steady_clock::time_point start) {
  std::string path = path_of(target);
  // Probes and scrapes arrive every few seconds; at info they would drown the API's lines.
  const bool probe = path == "/healthz" || path == "/readyz" || path == "/metrics";
  if (probe && !log::enabled(log::Level::debug)) return;
  log::write(probe ? log::Level::debug : log::Level::info, "http_request",
             {{"method", std::string(method)},
              {"path", std::move(path)},
              {"status", std::to_string(status)},
              {"ms", millis_since(start)}});
}

bool is_100_continue(std::string_view v) {
  constexpr std::string_view k = "100-continue";
  return v.size() == k.size() && std::equal(v.begin(), v.end(), k.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

bool is_http_parse_error(const boost::system::error_code& ec) {
  return ec.category() == beast::http::make_error_code(beast::http::error::bad_method).category();
}

}  // namespace

struct ApiServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::io_context& c, ServerOptions o, service::MailboxApi& a)
      : ioc(c), opts(std::move(o)), api(a), acceptor(net::make_strand(c)) {}

  net::io_context& ioc;
  const ServerOptions opts;
  service::MailboxApi& api;
  tcp::acceptor acceptor;  // used on its own strand once start() returns
  std::atomic<std::uint16_t> bound_port{0};

  std::mutex mu;
  bool stopping = false;  // guarded by mu; also read (racily is fine) through stopping_flag
  std::atomic<bool> stopping_flag{false};
  std::unordered_map<Connection*, std::weak_ptr<Connection>> live;  // guarded by mu

  net::awaitable<void> accept_loop();
  net::awaitable<void> serve(std::shared_ptr<Connection> c);
  net::awaitable<void> reject(Connection& c, unsigned status, std::string code,
                              std::string message);
  net::awaitable<void> linger_close(Connection& c);
  void forget(Connection* c) {
    std::lock_guard lock(mu);
    live.erase(c);
  }
};

net::awaitable<void> ApiServer::Impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    // Each connection gets its own strand: handlers of one connection never run concurrently,
    // different connections use every thread of the io_context.
    auto [ec, socket] = co_await acceptor.async_accept(net::make_strand(ioc), kTuple);
    if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning on the failing accept.
      log::warn("http_accept_failed", {{"error", ec.message()}});
      net::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(kTuple);
      continue;
    }
    auto conn = std::make_shared<Connection>(std::move(socket));
    {
      // Registering under the same lock that stop() takes means a connection is either seen by
      // stop() or sees the stop itself; none slips through.
      std::lock_guard lock(mu);
      if (stopping) {
        boost::system::error_code ignored;
        conn->stream.socket().close(ignored);
        co_return;
      }
      live.emplace(conn.get(), conn);
    }
    auto executor = conn->stream.get_executor();
    net::co_spawn(executor, serve(conn), [self, raw = conn.get()](std::exception_ptr e) {
      self->forget(raw);
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("http_connection_failed", {{"error", ex.what()}});
      } catch (...) {
        log::error("http_connection_failed", {{"error", "unknown exception"}});
      }
    });
  }
}

namespace {
// POST /v1/mailboxes/{id}/send (query string aside).
bool is_send_route(std::string_view target) {
  target = target.substr(0, target.find('?'));
  while (!target.empty() && target.back() == '/') target.remove_suffix(1);
  return target.starts_with("/v1/mailboxes/") && target.ends_with("/send");
}
}  // namespace

net::awaitable<void> ApiServer::Impl::serve(std::shared_ptr<Connection> c) {
  beast::flat_buffer buffer;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(opts.max_body);
    // One deadline for the whole request, header and body: a slow sender cannot hold the
    // connection open past it (and an idle keep-alive connection is closed when it expires).
    c->stream.expires_after(opts.read_timeout);
    auto [ec, n] = co_await bhttp::async_read_header(c->stream, buffer, parser, kTuple);
    if (!ec && !parser.is_done() && !is_send_route(parser.get().target())) {
      // Only sending carries attachments; settings bodies stay small.
      parser.body_limit(opts.max_settings_body);  // chunked bodies, checked while reading
      const auto declared = parser.content_length();
      if (declared && *declared > opts.max_settings_body) ec = bhttp::error::body_limit;
    }
    if (!ec && !parser.is_done()) {
      // curl and others wait for this before sending a large body; the limit was checked
      // against Content-Length while reading the header, so the body is acceptable in size.
      if (is_100_continue(parser.get()[bhttp::field::expect])) {
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, parser.get().version()};
        auto [wec, wn] = co_await bhttp::async_write(c->stream, cont, kTuple);
        ec = wec;
      }
      if (!ec) std::tie(ec, n) = co_await bhttp::async_read(c->stream, buffer, parser, kTuple);
    }
    if (ec) {
      const auto start = std::chrono::steady_clock::now();
      if (ec == bhttp::error::body_limit) {
        co_await reject(*c, 413, "payload_too_large", "the body exceeds the size limit");
        access_log(parser.get().method_string(), parser.get().target(), 413, start);
      } else if (ec == bhttp::error::header_limit) {
        co_await reject(*c, 431, "header_too_large", "the request header is too large");
      } else if (is_http_parse_error(ec) && ec != bhttp::error::end_of_stream &&
                 ec != bhttp::error::partial_message) {
        log::debug("http_bad_request", {{"error", ec.message()}});
        co_await reject(*c, 400, "bad_request", "malformed HTTP request");
      } else {
        // end_of_stream between requests, timeout, reset, or stop(): nothing to answer.
        boost::system::error_code ignored;
        c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        c->stream.close();
      }
      co_return;
    }

    const auto start = std::chrono::steady_clock::now();
    const Request& req = parser.get();
    c->busy = true;
    Response res = co_await handle(req, api, opts.tokens);
    if (stopping_flag.load()) res.keep_alive(false);  // finish this answer, take no more
    c->stream.expires_after(opts.read_timeout);
    auto [wec, wn] = co_await bhttp::async_write(c->stream, res, kTuple);
    c->busy = false;
    if (stopping_flag.load()) res.keep_alive(false);
    access_log(req.method_string(), req.target(), res.result_int(), start);
    if (wec) {
      c->stream.close();
      co_return;
    }
    if (!res.keep_alive()) {
      co_await linger_close(*c);
      co_return;
    }
  }
}

net::awaitable<void> ApiServer::Impl::reject(Connection& c, unsigned status, std::string code,
                                             std::string message) {
  // The request could not be read completely, so the connection cannot carry another one.
  Response res = error_response({status, std::move(code), std::move(message), ""}, 11, false);
  c.stream.expires_after(opts.read_timeout);
  auto [ec, n] = co_await bhttp::async_write(c.stream, res, kTuple);
  if (ec) {
    c.stream.close();
    co_return;
  }
  co_await linger_close(c);
}

net::awaitable<void> ApiServer::Impl::linger_close(Connection& c) {
  boost::system::error_code ignored;
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  // Closing with unread input makes the kernel send RST, which can discard our response in the
  // client's buffers. So read and drop input until the client closes or the linger time is up.
  c.stream.expires_after(kLingerTime);
  std::array<char, 8192> sink;
  for (;;) {
    auto [ec, n] = co_await c.stream.async_read_some(net::buffer(sink), kTuple);
    if (ec) break;
  }
  c.stream.close();
}

ApiServer::ApiServer(boost::asio::io_context& ioc, ServerOptions opts, service::MailboxApi& api)
    : impl_(std::make_shared<Impl>(ioc, std::move(opts), api)) {}

ApiServer::~ApiServer() {
  if (impl_) stop();
}

void ApiServer::start() {
  auto& a = impl_->acceptor;
  if (a.is_open()) throw std::logic_error("ApiServer::start called twice");
  const tcp::endpoint ep{net::ip::make_address(impl_->opts.address), impl_->opts.port};
  a.open(ep.protocol());
  a.set_option(net::socket_base::reuse_address(true));
  a.bind(ep);
  a.listen(net::socket_base::max_listen_connections);
  impl_->bound_port = a.local_endpoint().port();
  net::co_spawn(a.get_executor(), impl_->accept_loop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("http_accept_loop_failed", {{"error", ex.what()}});
    } catch (...) {
      log::error("http_accept_loop_failed", {{"error", "unknown exception"}});
    }
  });
  log::info("http_listening",
            {{"address", impl_->opts.address}, {"port", std::to_string(impl_->bound_port)}});
}

void ApiServer::stop() {
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    impl_->stopping_flag = true;
    for (auto& [raw, weak] : impl_->live) {
      if (auto c = weak.lock()) conns.push_back(std::move(c));
    }
  }
  // Sockets are not thread-safe: each is closed on the strand that owns it.
  net::post(impl_->acceptor.get_executor(), [impl = impl_] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  for (auto& c : conns) {
    net::post(c->stream.get_executor(), [c] {
      // A connection inside the handler finishes its answer and then closes (see serve()).
      if (c->busy) return;
      boost::system::error_code ignored;
      c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      c->stream.close();
    });
  }
}

std::uint16_t ApiServer::port() const { return impl_->bound_port; }

}  // namespace el::http
