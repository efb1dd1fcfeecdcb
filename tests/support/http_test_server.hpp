// A scripted HTTP(S) server on 127.0.0.1 for the webhook and OAuth tests: records requests and
// answers each one as the test's script says (status, body, delay, closing the connection), plus
// a self-signed certificate made at test time for the HTTPS cases.
#pragma once
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace el::testing {

namespace net = boost::asio;
namespace http = boost::beast::http;

struct Recorded {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  int connection = 0;  // 0-based accept index
  std::string sni;     // https only: the server name the client sent
  std::chrono::steady_clock::time_point at;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  bool has(const std::string& lower_name) const { return headers.count(lower_name) != 0; }
};

struct Action {
  unsigned status = 200;
  std::optional<std::string> body;  // unset: "answer <status>" (no body for 204 and 304)
  std::string content_type = "text/plain";
  std::chrono::milliseconds delay{0};  // before answering (a hanging server: long)
  bool close_without_response = false;
  bool close_after_response = false;  // without saying Connection: close (an idle timeout)
  std::string retry_after;

  // Named constructors: designated initializers trip -Wmissing-field-initializers.
  static Action reply(unsigned status, std::string retry_after = {}) {
    Action a;
    a.status = status;
    a.retry_after = std::move(retry_after);
    return a;
  }
  static Action with_body(unsigned status, std::string body,
                          std::string content_type = "application/json") {
    Action a;
    a.status = status;
    a.body = std::move(body);
    a.content_type = std::move(content_type);
    return a;
  }
  static Action hang(std::chrono::milliseconds d) {
    Action a;
    a.delay = d;
    return a;
  }
  static Action close_after() {
    Action a;
    a.close_after_response = true;
    return a;
  }
  static Action drop() {
    Action a;
    a.close_without_response = true;
    return a;
  }
};

class TestServer {
 public:
  // index: 0-based count of requests received so far, over all connections.
  using Script = std::function<Action(const Recorded&, int index)>;

  explicit TestServer(Script script, net::ssl::context* tls = nullptr)
      : script_(std::move(script)), tls_(tls), ioc_(std::make_unique<net::io_context>()) {
    net::ip::tcp::acceptor acceptor(*ioc_, {net::ip::make_address("127.0.0.1"), 0});
    port_ = acceptor.local_endpoint().port();
    net::co_spawn(*ioc_, accept_loop(std::move(acceptor)), net::detached);
    thread_ = std::thread([this] { ioc_->run(); });
  }

  ~TestServer() {
    ioc_->stop();
    thread_.join();
    ioc_.reset();  // destroys suspended sessions while the members they use still exist
  }

  std::string url(const std::string& path = "/", const std::string& host = "127.0.0.1") const {
    return std::string(tls_ ? "https://" : "http://") + host + ":" + std::to_string(port_) + path;
  }
  unsigned short port() const { return port_; }
  int accepts() const { return accepts_; }
  int max_active() const { return max_active_; }
  std::vector<Recorded> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  static constexpr auto kTuple = net::as_tuple(net::use_awaitable);

  net::awaitable<void> accept_loop(net::ip::tcp::acceptor acceptor) {
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(kTuple);
      if (ec) co_return;
      const int id = accepts_++;
      net::co_spawn(acceptor.get_executor(), serve(std::move(sock), id), net::detached);
    }
  }

  net::awaitable<void> serve(net::ip::tcp::socket sock, int id) {
    if (!tls_) {
      co_await session(sock, id, "");
      co_return;
    }
    net::ssl::stream<net::ip::tcp::socket> s(std::move(sock), *tls_);
    auto [ec] = co_await s.async_handshake(net::ssl::stream_base::server, kTuple);
    if (ec) co_return;  // e.g. the client refused our certificate
    const char* sni = SSL_get_servername(s.native_handle(), TLSEXT_NAMETYPE_host_name);
    co_await session(s, id, sni ? sni : "");
  }

  template <class Stream>
  net::awaitable<void> session(Stream& s, int id, std::string sni) {
    boost::beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      auto [ec, n] = co_await http::async_read(s, buf, req, kTuple);
      if (ec) co_return;
      Recorded r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      r.body = req.body();
      r.connection = id;
      r.sni = sni;
      r.at = std::chrono::steady_clock::now();
      int index = 0;
      {
        std::lock_guard lock(mu_);
        index = static_cast<int>(requests_.size());
        requests_.push_back(r);
      }
      const Action a = script_(r, index);
      const int now_active = ++active_;
      for (int m = max_active_;
           now_active > m && !max_active_.compare_exchange_weak(m, now_active);) {
      }
      if (a.delay.count() > 0) {
        net::steady_timer t(s.get_executor(), a.delay);
        co_await t.async_wait(kTuple);
      }
      --active_;
      if (a.close_without_response) co_return;
      http::response<http::string_body> res{static_cast<http::status>(a.status), 11};
      res.set(http::field::content_type, a.content_type);
      if (!a.retry_after.empty()) res.set(http::field::retry_after, a.retry_after);
      if (a.body) {
        res.body() = *a.body;
      } else if (a.status != 204 && a.status != 304) {
        res.body() = "answer " + std::to_string(a.status);
      }
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(s, res, kTuple);
      if (wec || a.close_after_response || !req.keep_alive()) co_return;
    }
  }

  Script script_;
  net::ssl::context* tls_;
  std::unique_ptr<net::io_context> ioc_;
  std::thread thread_;
  unsigned short port_ = 0;
  std::atomic<int> accepts_{0};
  std::atomic<int> active_{0};
  std::atomic<int> max_active_{0};
  mutable std::mutex mu_;
  std::vector<Recorded> requests_;
};

// A self-signed certificate for "localhost", made at test time; pem_path holds it for ca_file.
struct SelfSigned {
  SelfSigned() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost"},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      X509_add_ext(cert, ext, -1);
      X509_EXTENSION_free(ext);
    }
    X509_sign(cert, key, EVP_sha256());
    pem_path = (std::filesystem::temp_directory_path() /
                ("el-http-test-" + std::to_string(::getpid()) + ".pem"))
                   .string();
    FILE* f = std::fopen(pem_path.c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
    SSL_CTX_use_certificate(server_ctx.native_handle(), cert);
    SSL_CTX_use_PrivateKey(server_ctx.native_handle(), key);
  }
  ~SelfSigned() {
    std::filesystem::remove(pem_path);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  SelfSigned(const SelfSigned&) = delete;
  SelfSigned& operator=(const SelfSigned&) = delete;

  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  std::string pem_path;
  net::ssl::context server_ctx{net::ssl::context::tls_server};
};

}  // namespace el::testing
