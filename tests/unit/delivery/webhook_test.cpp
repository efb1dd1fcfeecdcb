// Webhook sink tests against a real HTTP(S) server on 127.0.0.1: signing, headers, retries,
// time bounds, the keep-alive pool, stop() and TLS verification.
#include "delivery/webhook.hpp"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <optional>
#include <thread>

#include "core/event.hpp"
#include "core/metrics.hpp"
#include "el/version.hpp"
#include "support/http_test_server.hpp"

namespace el::delivery {
namespace {

using namespace std::chrono_literals;
using el::testing::Action;
using el::testing::Recorded;
using el::testing::SelfSigned;
using el::testing::TestServer;
using Clock = std::chrono::steady_clock;

// Independent of sign(): EVP_MAC instead of the one-shot HMAC().
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

core::Event make_event(std::string id = "0123456789abcdef0123456789abcdef") {
  core::Event e;
  e.id = std::move(id);
  e.type = "message.new";
  e.mailbox_id = "mb-42";
  e.created_at = "2024-02-29T13:45:07.250Z";
  e.data["subject"] = "Caf\xc3\xa9 \"quoted\" \\ <tag>";
  e.data["uid"] = 42;
  return e;
}

struct Counters {
  std::uint64_t delivered, failed, dropped, latency_count;
  static Counters now() {
    auto& m = metrics::global();
    return {m.events_delivered.load(), m.events_failed.load(), m.events_dropped.load(),
            m.webhook_latency.count.load()};
  }
};

WebhookOptions fast_options() {
  WebhookOptions o;
  o.request_timeout = 1000ms;
  o.max_attempts = 5;
  o.max_total = 5000ms;
  o.backoff_initial = 5ms;
  o.backoff_max = 20ms;
  return o;
}

// Runs deliveries on a private io_context (one thread unless asked) and returns their results.
class Client {
 public:
  explicit Client(WebhookOptions opts)
      : sink_(std::make_unique<WebhookSink>(ioc_.get_executor(), opts)) {}

  WebhookSink& sink() { return *sink_; }
  net::io_context& ioc() { return ioc_; }
  void destroy_sink() { sink_.reset(); }

  void spawn(const core::Event& e, const core::WebhookTarget& t, std::optional<bool>& result) {
    net::co_spawn(ioc_, sink_->deliver(e, t), [&result](std::exception_ptr ep, bool ok) {
      if (ep) std::rethrow_exception(ep);
      result = ok;
    });
  }

  void run(int threads = 1) {
    ioc_.restart();
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) extra.emplace_back([this] { ioc_.run(); });
    ioc_.run();
    for (auto& t : extra) t.join();
  }

  bool deliver(const core::Event& e, const core::WebhookTarget& t) {
    std::optional<bool> result;
    spawn(e, t, result);
    run();
    EXPECT_TRUE(result.has_value());
    return result.value_or(false);
  }

  // Calls f after d on the client's io_context (to stop or destroy the sink mid-delivery).
  void after(std::chrono::milliseconds d, std::function<void()> f) {
    auto t = std::make_shared<net::steady_timer>(ioc_, d);
    t->async_wait([t, f = std::move(f)](boost::system::error_code) { f(); });
  }

 private:
  net::io_context ioc_;
  std::unique_ptr<WebhookSink> sink_;
};

TestServer::Script always(unsigned status) {
  return [status](const Recorded&, int) { return Action::reply(status); };
}

// ---------------------------------------------------------------------------------------------

TEST(Sign, KnownAnswerAgainstIndependentHmac) {
  const std::string body = core::serialize(make_event());
  EXPECT_EQ(sign(body, "s3cr3t"), "sha256=" + reference_hmac_hex("s3cr3t", body));
  EXPECT_EQ(sign("", ""), "sha256=" + reference_hmac_hex("", ""));
  // HMAC-SHA256 with an empty key and message, a well-known value.
  EXPECT_EQ(sign("", ""),
            "sha256=b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_NE(sign(body, "a"), sign(body, "b"));
}

TEST(Sign, Rfc4231TestCases) {
  // Test case 1: key = 0x0b * 20, data = "Hi There".
  EXPECT_EQ(sign("Hi There", std::string(20, '\x0b')),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: key = "Jefe".
  EXPECT_EQ(sign("what do ya want for nothing?", "Jefe"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Webhook, HeadersBodyAndSignature) {
  TestServer server(always(200));
  Client client(fast_options());
  const auto before = Counters::now();
  const auto event = make_event();
  const core::WebhookTarget target{server.url("/hooks/email?tenant=7&x=a%20b"),
                                   core::Secret("k3y")};
  ASSERT_TRUE(client.deliver(event, target));

  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& r = reqs[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/hooks/email?tenant=7&x=a%20b");
  EXPECT_EQ(r.body, core::serialize(event));
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("user-agent"), std::string("email-listener/") + el::kVersion);
  EXPECT_EQ(r.header("host"), target.url.substr(7, target.url.find('/', 7) - 7));
  EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  EXPECT_EQ(r.header("x-email-listener-event-id"), event.id);
  EXPECT_EQ(r.header("x-email-listener-attempt"), "1");
  // What a receiver does: HMAC the raw body it got with the shared secret.
  EXPECT_EQ(r.header("x-email-listener-signature"), "sha256=" + reference_hmac_hex("k3y", r.body));

  const auto after = Counters::now();
  EXPECT_EQ(after.delivered - before.delivered, 1u);
  EXPECT_EQ(after.failed - before.failed, 0u);
  EXPECT_EQ(after.latency_count - before.latency_count, 1u);
}

TEST(Webhook, DefaultPathAndEmptySecret) {
  TestServer server(always(204));
  Client client(fast_options());
  const auto url = server.url("");
  ASSERT_TRUE(client.deliver(make_event(), {url, core::Secret()}));
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "/");
  EXPECT_EQ(reqs[0].header("x-email-listener-signature"),
            "sha256=" + reference_hmac_hex("", reqs[0].body));
}

TEST(Webhook, RetriesOn500ThenSucceeds) {
  TestServer server([](const Recorded&, int i) { return Action::reply(i < 2 ? 500u : 200u); });
  Client client(fast_options());
  const auto before = Counters::now();
  ASSERT_TRUE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(reqs[i].header("x-email-listener-attempt"), std::to_string(i + 1));
    EXPECT_EQ(reqs[i].header("x-email-listener-event-id"), make_event().id);
    EXPECT_EQ(reqs[i].header("x-email-listener-signature"),
              reqs[0].header("x-email-listener-signature"));
    EXPECT_EQ(reqs[i].body, reqs[0].body);
  }
  const auto after = Counters::now();
  EXPECT_EQ(after.delivered - before.delivered, 1u);
  EXPECT_EQ(after.failed - before.failed, 2u);
  EXPECT_EQ(after.dropped - before.dropped, 0u);
  EXPECT_EQ(after.latency_count - before.latency_count, 3u);
}

// A 4xx is retried like a 5xx: the checkpoint moves only when the application accepted the
// event, so an application that wants to skip one must answer 2xx (documented behaviour).
TEST(Webhook, FourXxIsRetriedToo) {
  TestServer server([](const Recorded&, int i) { return Action::reply(i == 0 ? 400u : 202u); });
  Client client(fast_options());
  ASSERT_TRUE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(Webhook, GivesUpAfterMaxAttempts) {
  TestServer server(always(500));
  auto opts = fast_options();
  opts.max_attempts = 3;
  Client client(opts);
  const auto before = Counters::now();
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  EXPECT_EQ(server.requests().size(), 3u);
  const auto after = Counters::now();
  EXPECT_EQ(after.delivered - before.delivered, 0u);
  EXPECT_EQ(after.failed - before.failed, 3u);
  EXPECT_EQ(after.dropped - before.dropped, 1u);
}

TEST(Webhook, MaxTotalBoundsTheWholeCall) {
  TestServer server(always(503));
  auto opts = fast_options();
  opts.max_attempts = 1000;
  opts.backoff_initial = 20ms;
  opts.backoff_max = 40ms;
  opts.max_total = 300ms;
  Client client(opts);
  const auto before = Counters::now();
  const auto t0 = Clock::now();
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  const auto elapsed = Clock::now() - t0;
  EXPECT_LT(elapsed, 600ms);
  EXPECT_GE(elapsed, 250ms);  // gives up when the next sleep would cross the bound
  EXPECT_GE(server.requests().size(), 3u);
  EXPECT_EQ(Counters::now().dropped - before.dropped, 1u);
}

TEST(Webhook, HangingServerTimesOut) {
  TestServer server([](const Recorded&, int) { return Action::hang(5000ms); });
  auto opts = fast_options();
  opts.request_timeout = 150ms;
  opts.max_attempts = 2;
  Client client(opts);
  const auto before = Counters::now();
  const auto t0 = Clock::now();
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  EXPECT_LT(Clock::now() - t0, 1000ms);
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_EQ(server.accepts(), 2);  // a timed-out connection is never reused
  const auto after = Counters::now();
  EXPECT_EQ(after.failed - before.failed, 2u);
  EXPECT_EQ(after.latency_count - before.latency_count, 0u);  // no response, no latency
}

TEST(Webhook, ConnectionRefusedIsAFailedAttempt) {
  std::string url;
  {
    TestServer gone(always(200));
    url = gone.url("/hook");
  }
  auto opts = fast_options();
  opts.max_attempts = 2;
  Client client(opts);
  const auto before = Counters::now();
  EXPECT_FALSE(client.deliver(make_event(), {url, core::Secret("k")}));
  EXPECT_EQ(Counters::now().failed - before.failed, 2u);
}

TEST(Webhook, BadUrlFailsWithoutAttempt) {
  Client client(fast_options());
  EXPECT_FALSE(client.deliver(make_event(), {"ftp://127.0.0.1/x", core::Secret("k")}));
  EXPECT_FALSE(client.deliver(make_event(), {"not a url", core::Secret("k")}));
}

TEST(Webhook, RetryAfterIsHonouredWithinBackoffMax) {
  TestServer server([](const Recorded&, int i) {
    return i == 0 ? Action::reply(429, "3600") : Action::reply(200);
  });
  auto opts = fast_options();
  opts.backoff_initial = 1ms;  // without Retry-After the first sleep would be at most 1 ms
  opts.backoff_max = 300ms;
  Client client(opts);
  ASSERT_TRUE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  const auto gap = reqs[1].at - reqs[0].at;
  EXPECT_GE(gap, 280ms);
  EXPECT_LT(gap, 1000ms);
}

TEST(Webhook, KeepAliveReusesOneConnection) {
  TestServer server(always(200));
  Client client(fast_options());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        client.deliver(make_event(std::to_string(i)), {server.url("/hook"), core::Secret("k")}));
  }
  EXPECT_EQ(server.requests().size(), 5u);
  EXPECT_EQ(server.accepts(), 1);
}

TEST(Webhook, ServerClosingIdleConnectionsLosesNothing) {
  TestServer server([](const Recorded&, int) { return Action::close_after(); });
  Client client(fast_options());
  const auto before = Counters::now();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        client.deliver(make_event(std::to_string(i)), {server.url("/hook"), core::Secret("k")}));
  }
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  for (const auto& r : reqs) EXPECT_EQ(r.header("x-email-listener-attempt"), "1");
  EXPECT_EQ(server.accepts(), 3);
  EXPECT_EQ(Counters::now().failed - before.failed, 0u);
}

// The server's idle timeout races our request: it reads the request on a kept-alive connection
// and closes without answering. The client retries at once on a fresh connection and the
// attempt is not counted.
TEST(Webhook, ReusedConnectionClosedBeforeResponseIsRetriedAtOnce) {
  TestServer server([](const Recorded& r, int) {
    // The second request on the first connection is dropped.
    static std::atomic<int> on_first{0};
    if (r.connection == 0 && on_first++ == 1) return Action::drop();
    return Action{};
  });
  auto opts = fast_options();
  opts.backoff_initial = 2000ms;  // a counted retry would be visible as a long pause
  opts.backoff_max = 2000ms;
  Client client(opts);
  const auto before = Counters::now();
  ASSERT_TRUE(client.deliver(make_event("a"), {server.url("/hook"), core::Secret("k")}));
  const auto t0 = Clock::now();
  ASSERT_TRUE(client.deliver(make_event("b"), {server.url("/hook"), core::Secret("k")}));
  EXPECT_LT(Clock::now() - t0, 500ms);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[1].connection, 0);
  EXPECT_EQ(reqs[2].connection, 1);
  EXPECT_EQ(reqs[2].header("x-email-listener-event-id"), "b");
  EXPECT_EQ(reqs[2].header("x-email-listener-attempt"), "1");
  EXPECT_EQ(server.accepts(), 2);
  EXPECT_EQ(Counters::now().failed - before.failed, 0u);
}

TEST(Webhook, StopEndsBackoffQuickly) {
  TestServer server([](const Recorded&, int) { return Action::reply(503, "30"); });
  auto opts = fast_options();
  opts.backoff_max = 60000ms;
  opts.max_total = 120000ms;
  Client client(opts);
  const auto before = Counters::now();
  client.after(200ms, [&] { client.sink().stop(); });
  const auto t0 = Clock::now();
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  EXPECT_LT(Clock::now() - t0, 1000ms);
  EXPECT_EQ(server.requests().size(), 1u);
  // After stop(): false at once, nothing sent.
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  EXPECT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(Counters::now().dropped - before.dropped, 0u);  // stopping is not giving up
}

TEST(Webhook, StopEndsInFlightRequest) {
  TestServer server([](const Recorded&, int) { return Action::hang(5000ms); });
  auto opts = fast_options();
  opts.request_timeout = 10000ms;
  Client client(opts);
  client.after(150ms, [&] { client.sink().stop(); });
  const auto t0 = Clock::now();
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
  EXPECT_LT(Clock::now() - t0, 1000ms);
}

// A caller cancelled by shutdown (a cancellation slot, as sessions get from the signal_set)
// ends its delivery like stop() would; the sink stays usable for others.
TEST(Webhook, CallerCancellationEndsDelivery) {
  TestServer server([](const Recorded&, int i) {
    return i == 0 ? Action::reply(503, "30") : Action::reply(200);
  });
  auto opts = fast_options();
  opts.backoff_max = 60000ms;
  opts.max_total = 120000ms;
  Client client(opts);
  net::cancellation_signal cancel;
  std::optional<bool> result;
  net::co_spawn(client.ioc(),
                client.sink().deliver(make_event(), {server.url("/hook"), core::Secret("k")}),
                net::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr ep, bool ok) {
                  if (ep) std::rethrow_exception(ep);
                  result = ok;
                }));
  client.after(150ms, [&] { cancel.emit(net::cancellation_type::terminal); });
  const auto t0 = Clock::now();
  client.run();
  EXPECT_LT(Clock::now() - t0, 1000ms);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(*result);
  EXPECT_TRUE(client.deliver(make_event(), {server.url("/hook"), core::Secret("k")}));
}

TEST(Webhook, DestroyingSinkMidDeliveryIsSafe) {
  TestServer server([](const Recorded&, int) { return Action::hang(5000ms); });
  Client client(fast_options());
  std::optional<bool> result;
  client.spawn(make_event(), {server.url("/hook"), core::Secret("k")}, result);
  client.after(100ms, [&] { client.destroy_sink(); });
  const auto t0 = Clock::now();
  client.run();
  EXPECT_LT(Clock::now() - t0, 1000ms);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(*result);
}

TEST(Webhook, ConcurrencyIsBoundedAcrossThreads) {
  TestServer server([](const Recorded&, int) { return Action::hang(40ms); });
  auto opts = fast_options();
  opts.max_concurrent = 2;
  Client client(opts);
  constexpr int kN = 8;
  std::vector<std::optional<bool>> results(kN);
  const core::WebhookTarget target{server.url("/hook"), core::Secret("k")};
  for (int i = 0; i < kN; ++i) client.spawn(make_event(std::to_string(i)), target, results[i]);
  client.run(2);
  for (const auto& r : results) EXPECT_EQ(r, std::optional<bool>(true));
  EXPECT_EQ(server.requests().size(), static_cast<size_t>(kN));
  EXPECT_LE(server.max_active(), 2);
  EXPECT_LE(server.accepts(), 2);  // the pool serves the waiters
}

// ---------------------------------------------------------------------------------------------
// HTTPS: a self-signed certificate for "localhost" made at test time (SelfSigned).

TEST(WebhookTls, TrustedViaCaFileSucceedsWithSni) {
  SelfSigned cert;
  TestServer server(always(200), &cert.server_ctx);
  auto opts = fast_options();
  opts.ca_file = cert.pem_path;
  Client client(opts);
  const core::WebhookTarget target{server.url("/hook", "localhost"), core::Secret("k")};
  ASSERT_TRUE(client.deliver(make_event("1"), target));
  ASSERT_TRUE(client.deliver(make_event("2"), target));
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].sni, "localhost");
  EXPECT_EQ(reqs[1].header("x-email-listener-event-id"), "2");
  EXPECT_EQ(server.accepts(), 1);  // TLS connections are kept alive too
}

TEST(WebhookTls, UntrustedCertificateFails) {
  SelfSigned cert;
  TestServer server(always(200), &cert.server_ctx);
  auto opts = fast_options();
  opts.max_attempts = 2;
  Client client(opts);
  const auto before = Counters::now();
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook", "localhost"), core::Secret("k")}));
  EXPECT_TRUE(server.requests().empty());
  EXPECT_EQ(Counters::now().failed - before.failed, 2u);
}

TEST(WebhookTls, HostNameMismatchFails) {
  SelfSigned cert;  // valid for "localhost" only
  TestServer server(always(200), &cert.server_ctx);
  auto opts = fast_options();
  opts.ca_file = cert.pem_path;
  opts.max_attempts = 1;
  Client client(opts);
  EXPECT_FALSE(client.deliver(make_event(), {server.url("/hook", "127.0.0.1"), core::Secret("k")}));
  EXPECT_TRUE(server.requests().empty());
}

TEST(WebhookTls, InsecureSkipsVerification) {
  SelfSigned cert;
  TestServer server(always(200), &cert.server_ctx);
  auto opts = fast_options();
  opts.tls_insecure = true;
  Client client(opts);
  EXPECT_TRUE(client.deliver(make_event(), {server.url("/hook", "127.0.0.1"), core::Secret("k")}));
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(WebhookTls, BadCaFileIsAConfigurationError) {
  auto opts = fast_options();
  opts.ca_file = "/nonexistent/ca.pem";
  net::io_context ioc;
  EXPECT_ANY_THROW(WebhookSink(ioc.get_executor(), opts));
}

}  // namespace
}  // namespace el::delivery
