// OAuth token tests against a real HTTP(S) server on 127.0.0.1: the refresh grant's form and
// answers, the application's refresh_url, deadlines, TLS verification and secret hygiene.
#include "oauth/token.hpp"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <exception>
#include <map>
#include <optional>

#include "core/types.hpp"
#include "el/version.hpp"
#include "support/http_test_server.hpp"

namespace el::oauth {
namespace {

using namespace std::chrono_literals;
using el::testing::Action;
using el::testing::Recorded;
using el::testing::SelfSigned;
using el::testing::TestServer;
using SysClock = std::chrono::system_clock;
using Steady = std::chrono::steady_clock;

// Runs make(executor)'s awaitable on a private io_context; rethrows what it threw.
template <class F>
auto run(F make) {
  net::io_context ioc;
  using T = typename decltype(make(ioc.get_executor()))::value_type;
  std::optional<T> result;
  std::exception_ptr error;
  net::co_spawn(ioc, make(ioc.get_executor()), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) result = std::move(v);
  });
  ioc.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

Token do_refresh(const RefreshGrant& g, const HttpOptions& o = {}) {
  return run([&](net::any_io_executor ex) { return refresh(ex, g, o); });
}

Token do_ask(const std::string& url, const core::Secret& secret, const HttpOptions& o = {}) {
  return run([&](net::any_io_executor ex) {
    return ask_application(ex, url, "mb-1", "user@example.com", secret, o);
  });
}

HttpResponse do_http(const std::string& method, const std::string& url,
                     const std::vector<std::pair<std::string, std::string>>& headers,
                     std::string body, const HttpOptions& o = {}) {
  return run([&](net::any_io_executor ex) {
    return http_request(ex, method, url, headers, std::move(body), o);
  });
}

template <class F>
RefreshError expect_refresh_error(F f) {
  try {
    f();
  } catch (const RefreshError& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a RefreshError: " << e.what();
    return RefreshError(RefreshErrorKind::refused, "wrong exception");
  }
  ADD_FAILURE() << "no exception";
  return RefreshError(RefreshErrorKind::refused, "no exception");
}

RefreshError refresh_error(const RefreshGrant& g, const HttpOptions& o = {}) {
  return expect_refresh_error([&] { do_refresh(g, o); });
}

std::string http_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an HttpError: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no HttpError";
  return {};
}

// The receiving side of application/x-www-form-urlencoded.
std::map<std::string, std::string> decode_form(const std::string& body) {
  auto decode = [](std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        out.push_back(' ');
      } else if (s[i] == '%' && i + 2 < s.size()) {
        out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
      } else {
        out.push_back(s[i]);
      }
    }
    return out;
  };
  std::map<std::string, std::string> fields;
  std::size_t start = 0;
  while (start <= body.size()) {
    auto end = body.find('&', start);
    if (end == std::string::npos) end = body.size();
    const std::string_view pair(body.data() + start, end - start);
    const auto eq = pair.find('=');
    EXPECT_NE(eq, std::string_view::npos) << pair;
    EXPECT_FALSE(fields.count(decode(pair.substr(0, eq)))) << "duplicate field";
    fields[decode(pair.substr(0, eq))] = decode(pair.substr(eq + 1));
    start = end + 1;
  }
  return fields;
}

// Independent of the module: EVP_MAC instead of the one-shot HMAC().
std::string reference_hmac_hex(std::string_view key, std::string_view data) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  unsigned char out[64];
  size_t len = 0;
  EXPECT_EQ(
      EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params), 1);
  EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  EVP_MAC_final(ctx, out, &len, sizeof out);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  std::string hex;
  char b[3];
  for (size_t i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", out[i]);
    hex += b;
  }
  return hex;
}

TestServer::Script always(unsigned status, std::string body = {},
                          std::string content_type = "application/json") {
  return [=](const Recorded&, int) { return Action::with_body(status, body, content_type); };
}

// Secrets full of characters that form encoding must escape.
const std::string kClientSecret = "cl!ent s3cr3t&x=y+z%";
const std::string kRefreshToken = "1//0gRT-secret+/=&%25 end";

RefreshGrant grant(const std::string& url, bool with_secret = true) {
  RefreshGrant g;
  g.token_url = url;
  g.client_id = "1234.apps.example.com";
  if (with_secret) g.client_secret = core::Secret(kClientSecret);
  g.refresh_token = core::Secret(kRefreshToken);
  g.scope = "https://mail.google.com/ offline_access";
  return g;
}

// Unused ports: bound, then closed, so connecting is refused.
unsigned short closed_port() {
  net::io_context ioc;
  net::ip::tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// ---------------------------------------------------------------------------------------------
// refresh()

TEST(Refresh, SendsFormAndParsesToken) {
  TestServer server(always(
      200,
      R"({"access_token":"ya29.new","token_type":"Bearer","expires_in":3599,"refresh_token":"rt-rotated"})"));
  const auto before = SysClock::now();
  const Token t = do_refresh(grant(server.url("/o/oauth2/token?tenant=a%20b")));
  const auto after = SysClock::now();

  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& r = reqs[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/o/oauth2/token?tenant=a%20b");
  EXPECT_EQ(r.header("content-type"), "application/x-www-form-urlencoded");
  EXPECT_EQ(r.header("accept"), "application/json");
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_EQ(r.header("host"), "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  EXPECT_EQ(r.header("user-agent"), std::string("email-listener/") + el::kVersion);
  const std::map<std::string, std::string> expected{
      {"grant_type", "refresh_token"},
      {"refresh_token", kRefreshToken},
      {"client_id", "1234.apps.example.com"},
      {"client_secret", kClientSecret},
      {"scope", "https://mail.google.com/ offline_access"}};
  EXPECT_EQ(decode_form(r.body), expected);
  EXPECT_EQ(r.body.find(' '), std::string::npos);  // escaped, not raw

  EXPECT_EQ(t.access_token.reveal(), "ya29.new");
  EXPECT_EQ(t.refresh_token.reveal(), "rt-rotated");
  ASSERT_TRUE(t.expires_at.has_value());
  EXPECT_GE(*t.expires_at, before + 3599s - 1s);
  EXPECT_LE(*t.expires_at, after + 3599s);
}

TEST(Refresh, PublicClientSendsNoSecretAndNoEmptyScope) {
  TestServer server(always(200, R"({"access_token":"at","token_type":"bearer"})"));
  auto g = grant(server.url("/token"), /*with_secret=*/false);
  g.scope.clear();
  const Token t = do_refresh(g);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const std::map<std::string, std::string> expected{{"grant_type", "refresh_token"},
                                                    {"refresh_token", kRefreshToken},
                                                    {"client_id", "1234.apps.example.com"}};
  EXPECT_EQ(decode_form(reqs[0].body), expected);
  EXPECT_EQ(t.access_token.reveal(), "at");
  EXPECT_TRUE(t.refresh_token.empty());  // not rotated: the caller keeps its own
  EXPECT_FALSE(t.expires_at.has_value());
}

TEST(Refresh, ExpiresInAsString) {
  TestServer server(always(200, R"({"access_token":"at","expires_in":"3600"})"));
  const auto before = SysClock::now();
  const Token t = do_refresh(grant(server.url("/token")));
  ASSERT_TRUE(t.expires_at.has_value());
  EXPECT_GE(*t.expires_at, before + 3600s - 1s);
  EXPECT_LE(*t.expires_at, SysClock::now() + 3600s);
}

TEST(Refresh, InvalidGrantIsRefused) {
  TestServer server(
      always(400, R"({"error":"invalid_grant","error_description":"Token has been expired."})"));
  const auto e = refresh_error(grant(server.url("/token")));
  EXPECT_EQ(e.kind(), RefreshErrorKind::refused);
  EXPECT_EQ(e.oauth_error(), "invalid_grant");
  EXPECT_NE(std::string(e.what()).find("Token has been expired."), std::string::npos) << e.what();
}

TEST(Refresh, UnauthorizedClientIsRefused) {
  TestServer server(always(401, R"({"error":"invalid_client"})"));
  const auto e = refresh_error(grant(server.url("/token")));
  EXPECT_EQ(e.kind(), RefreshErrorKind::refused);
  EXPECT_EQ(e.oauth_error(), "invalid_client");
}

TEST(Refresh, BadRequestErrorsAreRefusals) {
  for (const char* code : {"invalid_request", "unsupported_grant_type", "invalid_scope"}) {
    TestServer server(always(400, std::string(R"({"error":")") + code + "\"}"));
    const auto e = refresh_error(grant(server.url("/token")));
    EXPECT_EQ(e.kind(), RefreshErrorKind::refused) << code;
    EXPECT_EQ(e.oauth_error(), code);
  }
}

TEST(Refresh, BadRequestWithoutJsonIsRefused) {
  TestServer server(always(400, "<html>Bad Request</html>", "text/html"));
  const auto e = refresh_error(grant(server.url("/token")));
  EXPECT_EQ(e.kind(), RefreshErrorKind::refused);
  EXPECT_EQ(e.oauth_error(), "");
}

TEST(Refresh, TransientOauthErrorIsUnavailable) {
  TestServer server(always(400, R"({"error":"temporarily_unavailable"})"));
  EXPECT_EQ(refresh_error(grant(server.url("/token"))).kind(), RefreshErrorKind::unavailable);
}

TEST(Refresh, ErrorObjectWith200IsRefused) {
  // GitHub-style: 200 with an RFC 6749 error object.
  TestServer server(always(200, R"({"error":"bad_refresh_token"})"));
  const auto e = refresh_error(grant(server.url("/token")));
  EXPECT_EQ(e.kind(), RefreshErrorKind::refused);
  EXPECT_EQ(e.oauth_error(), "bad_refresh_token");
}

TEST(Refresh, ServerErrorsAndOtherStatusesAreUnavailable) {
  for (unsigned status : {500u, 502u, 503u, 429u, 302u, 403u, 404u}) {
    TestServer server(always(status, R"({"error":"invalid_grant"})"));
    const auto e = refresh_error(grant(server.url("/token")));
    EXPECT_EQ(e.kind(), RefreshErrorKind::unavailable) << status;
    EXPECT_NE(std::string(e.what()).find(std::to_string(status)), std::string::npos) << e.what();
  }
}

TEST(Refresh, MalformedSuccessIsUnavailable) {
  for (const char* body :
       {R"({"token_type":"Bearer","expires_in":3600})", "not json", R"(["access_token"])",
        R"({"access_token":42})", R"({"access_token":"at","expires_in":"soon"})", ""}) {
    TestServer server(always(200, body));
    EXPECT_EQ(refresh_error(grant(server.url("/token"))).kind(), RefreshErrorKind::unavailable)
        << body;
  }
}

TEST(Refresh, HangingServerIsUnavailableWithinTimeout) {
  TestServer server([](const Recorded&, int) { return Action::hang(10s); });
  HttpOptions o;
  o.timeout = 300ms;
  const auto t0 = Steady::now();
  const auto e = refresh_error(grant(server.url("/token")), o);
  const auto took = Steady::now() - t0;
  EXPECT_EQ(e.kind(), RefreshErrorKind::unavailable);
  EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(Refresh, ConnectionRefusedIsUnavailable) {
  const auto port = closed_port();
  const auto e = refresh_error(grant("http://127.0.0.1:" + std::to_string(port) + "/token"));
  EXPECT_EQ(e.kind(), RefreshErrorKind::unavailable);
}

TEST(Refresh, DroppedConnectionIsUnavailable) {
  TestServer server([](const Recorded&, int) { return Action::drop(); });
  EXPECT_EQ(refresh_error(grant(server.url("/token"))).kind(), RefreshErrorKind::unavailable);
}

TEST(Refresh, BadUrlIsUnavailable) {
  EXPECT_EQ(refresh_error(grant("ftp://example.com/token")).kind(), RefreshErrorKind::unavailable);
  EXPECT_EQ(refresh_error(grant("not a url")).kind(), RefreshErrorKind::unavailable);
}

// A server that echoes what it received, in every way it can answer: the secrets must not come
// back in an exception message.
TEST(Refresh, NoSecretInAnyMessage) {
  auto echo_json = [](const Recorded& r) {
    boost::json::object o;
    o["error"] = r.body;
    o["error_description"] = "got " + r.body;
    return boost::json::serialize(o);
  };
  std::vector<TestServer::Script> scripts = {
      [&](const Recorded& r, int) { return Action::with_body(400, echo_json(r)); },
      [&](const Recorded& r, int) { return Action::with_body(401, echo_json(r)); },
      [&](const Recorded& r, int) { return Action::with_body(200, echo_json(r)); },
      [&](const Recorded& r, int) { return Action::with_body(500, r.body, "text/plain"); },
      [&](const Recorded& r, int) { return Action::with_body(400, r.body, "text/plain"); },
      [&](const Recorded& r, int) { return Action::with_body(200, r.body, "text/plain"); },
      [&](const Recorded&, int) { return Action::hang(5s); },
  };
  HttpOptions o;
  o.timeout = 200ms;
  std::vector<std::string> secrets = {kClientSecret, kRefreshToken, "s3cr3t", "0gRT-secret"};
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    TestServer server(scripts[i]);
    const auto e = refresh_error(grant(server.url("/token")), o);
    for (const auto& s : secrets) {
      EXPECT_EQ(std::string(e.what()).find(s), std::string::npos) << i << ": " << e.what();
      EXPECT_EQ(e.oauth_error().find(s), std::string::npos) << i << ": " << e.oauth_error();
    }
  }
  // Credentials in the URL itself stay out of the message too.
  const auto port = std::to_string(closed_port());
  const auto e = refresh_error(grant("http://user:pw-s3cr3t@127.0.0.1:" + port + "/t?key=s3cr3t"));
  EXPECT_EQ(std::string(e.what()).find("s3cr3t"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------------------------------------
// ask_application()

TEST(AskApplication, SignedRequestAndExpiresAt) {
  TestServer server(
      always(200, R"({"access_token":"app-token","expires_at":"2030-01-02T03:04:05Z"})"));
  const Token t = do_ask(server.url("/tokens"), core::Secret("sign-k3y"));
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& r = reqs[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/tokens");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(boost::json::parse(r.body),
            boost::json::parse(R"({"mailbox_id":"mb-1","email":"user@example.com"})"));
  // What the application does: HMAC the raw body it got with the shared secret.
  EXPECT_EQ(r.header("x-email-listener-signature"),
            "sha256=" + reference_hmac_hex("sign-k3y", r.body));
  EXPECT_EQ(t.access_token.reveal(), "app-token");
  EXPECT_EQ(t.expires_at, core::parse_rfc3339("2030-01-02T03:04:05Z"));
  EXPECT_TRUE(t.refresh_token.empty());
}

TEST(AskApplication, ExpiresInAndNoSignatureWithoutSecret) {
  TestServer server(always(200, R"({"access_token":"app-token","expires_in":600})"));
  const auto before = SysClock::now();
  const Token t = do_ask(server.url("/tokens"), core::Secret());
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_FALSE(reqs[0].has("x-email-listener-signature"));
  EXPECT_EQ(t.access_token.reveal(), "app-token");
  ASSERT_TRUE(t.expires_at.has_value());
  EXPECT_GE(*t.expires_at, before + 600s - 1s);
  EXPECT_LE(*t.expires_at, SysClock::now() + 600s);
}

TEST(AskApplication, ClientErrorsAreRefused) {
  for (unsigned status : {400u, 401u, 403u, 404u}) {
    TestServer server(always(status, R"({"error":"mailbox_disabled"})"));
    const auto e = expect_refresh_error([&] { do_ask(server.url("/token"), core::Secret("k")); });
    EXPECT_EQ(e.kind(), RefreshErrorKind::refused) << status;
    EXPECT_EQ(e.oauth_error(), "mailbox_disabled");
  }
}

TEST(AskApplication, OtherAnswersAreUnavailable) {
  struct Case {
    unsigned status;
    const char* body;
  };
  for (const auto& c : {Case{500, "{}"}, Case{503, ""}, Case{429, ""}, Case{408, ""}, Case{204, ""},
                        Case{200, "nope"}, Case{200, R"({"expires_in":60})"},
                        Case{200, R"({"access_token":"t","expires_at":"tomorrow"})"},
                        Case{200, R"({"access_token":"t","expires_at":1700000000})"}}) {
    TestServer server(always(c.status, c.body));
    const auto e = expect_refresh_error([&] { do_ask(server.url("/token"), core::Secret("k")); });
    EXPECT_EQ(e.kind(), RefreshErrorKind::unavailable) << c.status << " " << c.body;
  }
}

TEST(AskApplication, UnreachableIsUnavailable) {
  const auto port = std::to_string(closed_port());
  const auto e =
      expect_refresh_error([&] { do_ask("http://127.0.0.1:" + port + "/t", core::Secret("k")); });
  EXPECT_EQ(e.kind(), RefreshErrorKind::unavailable);
}

// ---------------------------------------------------------------------------------------------
// http_request()

TEST(HttpRequest, HeadersAndStatusIsReturned) {
  TestServer server(always(404, "missing", "text/plain; charset=utf-8"));
  const auto res =
      do_http("GET", server.url("/x?y=1"), {{"X-Custom", "v1"}, {"Accept", "*/*"}}, "");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(res.body, "missing");
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].target, "/x?y=1");
  EXPECT_EQ(reqs[0].header("x-custom"), "v1");
  EXPECT_EQ(reqs[0].header("accept"), "*/*");
  EXPECT_EQ(reqs[0].header("connection"), "close");
  EXPECT_EQ(reqs[0].header("host"), "127.0.0.1:" + std::to_string(server.port()));
}

TEST(HttpRequest, PostBodyAndDefaultPath) {
  TestServer server(always(200, "ok"));
  const auto res = do_http("POST", server.url(""), {{"Content-Type", "text/plain"}}, "hello");
  EXPECT_EQ(res.status, 200);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/");
  EXPECT_EQ(reqs[0].body, "hello");
  EXPECT_EQ(reqs[0].header("content-length"), "5");
}

TEST(HttpRequest, RejectsBadUrlsMethodsAndHeaders) {
  EXPECT_THROW(do_http("GET", "ftp://127.0.0.1/x", {}, ""), HttpError);
  EXPECT_THROW(do_http("GET", "no scheme", {}, ""), HttpError);
  EXPECT_THROW(do_http("GET", "http:///path", {}, ""), HttpError);
  EXPECT_THROW(do_http("FROB LE", "http://127.0.0.1/", {}, ""), HttpError);
  const auto msg = http_error([] {
    do_http("GET", "http://127.0.0.1/", {{"X", "a\r\nY: s3"}}, "");
  });
  EXPECT_EQ(msg.find("s3"), std::string::npos) << msg;
  EXPECT_THROW(do_http("GET", "http://127.0.0.1/", {{"Bad Name", "v"}}, ""), HttpError);
}

TEST(HttpRequest, ResponseOverLimitFails) {
  TestServer server(always(200, std::string(5000, 'x'), "text/plain"));
  HttpOptions o;
  o.max_response_bytes = 4096;
  EXPECT_THROW(do_http("GET", server.url("/token"), {}, "", o), HttpError);
  o.max_response_bytes = 5000;
  EXPECT_EQ(do_http("GET", server.url("/token"), {}, "", o).body.size(), 5000u);
}

TEST(HttpRequest, TimeoutCoversTheWholeExchange) {
  TestServer server([](const Recorded&, int) { return Action::hang(10s); });
  HttpOptions o;
  o.timeout = 200ms;
  const auto t0 = Steady::now();
  const auto msg = http_error([&] { do_http("GET", server.url("/token"), {}, "", o); });
  EXPECT_NE(msg.find("timed out"), std::string::npos) << msg;
  EXPECT_LT(Steady::now() - t0, 2s);
}

TEST(HttpRequest, CallerCancellationEndsTheRequest) {
  TestServer server([](const Recorded&, int) { return Action::hang(10s); });
  net::io_context ioc;
  net::cancellation_signal cancel;
  std::exception_ptr error;
  bool finished = false;
  net::co_spawn(
      ioc, http_request(ioc.get_executor(), "GET", server.url("/token"), {}, "", HttpOptions{}),
      net::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, HttpResponse) {
        error = e;
        finished = true;
      }));
  net::steady_timer t(ioc, 100ms);
  t.async_wait([&](boost::system::error_code) { cancel.emit(net::cancellation_type::terminal); });
  const auto t0 = Steady::now();
  ioc.run();
  EXPECT_TRUE(finished);
  EXPECT_LT(Steady::now() - t0, 2s);
  EXPECT_TRUE(error);
}

// HTTPS with a self-signed certificate for "localhost".

TEST(HttpRequestTls, UntrustedCertificateFails) {
  SelfSigned cert;
  TestServer server(always(200, "ok"), &cert.server_ctx);
  const auto msg = http_error([&] { do_http("GET", server.url("/", "localhost"), {}, ""); });
  EXPECT_FALSE(msg.empty());
  EXPECT_TRUE(server.requests().empty());
}

TEST(HttpRequestTls, TrustedViaCaFileWithSni) {
  SelfSigned cert;
  TestServer server(always(200, "ok"), &cert.server_ctx);
  HttpOptions o;
  o.ca_file = cert.pem_path;
  const auto res = do_http("POST", server.url("/t", "localhost"), {}, "a=b", o);
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, "ok");
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].sni, "localhost");
  EXPECT_EQ(reqs[0].body, "a=b");
}

TEST(HttpRequestTls, CaFileReplacedInPlaceIsReloaded) {
  HttpOptions o;
  for (int round = 0; round < 2; ++round) {
    SelfSigned cert;  // a new key and certificate at the same path each round
    o.ca_file = cert.pem_path;
    TestServer server(always(200, "ok"), &cert.server_ctx);
    EXPECT_EQ(do_http("GET", server.url("/", "localhost"), {}, "", o).status, 200) << round;
  }
}

TEST(HttpRequestTls, HostNameMismatchFails) {
  SelfSigned cert;  // valid for "localhost" only
  TestServer server(always(200, "ok"), &cert.server_ctx);
  HttpOptions o;
  o.ca_file = cert.pem_path;
  EXPECT_THROW(do_http("GET", server.url("/", "127.0.0.1"), {}, "", o), HttpError);
  EXPECT_TRUE(server.requests().empty());
}

TEST(HttpRequestTls, InsecureSkipsVerification) {
  SelfSigned cert;
  TestServer server(always(200, "ok"), &cert.server_ctx);
  HttpOptions o;
  o.tls_insecure = true;
  EXPECT_EQ(do_http("GET", server.url("/", "127.0.0.1"), {}, "", o).status, 200);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(HttpRequestTls, BadCaFileFails) {
  HttpOptions o;
  o.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(do_http("GET", "https://localhost:1/", {}, "", o), HttpError);
}

TEST(RefreshTls, OverHttpsWithCaFile) {
  SelfSigned cert;
  TestServer server(always(200, R"({"access_token":"tls-at"})"), &cert.server_ctx);
  HttpOptions o;
  o.ca_file = cert.pem_path;
  EXPECT_EQ(do_refresh(grant(server.url("/token", "localhost")), o).access_token.reveal(),
            "tls-at");
  const auto e = refresh_error(grant(server.url("/token", "localhost")));  // no ca_file
  EXPECT_EQ(e.kind(), RefreshErrorKind::unavailable);
}

}  // namespace
}  // namespace el::oauth
