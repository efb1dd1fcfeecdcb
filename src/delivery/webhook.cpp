// Webhook sink: signs each event and POSTs it over a keep-alive pool, retrying with backoff.
#include "delivery/webhook.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <charconv>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "delivery/backoff.hpp"
#include "el/version.hpp"

namespace el::delivery {

std::string sign(std::string_view body, std::string_view secret) {
  // A non-null key pointer even for an empty secret: OpenSSL treats a null key as "no key".
  static const unsigned char kEmpty = 0;
  const auto* key =
      secret.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(secret.data());
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac.data(),
           &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");  // broken invariant: OpenSSL is unusable
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256=";
  out.reserve(out.size() + 2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 0x0f]);
  }
  return out;
}

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Strand = net::strand<net::any_io_executor>;
using Request = http::request<http::string_body>;
using beast::error_code;

constexpr auto kTuple = net::as_tuple(net::use_awaitable);

// Where one URL's requests go; key identifies the pool (scheme, host, port).
struct Endpoint {
  bool https = false;
  std::string host;  // for DNS, SNI and certificate checks (IPv6 without brackets)
  std::string port;
  std::string host_header;  // as written in the URL, with brackets and port
  std::string target;       // path + query
  std::string key;          // scheme://host:port
};

std::optional<Endpoint> parse_endpoint(std::string_view url, std::string& why) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    why = parsed.error().message();
    return std::nullopt;
  }
  const auto& u = *parsed;
  Endpoint ep;
  if (u.scheme_id() == boost::urls::scheme::https) {
    ep.https = true;
  } else if (u.scheme_id() != boost::urls::scheme::http) {
    why = "scheme is not http or https";
    return std::nullopt;
  }
  ep.host = u.host_address();
  if (ep.host.empty()) {
    why = "no host";
    return std::nullopt;
  }
  if (u.has_port()) {
    if (u.port_number() == 0) {
      why = "bad port";
      return std::nullopt;
    }
    ep.port = u.port();
  } else {
    ep.port = ep.https ? "443" : "80";
  }
  ep.host_header = u.encoded_host_and_port();
  ep.target = u.encoded_target();
  if (ep.target.empty() || ep.target.front() != '/') ep.target.insert(0, "/");
  ep.key = std::string(ep.https ? "https://" : "http://") + ep.host + ":" + ep.port;
  return ep;
}

// One kept-alive connection. For https only tls is used; plain stays closed.
struct Conn {
  Conn(const net::any_io_executor& ex, ssl::context* ctx) : plain(ex) {
    if (ctx != nullptr) tls.emplace(ex, *ctx);
  }
  tcp::socket& lowest() { return tls ? tls->next_layer() : plain; }

  tcp::socket plain;
  std::optional<ssl::stream<tcp::socket>> tls;
  beast::flat_buffer buf;
};

// An idle kept-alive connection must have nothing to read: EOF means the server closed it, and
// any bytes (a TLS close_notify, garbage) mean it is not in a state we can reuse.
bool idle_connection_usable(tcp::socket& s) {
  if (!s.is_open()) return false;
  char c;
  const auto n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  std::int64_t secs = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
  if (ec != std::errc() || end != v.data() + v.size() || secs < 0) return std::nullopt;
  return std::chrono::seconds(secs);  // the HTTP-date form is not honoured: backoff applies
}

// What one deliver() call needs, copied before the first suspension so the caller's event and
// target may go away.
struct Job {
  std::string body;
  std::string event_id;
  std::string mailbox_id;
  std::string url;
  std::string secret;
};

// The state of one deliver() call. Everything except granted/slot bookkeeping is touched only on
// the call's strand, which is how stop() and the request watchdog reach it safely.
struct Call {
  explicit Call(const Strand& s) : strand(s), wake(s), watchdog(s) {}

  void abort_io() {
    if (resolver != nullptr) resolver->cancel();
    if (socket != nullptr) {
      error_code ignored;
      socket->close(ignored);
    }
  }

  Strand strand;
  net::steady_timer wake;      // backoff sleeps and waits for a concurrency slot
  net::steady_timer watchdog;  // request_timeout of the current attempt
  tcp::resolver* resolver = nullptr;
  tcp::socket* socket = nullptr;
  std::uint64_t io_gen = 0;  // invalidates watchdog expiries that belong to an earlier attempt
  bool timed_out = false;
  bool waiting_slot = false;
  std::uint64_t slot_wait_id = 0;
  bool granted = false;  // guarded by Impl::mu_
};

// Whatever way a coroutine leaves an I/O step (even by an exception), stop() and the watchdog
// must not find pointers to a resolver or socket that no longer exists.
struct IoScope {
  explicit IoScope(Call& c) : call(c) {}
  ~IoScope() {
    call.resolver = nullptr;
    call.socket = nullptr;
  }
  IoScope(const IoScope&) = delete;
  IoScope& operator=(const IoScope&) = delete;
  Call& call;
};

// The caller's coroutine was cancelled (a terminal cancellation reaches us through co_spawn).
net::awaitable<bool> caller_cancelled() {
  auto state = co_await net::this_coro::cancellation_state;
  co_return state.cancelled() != net::cancellation_type::none;
}

struct Outcome {
  bool got_response = false;
  unsigned status = 0;
  std::optional<std::chrono::seconds> retry_after;
  error_code ec;
  double seconds = 0;
};

}  // namespace

struct WebhookSink::Impl {
  Impl(net::any_io_executor ex, WebhookOptions opts)
      : ex_(std::move(ex)), opts_(std::move(opts)), tls_ctx_(ssl::context::tls_client) {
    SSL_CTX_set_min_proto_version(tls_ctx_.native_handle(), TLS1_2_VERSION);
    SSL_CTX_set_mode(tls_ctx_.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    tls_ctx_.set_default_verify_paths();
    if (!opts_.ca_file.empty()) tls_ctx_.load_verify_file(opts_.ca_file);  // throws: bad config
    tls_ctx_.set_verify_mode(opts_.tls_insecure ? ssl::verify_none : ssl::verify_peer);
    if (opts_.max_attempts < 1) opts_.max_attempts = 1;
    if (opts_.max_concurrent < 1) opts_.max_concurrent = 1;
  }

  static net::awaitable<bool> deliver(std::shared_ptr<Impl> self, Job job) {
    if (self->stopped_) co_return false;
    auto strand = net::make_strand(self->ex_);
    auto call = std::make_shared<Call>(strand);
    co_return co_await net::co_spawn(strand, run(self, std::move(job), call), net::use_awaitable);
  }

  void stop() {
    stopped_ = true;
    std::vector<std::shared_ptr<Call>> calls;
    std::unordered_map<std::string, std::vector<std::unique_ptr<Conn>>> idle;
    {
      std::lock_guard lock(mu_);
      calls.assign(calls_.begin(), calls_.end());
      idle.swap(idle_);
    }
    for (auto& c : calls) {
      net::post(c->strand, [c] {
        c->wake.cancel();
        c->abort_io();
      });
    }
    // idle goes out of scope here: no operation is pending on those sockets.
  }

 private:
  // Registers a call so stop() can reach it.
  struct Registration {
    Registration(Impl& impl, std::shared_ptr<Call> call) : impl_(impl), call_(std::move(call)) {
      std::lock_guard lock(impl_.mu_);
      impl_.calls_.insert(call_);
    }
    ~Registration() {
      std::lock_guard lock(impl_.mu_);
      impl_.calls_.erase(call_);
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    Impl& impl_;
    std::shared_ptr<Call> call_;
  };

  struct SlotGuard {
    explicit SlotGuard(Impl& impl) : impl_(impl) {}
    ~SlotGuard() { impl_.release_slot(); }
    SlotGuard(const SlotGuard&) = delete;
    SlotGuard& operator=(const SlotGuard&) = delete;
    Impl& impl_;
  };

  static net::awaitable<bool> run(std::shared_ptr<Impl> self, Job job, std::shared_ptr<Call> call) {
    Registration reg(*self, call);  // before the stopped_ check: see stop()
    if (self->stopped_) co_return false;
    // A cancelled caller ends the delivery like stop() does: checked, not thrown, so the
    // connection and slot bookkeeping always run to the end.
    co_await net::this_coro::throw_if_cancelled(false);
    const auto& opts = self->opts_;
    auto& m = metrics::global();

    std::string why;
    const auto ep = parse_endpoint(job.url, why);
    if (!ep) {
      // No attempt can succeed; the caller keeps its checkpoint like for any other failure.
      m.events_dropped.fetch_add(1, std::memory_order_relaxed);
      log::error("webhook_bad_url",
                 {{"mailbox", job.mailbox_id}, {"event_id", job.event_id}, {"error", why}});
      co_return false;
    }

    const auto deadline = Clock::now() + opts.max_total;
    Request req{http::verb::post, ep->target, 11};
    req.set(http::field::host, ep->host_header);
    req.set(http::field::user_agent, std::string("email-listener/") + el::kVersion);
    req.set(http::field::content_type, "application/json");
    req.set("X-Email-Listener-Event-Id", job.event_id);
    req.set("X-Email-Listener-Signature", sign(job.body, job.secret));
    req.body() = std::move(job.body);
    req.prepare_payload();

    for (int attempt = 1;; ++attempt) {
      req.set("X-Email-Listener-Attempt", std::to_string(attempt));
      Outcome out;
      {
        // Awaited into variables, never inside a condition: GCC 12 miscompiles that (SIGILL).
        const bool got_slot = co_await self->acquire_slot(call, deadline);
        if (!got_slot) {
          if (self->stopped_ || co_await caller_cancelled()) co_return false;
          m.events_dropped.fetch_add(1, std::memory_order_relaxed);
          log::error("webhook_gave_up", {{"mailbox", job.mailbox_id},
                                         {"event_id", job.event_id},
                                         {"attempt", std::to_string(attempt)},
                                         {"endpoint", ep->key},
                                         {"error", "max_total reached waiting for a slot"}});
          co_return false;
        }
        SlotGuard slot(*self);
        out = co_await self->attempt(call, *ep, req, deadline);
      }
      if (out.got_response) m.webhook_latency.observe(out.seconds);
      if (out.got_response && out.status >= 200 && out.status < 300) {
        m.events_delivered.fetch_add(1, std::memory_order_relaxed);
        log::debug("webhook_delivered", {{"mailbox", job.mailbox_id},
                                         {"event_id", job.event_id},
                                         {"attempt", std::to_string(attempt)},
                                         {"status", std::to_string(out.status)}});
        co_return true;
      }
      // An attempt cut short by stop() says nothing about the webhook: not counted.
      if (self->stopped_ || co_await caller_cancelled()) co_return false;

      m.events_failed.fetch_add(1, std::memory_order_relaxed);
      log::warn("webhook_attempt_failed",
                {{"mailbox", job.mailbox_id},
                 {"event_id", job.event_id},
                 {"attempt", std::to_string(attempt)},
                 {"endpoint", ep->key},
                 out.got_response ? log::Field{"status", std::to_string(out.status)}
                                  : log::Field{"error", out.ec.message()}});

      auto delay = full_jitter(attempt, opts.backoff_initial, opts.backoff_max);
      if (out.retry_after && (out.status == 429 || out.status == 503)) {
        delay = std::min<std::chrono::milliseconds>(*out.retry_after, opts.backoff_max);
      }
      const bool out_of_attempts = attempt >= opts.max_attempts;
      // Sleeping past max_total only to give up afterwards would just hold the caller.
      if (out_of_attempts || Clock::now() + delay >= deadline) {
        m.events_dropped.fetch_add(1, std::memory_order_relaxed);
        log::error("webhook_gave_up",
                   {{"mailbox", job.mailbox_id},
                    {"event_id", job.event_id},
                    {"attempt", std::to_string(attempt)},
                    {"endpoint", ep->key},
                    {"error", out_of_attempts ? "max_attempts reached" : "max_total reached"}});
        co_return false;
      }
      const bool slept = co_await self->sleep(*call, delay);
      if (!slept) co_return false;
      const bool cancelled = co_await caller_cancelled();
      if (cancelled) co_return false;
    }
  }

  net::awaitable<bool> sleep(Call& call, std::chrono::milliseconds delay) {
    // Checked and armed in one strand turn, so stop()'s posted cancel cannot slip in between.
    if (stopped_) co_return false;
    call.wake.expires_after(delay);
    co_await call.wake.async_wait(kTuple);
    co_return !stopped_;
  }

  // A counting semaphore: waiters queue in FIFO order; a release hands its slot directly to the
  // first waiter and wakes it on its own strand.
  net::awaitable<bool> acquire_slot(std::shared_ptr<Call> call, Clock::time_point deadline) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) co_return false;
      if (in_flight_ < opts_.max_concurrent) {
        ++in_flight_;
        co_return true;
      }
      call->granted = false;
      slot_waiters_.emplace_back(call, ++call->slot_wait_id);
    }
    call->waiting_slot = true;
    for (;;) {
      call->wake.expires_at(deadline);
      co_await call->wake.async_wait(kTuple);
      const bool cancelled = co_await caller_cancelled();
      std::lock_guard lock(mu_);
      if (call->granted) {
        call->waiting_slot = false;
        if (!stopped_ && Clock::now() < deadline) co_return true;
        release_slot_locked();
        co_return false;
      }
      if (stopped_ || cancelled || Clock::now() >= deadline) {
        call->waiting_slot = false;
        std::erase_if(slot_waiters_, [&](const auto& w) { return w.first == call; });
        co_return false;
      }
    }
  }

  void release_slot() {
    std::lock_guard lock(mu_);
    release_slot_locked();
  }

  void release_slot_locked() {
    if (slot_waiters_.empty()) {
      --in_flight_;
      return;
    }
    auto [w, id] = std::move(slot_waiters_.front());
    slot_waiters_.pop_front();
    w->granted = true;
    // The id check keeps a late wake-up from cutting short a later backoff sleep of that call.
    net::post(w->strand, [w, id] {
      if (w->waiting_slot && w->slot_wait_id == id) w->wake.cancel();
    });
  }

  std::unique_ptr<Conn> take_idle(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    while (!list.empty()) {
      auto c = std::move(list.back());  // most recently used: least likely timed out
      list.pop_back();
      if (idle_connection_usable(c->lowest())) return c;
    }
    return nullptr;
  }

  void put_idle(const std::string& key, std::unique_ptr<Conn> c) {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    auto& list = idle_[key];
    if (list.size() < opts_.max_idle_per_endpoint) list.push_back(std::move(c));
  }

  // Checked after every suspension: an abort that arrived while no operation was pending (or
  // one that cannot be cancelled, like a resolve) must still end the attempt.
  net::awaitable<bool> interrupted(const Call& call) const {
    co_return stopped_ || call.timed_out || co_await caller_cancelled();
  }

  net::awaitable<std::unique_ptr<Conn>> connect(std::shared_ptr<Call> call, const Endpoint& ep,
                                                error_code& ec) {
    tcp::resolver resolver(call->strand);
    std::unique_ptr<Conn> conn;
    IoScope io(*call);
    call->resolver = &resolver;
    auto [rec, results] = co_await resolver.async_resolve(ep.host, ep.port, kTuple);
    call->resolver = nullptr;
    if (rec || co_await interrupted(*call)) {
      ec = rec ? rec : net::error::operation_aborted;
      co_return nullptr;
    }
    conn = std::make_unique<Conn>(ex_, ep.https ? &tls_ctx_ : nullptr);
    call->socket = &conn->lowest();
    auto [cec, endpoint] = co_await net::async_connect(conn->lowest(), results, kTuple);
    (void)endpoint;
    if (!cec && co_await interrupted(*call)) cec = net::error::operation_aborted;
    if (!cec) {
      error_code ignored;
      conn->lowest().set_option(tcp::no_delay(true), ignored);
    }
    if (!cec && ep.https) {
      SSL* ssl_handle = conn->tls->native_handle();
      error_code not_ip;
      net::ip::make_address(ep.host, not_ip);
      // SNI carries names only; an IP literal is checked against the certificate's IP SANs.
      if (not_ip) SSL_set_tlsext_host_name(ssl_handle, ep.host.c_str());
      if (!opts_.tls_insecure) {
        const int ok =
            not_ip ? SSL_set1_host(ssl_handle, ep.host.c_str())
                   : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), ep.host.c_str());
        if (ok != 1) cec = net::error::invalid_argument;
      }
      if (!cec) {
        auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, kTuple);
        cec = hec;
      }
    }
    call->socket = nullptr;
    if (cec || co_await interrupted(*call)) {
      ec = cec ? cec : net::error::operation_aborted;
      co_return nullptr;
    }
    co_return conn;
  }

  // Sends req and reads the response head; the body is read and discarded (we only need the
  // status, and a large body must not cost memory).
  template <class Stream>
  net::awaitable<Outcome> exchange(Stream& s, Conn& c, Request& req, Call& call, bool& got_some,
                                   bool& reusable) {
    Outcome out;
    got_some = false;
    reusable = false;
    auto [wec, wn] = co_await http::async_write(s, req, kTuple);
    (void)wn;
    if (wec || co_await interrupted(call)) {
      out.ec = wec ? wec : net::error::operation_aborted;
      co_return out;
    }
    http::response_parser<http::buffer_body> p;
    auto [hec, hn] = co_await http::async_read_header(s, c.buf, p, kTuple);
    (void)hn;
    got_some = p.got_some();
    if (hec || co_await interrupted(call)) {
      out.ec = hec ? hec : net::error::operation_aborted;
      co_return out;
    }
    out.got_response = true;
    out.status = p.get().result_int();
    if (auto it = p.get().find(http::field::retry_after); it != p.get().end()) {
      out.retry_after = parse_retry_after(it->value());
    }
    std::array<char, 4096> scratch;
    while (!p.is_done()) {
      p.get().body().data = scratch.data();
      p.get().body().size = scratch.size();
      auto [rec, rn] = co_await http::async_read(s, c.buf, p, kTuple);
      (void)rn;
      if (rec == http::error::need_buffer) rec = {};
      if (rec || co_await interrupted(call)) {
        // The status is the server's verdict; only the connection is lost.
        out.ec = rec ? rec : net::error::operation_aborted;
        co_return out;
      }
    }
    reusable = p.get().keep_alive() && c.buf.size() == 0;
    co_return out;
  }

  net::awaitable<Outcome> attempt(std::shared_ptr<Call> call, const Endpoint& ep, Request& req,
                                  Clock::time_point total_deadline) {
    const auto t0 = Clock::now();
    call->timed_out = false;
    const auto gen = ++call->io_gen;
    call->watchdog.expires_at(std::min(t0 + opts_.request_timeout, total_deadline));
    call->watchdog.async_wait(net::bind_executor(call->strand, [call, gen](error_code ec) {
      if (ec || call->io_gen != gen) return;
      call->timed_out = true;
      call->abort_io();
    }));

    Outcome out;
    auto conn = take_idle(ep.key);
    bool reused = conn != nullptr;
    for (;;) {
      if (!conn) {
        conn = co_await connect(call, ep, out.ec);
        if (!conn) break;
      }
      bool got_some = false;
      bool reusable = false;
      {
        IoScope io(*call);
        call->socket = &conn->lowest();
        if (conn->tls) {
          out = co_await exchange(*conn->tls, *conn, req, *call, got_some, reusable);
        } else {
          out = co_await exchange(conn->plain, *conn, req, *call, got_some, reusable);
        }
      }
      if (out.got_response) {
        if (reusable && !out.ec && !call->timed_out) put_idle(ep.key, std::move(conn));
        break;
      }
      conn.reset();  // a connection that failed is never reused
      // The server closed a kept-alive connection before answering (its idle timeout raced our
      // request): standard clients retry at once on a fresh connection, not counting an attempt.
      if (reused && !got_some && !co_await interrupted(*call)) {
        log::debug("webhook_stale_connection", {{"endpoint", ep.key}, {"error", out.ec.message()}});
        reused = false;
        continue;
      }
      break;
    }
    ++call->io_gen;
    call->watchdog.cancel();
    if (call->timed_out && !out.got_response) out.ec = net::error::timed_out;
    out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    co_return out;
  }

  net::any_io_executor ex_;
  WebhookOptions opts_;
  ssl::context tls_ctx_;
  std::atomic<bool> stopped_{false};

  std::mutex mu_;  // guards everything below
  std::unordered_map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;
  std::size_t in_flight_ = 0;
  std::deque<std::pair<std::shared_ptr<Call>, std::uint64_t>> slot_waiters_;
  std::unordered_set<std::shared_ptr<Call>> calls_;
};

WebhookSink::WebhookSink(net::any_io_executor ex, WebhookOptions opts)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(opts))) {}

// Coroutines in flight own the Impl; stopping makes them finish soon without us.
WebhookSink::~WebhookSink() { impl_->stop(); }

net::awaitable<bool> WebhookSink::deliver(const core::Event& event,
                                          const core::WebhookTarget& target) {
  // Not a coroutine itself: everything is copied now, so the caller's objects and this sink may
  // go away while the delivery runs.
  return Impl::deliver(impl_, Job{core::serialize(event), event.id, event.mailbox_id, target.url,
                                  target.secret.reveal()});
}

void WebhookSink::stop() { impl_->stop(); }

}  // namespace el::delivery
