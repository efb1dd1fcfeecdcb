// ApiServer over real loopback sockets: limits, keep-alive, garbage input, timeouts and stop().
#include "http/server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <optional>
#include <thread>

#include "fake_api.hpp"

namespace el::http {
namespace {

namespace bhttp = boost::beast::http;
using testing::FakeApi;
using RawResponse = bhttp::response<bhttp::string_body>;

// A blocking POSIX client with receive/send timeouts, so a misbehaving server fails the test
// instead of hanging it. Responses are parsed by feeding bytes to Beast's parser.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }

  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // One complete response, or nullopt on EOF, error or timeout first.
  std::optional<RawResponse> read_response() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.eager(true);
    for (;;) {
      if (!buf_.empty()) {
        boost::system::error_code ec;
        const auto used = parser.put(boost::asio::buffer(buf_), ec);
        buf_.erase(0, used);
        if (ec && ec != bhttp::error::need_more) return std::nullopt;
        if (parser.is_done()) return parser.release();
        if (!ec && used > 0) continue;
      }
      char tmp[65536];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

  // True when the server closes the connection (EOF or reset) before the receive timeout;
  // whatever arrives first is discarded.
  bool wait_closed() {
    char tmp[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

std::string request(std::string_view method, std::string_view target, std::string_view body = {},
                    std::string_view extra_headers = {}) {
  std::string r;
  r += method;
  r += ' ';
  r += target;
  r += " HTTP/1.1\r\nHost: localhost\r\n";
  r += extra_headers;
  if (!body.empty() || method == "POST" || method == "PUT") {
    r +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  r += "\r\n";
  r += body;
  return r;
}

class ServerTest : public ::testing::Test {
 protected:
  void start(ServerOptions opts = {}) {
    opts.address = "127.0.0.1";
    opts.port = 0;
    server_.emplace(ioc_, std::move(opts), api_);
    server_->start();
    // Two threads, as in production, so strands and the stop() path are exercised for real.
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    work_.reset();
    for (auto& t : threads_) t.join();
  }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      ioc_.get_executor()};
  FakeApi api_;
  std::optional<ApiServer> server_;
  std::vector<std::thread> threads_;
};

TEST_F(ServerTest, BindsAnEphemeralPort) {
  start();
  EXPECT_NE(server_->port(), 0);
}

TEST_F(ServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  start();
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send_all(request("GET", "/healthz")));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->result_int(), 200);
  EXPECT_TRUE(r1->keep_alive());
  ASSERT_TRUE(c.send_all(request("GET", "/v1/mailboxes/mb1")));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->result_int(), 200);
  EXPECT_EQ(api_.recorded().id, "mb1");
  // A 204 has no Content-Length; the connection must still be reusable after it.
  api_.answer(service::Outcome{});
  ASSERT_TRUE(c.send_all(request("DELETE", "/v1/mailboxes/mb1")));
  auto r3 = c.read_response();
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->result_int(), 204);
  EXPECT_TRUE(r3->keep_alive());
  ASSERT_TRUE(c.send_all(request("GET", "/readyz")));
  auto r4 = c.read_response();
  ASSERT_TRUE(r4);
  EXPECT_EQ(r4->result_int(), 200);
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  RawClient c(server_->port());
  ASSERT_TRUE(c.send_all(request("GET", "/healthz") + request("GET", "/nope")));
  auto r1 = c.read_response();
  auto r2 = c.read_response();
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->result_int(), 200);
  EXPECT_EQ(r2->result_int(), 404);
}

TEST_F(ServerTest, ConnectionCloseIsHonoured) {
  start();
  RawClient c(server_->port());
  ASSERT_TRUE(c.send_all(request("GET", "/healthz", {}, "Connection: close\r\n")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->keep_alive());
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, BodyOverLimitIs413AndCloses) {
  start();  // settings bodies: 1 MiB
  RawClient c(server_->port());
  const std::string body(1024 * 1024 + 1, 'x');
  ASSERT_TRUE(c.send_all(request("POST", "/v1/mailboxes", body)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
  EXPECT_NE(r->body().find("payload_too_large"), std::string::npos);
  EXPECT_FALSE(r->keep_alive());
  EXPECT_TRUE(c.wait_closed());
  EXPECT_TRUE(api_.calls().empty());
}

TEST_F(ServerTest, DeclaredOversizeBodyIsRefusedBeforeItIsSent) {
  start();
  RawClient c(server_->port());
  ASSERT_TRUE(
      c.send_all("POST /v1/mailboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Expect: 100-continue\r\nContent-Length: 5000000\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
}

TEST_F(ServerTest, SendRouteTakesLargeBodiesUpToItsLimit) {
  start();
  {
    // 5 MB of attachments is fine for sending (the fake API answers).
    RawClient c(server_->port());
    const std::string body(5 * 1024 * 1024, ' ');
    ASSERT_TRUE(c.send_all(request("POST", "/v1/mailboxes/mb1/send", body)));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_NE(r->result_int(), 413);
  }
  RawClient c(server_->port());
  ASSERT_TRUE(c.send_all(
      "POST /v1/mailboxes/mb1/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: 50000000\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
}

TEST_F(ServerTest, ChunkedBodyOverLimitIs413) {
  ServerOptions opts;
  opts.max_settings_body = 100;
  start(opts);
  RawClient c(server_->port());
  std::string chunk(80, 'x');
  ASSERT_TRUE(
      c.send_all("POST /v1/mailboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n50\r\n" +
                 chunk + "\r\n50\r\n" + chunk + "\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 413);
}

TEST_F(ServerTest, ExpectContinueGetsInterimResponse) {
  start();
  RawClient c(server_->port());
  const std::string body = R"({"email":"a@b","imap":{"host":"h","username":"u","password":"p"}})";
  ASSERT_TRUE(
      c.send_all("POST /v1/mailboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Expect: 100-continue\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n"));
  auto interim = c.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->result_int(), 100);
  ASSERT_TRUE(c.send_all(body));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 201);
  EXPECT_EQ((*r)[bhttp::field::location], "/v1/mailboxes/mb1");
}

TEST_F(ServerTest, GarbageClosesTheConnectionAndOthersAreServed) {
  start();
  {
    // The start of a TLS ClientHello, NULs included: what a client speaking https sends.
    static constexpr char kGarbage[] =
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
    RawClient bad(server_->port());
    ASSERT_TRUE(bad.send_all(std::string_view(kGarbage, sizeof kGarbage - 1)));
    EXPECT_TRUE(bad.wait_closed());
  }
  {
    RawClient bad(server_->port());
    ASSERT_TRUE(bad.send_all("GET / HTTP/1.1\r\nBad Header\r\n\r\n"));
    auto r = bad.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->result_int(), 400);
    EXPECT_TRUE(bad.wait_closed());
  }
  RawClient good(server_->port());
  ASSERT_TRUE(good.send_all(request("GET", "/healthz")));
  auto r = good.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 200);
}

TEST_F(ServerTest, OversizedHeaderIs431) {
  start();
  RawClient c(server_->port());
  ASSERT_TRUE(c.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') +
                         "\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 431);
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, SilentConnectionTimesOut) {
  ServerOptions opts;
  opts.read_timeout = std::chrono::milliseconds(200);
  start(opts);
  RawClient c(server_->port());
  ASSERT_TRUE(c.connected());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.wait_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

TEST_F(ServerTest, StopClosesListenerAndIdleConnections) {
  start();
  const auto port = server_->port();
  RawClient c(port);
  ASSERT_TRUE(c.send_all(request("GET", "/healthz")));
  ASSERT_TRUE(c.read_response());
  server_->stop();
  EXPECT_TRUE(c.wait_closed());
  // The listener is gone: a new connection is refused (allow the post to the strand to run).
  bool refused = false;
  for (int i = 0; i < 50 && !refused; ++i) {
    RawClient late(port);
    refused = !late.connected();
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(refused);
}

TEST_F(ServerTest, BindFailureThrows) {
  start();
  ServerOptions opts;
  opts.address = "127.0.0.1";
  opts.port = server_->port();
  ApiServer second(ioc_, opts, api_);
  EXPECT_THROW(second.start(), boost::system::system_error);
}

}  // namespace
}  // namespace el::http
