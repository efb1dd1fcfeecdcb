// The one-shot HTTP(S) client behind the token calls: a fresh connection, one request, one
// deadline over everything (a stuck DNS look-up included).
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <exception>
#include <map>
#include <memory>
#include <mutex>

#include "el/version.hpp"
#include "oauth/token.hpp"

namespace el::oauth {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using beast::error_code;
using Strand = net::strand<net::any_io_executor>;

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

struct Target {
  bool https = false;
  std::string host;  // for DNS, SNI and certificate checks (IPv6 without brackets)
  std::string port;
  std::string host_header;  // as written in the URL, with brackets and port
  std::string path;         // path + query
  std::string origin;       // scheme://host:port, for error messages (no path: it may carry keys)
};

// Messages name the problem, never the URL (its query or user info may hold credentials).
Target parse_target(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) throw HttpError("malformed URL: " + parsed.error().message());
  const auto& u = *parsed;
  Target t;
  if (u.scheme_id() == boost::urls::scheme::https) {
    t.https = true;
  } else if (u.scheme_id() != boost::urls::scheme::http) {
    throw HttpError("URL scheme is not http or https");
  }
  t.host = u.host_address();
  if (t.host.empty()) throw HttpError("URL has no host");
  if (u.has_port()) {
    if (u.port_number() == 0) throw HttpError("URL has a bad port");
    t.port = u.port();
  } else {
    t.port = t.https ? "443" : "80";
  }
  t.host_header = u.encoded_host_and_port();
  t.path = u.encoded_target();
  if (t.path.empty() || t.path.front() != '/') t.path.insert(0, "/");
  t.origin = std::string(t.https ? "https://" : "http://") + t.host + ":" + t.port;
  return t;
}

bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A header that would split the request (CR, LF) or is not a field name is a caller's bug.
void check_header(const std::string& name, const std::string& value) {
  if (name.empty()) throw HttpError("empty header name");
  for (char c : name) {
    if (!is_token_char(c)) throw HttpError("invalid header name");
  }
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') throw HttpError("invalid value in header " + name);
  }
}

// One request's state, shared by the exchange and the deadline; touched only on the strand.
struct Exchange {
  Exchange(const Strand& s, Target t, http::request<http::string_body> r, const HttpOptions& o)
      : strand(s),
        target(std::move(t)),
        request(std::move(r)),
        opts(o),
        resolver(s),
        plain(s),
        deadline(s) {}

  tcp::socket& lowest() { return tls ? tls->next_layer() : plain; }

  // Ends whatever is pending. A look-up inside getaddrinfo() cannot be interrupted: the
  // exchange then finishes on its own later and finds `aborted` set.
  void abort() {
    aborted = true;
    resolver.cancel();
    error_code ignored;
    lowest().close(ignored);
  }

  Strand strand;
  Target target;
  http::request<http::string_body> request;
  HttpOptions opts;
  tcp::resolver resolver;
  std::shared_ptr<ssl::context> tls_ctx;  // declared before the stream that uses it
  tcp::socket plain;                      // http only
  std::optional<ssl::stream<tcp::socket>> tls;
  net::steady_timer deadline;

  bool aborted = false;
  bool done = false;
  std::string error;  // empty: response is the answer
  std::exception_ptr exception;
  HttpResponse response;
};

// Identifies one version of the CA file, so a file replaced in place is loaded again.
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return {};
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

// Loading the system trust store costs tens of milliseconds, so one context per (ca_file,
// tls_insecure) is kept while the file stays the same; SSL_CTX is safe to share once set up.
// Failures are not kept: a fixed ca_file works on the next call.
std::shared_ptr<ssl::context> tls_context(const HttpOptions& opts) {
  struct Entry {
    std::string stamp;
    std::shared_ptr<ssl::context> ctx;
  };
  static std::mutex mu;
  // Never destroyed: freeing an SSL_CTX after OpenSSL's own exit handler has run would crash.
  static auto* cache = new std::map<std::pair<std::string, bool>, Entry>();
  const std::string stamp = file_stamp(opts.ca_file);
  std::lock_guard lock(mu);
  auto& entry = (*cache)[std::pair(opts.ca_file, opts.tls_insecure)];
  if (entry.ctx && entry.stamp == stamp) return entry.ctx;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  error_code ec;
  ctx->set_default_verify_paths(ec);  // a missing system store is not fatal: ca_file may do
  if (!opts.ca_file.empty()) {
    ctx->load_verify_file(opts.ca_file, ec);
    if (ec) throw HttpError("cannot load ca_file " + opts.ca_file + ": " + ec.message());
  }
  ctx->set_verify_mode(opts.tls_insecure ? ssl::verify_none : ssl::verify_peer);
  entry = Entry{stamp, ctx};
  return ctx;
}

void setup_tls(Exchange& x) {
  x.tls_ctx = tls_context(x.opts);
  x.tls.emplace(x.strand, *x.tls_ctx);

  SSL* handle = x.tls->native_handle();
  const std::string& host = x.target.host;
  error_code not_ip;
  net::ip::make_address(host, not_ip);
  // SNI carries names only; an IP literal is checked against the certificate's IP SANs.
  if (not_ip && SSL_set_tlsext_host_name(handle, host.c_str()) != 1) {
    throw HttpError("cannot set the TLS server name");
  }
  if (!x.opts.tls_insecure) {
    const int ok = not_ip ? SSL_set1_host(handle, host.c_str())
                          : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(handle), host.c_str());
    if (ok != 1) throw HttpError("cannot set up TLS host verification");
  }
}

template <class Stream>
net::awaitable<void> send_and_read(Stream& s, Exchange& x) {
  auto [wec, wn] = co_await http::async_write(s, x.request, kTuple);
  (void)wn;
  if (x.aborted) co_return;
  if (wec) {
    x.error = "sending the request to " + x.target.origin + " failed: " + wec.message();
    co_return;
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  p.header_limit(64 * 1024);
  p.body_limit(x.opts.max_response_bytes);
  auto [rec, rn] = co_await http::async_read(s, buf, p, kTuple);
  (void)rn;
  if (x.aborted) co_return;
  if (rec == ssl::error::stream_truncated && p.is_header_done()) {
    // The server closed TLS without close_notify: fine when the body is delimited by the close
    // (put_eof completes it), a truncated message otherwise.
    rec = {};
    p.put_eof(rec);
  }
  if (rec == http::error::body_limit) {
    x.error = "the response from " + x.target.origin + " exceeds max_response_bytes";
    co_return;
  }
  if (rec || !p.is_done()) {
    x.error = "reading the response from " + x.target.origin +
              " failed: " + (rec ? rec.message() : std::string("incomplete message"));
    co_return;
  }
  auto& res = p.get();
  x.response.status = static_cast<int>(res.result_int());
  if (auto it = res.find(http::field::content_type); it != res.end()) {
    x.response.content_type = std::string(it->value());
  }
  x.response.body = std::move(res.body());
}

// Fills x->response or x->error; returns early once aborted.
net::awaitable<void> run_exchange(std::shared_ptr<Exchange> x) {
  const Target& t = x->target;
  auto [rec, results] = co_await x->resolver.async_resolve(t.host, t.port, kTuple);
  if (x->aborted) co_return;
  if (rec) {
    x->error = "cannot resolve " + t.host + ": " + rec.message();
    co_return;
  }
  auto [cec, endpoint] = co_await net::async_connect(x->lowest(), results, kTuple);
  (void)endpoint;
  if (x->aborted) co_return;
  if (cec) {
    x->error = "cannot connect to " + t.origin + ": " + cec.message();
    co_return;
  }
  error_code ignored;
  x->lowest().set_option(tcp::no_delay(true), ignored);
  if (x->tls) {
    auto [hec] = co_await x->tls->async_handshake(ssl::stream_base::client, kTuple);
    if (x->aborted) co_return;
    if (hec) {
      x->error = "TLS handshake with " + t.origin + " failed: " + hec.message();
      co_return;
    }
    co_await send_and_read(*x->tls, *x);
  } else {
    co_await send_and_read(x->plain, *x);
  }
  // Connection: close was sent; no TLS shutdown (the answer is complete, and a peer that does
  // not answer close_notify would only hold us up).
  x->lowest().close(ignored);
}

// Runs on the exchange's strand: races the exchange against the deadline.
net::awaitable<HttpResponse> run_with_deadline(std::shared_ptr<Exchange> x) {
  x->deadline.expires_after(x->opts.timeout);
  net::co_spawn(x->strand, run_exchange(x), [x](std::exception_ptr e) {
    x->done = true;
    x->exception = e;
    x->deadline.cancel();
  });
  error_code wait_ec;
  if (!x->done) {
    auto [ec] = co_await x->deadline.async_wait(kTuple);
    wait_ec = ec;
  }
  if (!x->done) {
    x->abort();
    // Without an expiry the wait was cancelled from outside: the caller gave up.
    throw HttpError(wait_ec ? "request to " + x->target.origin + " cancelled"
                            : "request to " + x->target.origin + " timed out");
  }
  if (x->exception) std::rethrow_exception(x->exception);
  if (!x->error.empty()) throw HttpError(x->error);
  co_return std::move(x->response);
}

}  // namespace

net::awaitable<HttpResponse> http_request(
    net::any_io_executor ex, std::string_view method, std::string_view url,
    const std::vector<std::pair<std::string, std::string>>& headers, std::string body,
    const HttpOptions& opts) {
  // Not a coroutine: the request is built (and checked) now, so the caller's views and vector
  // need not outlive this call, and a bad request throws from here.
  Target target = parse_target(url);
  const auto verb = http::string_to_verb(beast::string_view(method.data(), method.size()));
  if (verb == http::verb::unknown) throw HttpError("unknown HTTP method");

  http::request<http::string_body> req{verb, target.path, 11};
  req.set(http::field::user_agent, std::string("email-listener/") + el::kVersion);
  for (const auto& [name, value] : headers) {
    check_header(name, value);
    req.set(name, value);
  }
  // These describe the connection and the body: not the caller's to choose.
  req.set(http::field::host, target.host_header);
  req.set(http::field::connection, "close");
  req.body() = std::move(body);
  req.prepare_payload();

  auto strand = net::make_strand(ex);
  auto x = std::make_shared<Exchange>(strand, std::move(target), std::move(req), opts);
  if (x->target.https) setup_tls(*x);
  return net::co_spawn(strand, run_with_deadline(std::move(x)), net::use_awaitable);
}

}  // namespace el::oauth
