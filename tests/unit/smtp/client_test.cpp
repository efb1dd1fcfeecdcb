// SMTP client tests over replayed server scripts (exact client bytes checked), with a failure
// injected at each I/O step, plus two loopback TCP cases for the real transport.
#include "smtp/client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <functional>

#include "support/replay_transport.hpp"

namespace el::smtp {
namespace {

using namespace std::chrono_literals;
namespace test = el::testing;
using test::ReplayState;
using test::ReplayTransport;
using test::Step;
using Body = std::function<net::awaitable<void>(Client&)>;

ClientOptions fast_options() {
  ClientOptions o;
  o.command_timeout = 500ms;
  o.data_timeout = 500ms;
  o.helo_name = "client.test";
  return o;
}

struct Outcome {
  bool finished = false;
  std::optional<Error> error;
  std::string other_exception;
  std::shared_ptr<ReplayState> state;
};

// Runs `body` on a Client over the replayed script; fails the test if it hangs.
Outcome run_steps(std::vector<Step> script, const Body& body, int fail_at = -1,
                  std::size_t chunk = 1 << 20, ClientOptions opts = fast_options()) {
  net::io_context io;
  Outcome out;
  out.state = std::make_shared<ReplayState>();
  out.state->fail_at = fail_at;
  auto transport =
      std::make_unique<ReplayTransport>(io.get_executor(), std::move(script), out.state, chunk);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        Client c(std::move(transport), opts);
        co_await body(c);
      },
      [&](std::exception_ptr e) {
        out.finished = true;
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const Error& err) {
          out.error = err;
        } catch (const std::exception& ex) {
          out.other_exception = ex.what();
        }
      });
  io.run_for(10s);
  EXPECT_TRUE(out.finished) << "the client hung";
  EXPECT_EQ(out.state->mismatch, "");
  EXPECT_EQ(out.other_exception, "");
  return out;
}

Outcome run(const std::string& script, const Body& body, int fail_at = -1,
            std::size_t chunk = 1 << 20, ClientOptions opts = fast_options()) {
  return run_steps(test::parse_script(script), body, fail_at, chunk, opts);
}

void expect_ok(const Outcome& o) {
  EXPECT_FALSE(o.error) << o.error->what();
  EXPECT_TRUE(o.state->complete()) << "script not fully replayed: step " << o.state->step;
}

void expect_error(const Outcome& o, ErrorKind kind) {
  ASSERT_TRUE(o.error) << "expected Error{" << to_string(kind) << "}";
  EXPECT_EQ(o.error->kind(), kind) << o.error->what();
}

const std::string kGreeting = "S: 220 mx.example.com ESMTP Postfix\n";
const std::string kEhlo =
    "C: EHLO client.test\n"
    "S: 250-mx.example.com\n"
    "S: 250-PIPELINING\n"
    "S: 250-SIZE 10240000\n"
    "S: 250-AUTH PLAIN LOGIN XOAUTH2\n"
    "S: 250-ENHANCEDSTATUSCODES\n"
    "S: 250-8BITMIME\n"
    "S: 250 DSN\n";
const std::string kEhloNoPipelining =
    "C: EHLO client.test\n"
    "S: 250-mx.example.com\n"
    "S: 250 AUTH LOGIN\n";
const core::Secret kPassword{"secret"};
const core::Secret kToken{"ya29.token"};
const std::string kUser = "alice@example.com";
const std::string kPlain = "AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==";

net::awaitable<void> start_plain(Client& c) { co_await c.start(false); }

Envelope two_recipients() { return Envelope{"alice@example.com", {"bob@b.test", "carol@c.test"}}; }

// ---- greeting, EHLO, HELO ------------------------------------------------------------------

TEST(SmtpClient, GreetingAndExtensions) {
  auto o =
      run(kGreeting + kEhlo + "C: QUIT\nS: 221 2.0.0 Bye\n", [](Client& c) -> net::awaitable<void> {
        co_await c.start(false);
        std::map<std::string, std::string> want = {
            {"PIPELINING", ""},          {"SIZE", "10240000"}, {"AUTH", "PLAIN LOGIN XOAUTH2"},
            {"ENHANCEDSTATUSCODES", ""}, {"8BITMIME", ""},     {"DSN", ""}};
        EXPECT_EQ(c.extensions(), want);
        EXPECT_TRUE(c.has_extension("pipelining"));
        EXPECT_TRUE(c.has_extension("Auth"));
        EXPECT_FALSE(c.has_extension("STARTTLS"));
        EXPECT_EQ(c.max_size(), std::optional<std::uint64_t>(10240000));
        co_await c.quit();
      });
  expect_ok(o);
  EXPECT_TRUE(o.state->closed);
}

TEST(SmtpClient, ExtensionsOldAuthFormAndSizeWithoutLimit) {
  auto o = run(kGreeting +
                   "C: EHLO client.test\nS: 250-mx\nS: 250-size\nS: 250-AUTH=LOGIN\n"
                   "S: 250-auth plain login\nS: 250 x-custom  a  b \n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 EXPECT_EQ(c.extensions().at("AUTH"), "LOGIN PLAIN");
                 EXPECT_EQ(c.extensions().at("X-CUSTOM"), "a  b");
                 EXPECT_TRUE(c.has_extension("SIZE"));
                 EXPECT_FALSE(c.max_size());  // SIZE without a number: no limit announced
               });
  expect_ok(o);
}

TEST(SmtpClient, HeloFallbackWhenEhloRefused) {
  auto o = run(kGreeting +
                   "C: EHLO client.test\nS: 502 5.5.2 Error: command not recognized\n"
                   "C: HELO client.test\nS: 250 mx.example.com\n"
                   "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
                   "C: RCPT TO:<bob@b.test>\nS: 250 ok\n"
                   "C: DATA\nS: 354 go\nC: hi\nC: .\nS: 250 ok\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 EXPECT_TRUE(c.extensions().empty());
                 EXPECT_FALSE(c.max_size());
                 Envelope env{"alice@example.com", {"bob@b.test"}};
                 auto r = co_await c.send(env, "hi");
                 EXPECT_EQ(r.reply.code, 250);
                 EXPECT_EQ(r.queue_id, "");
               });
  expect_ok(o);
}

TEST(SmtpClient, GreetingRefused) {
  auto o = run("S: 554 5.7.1 No SMTP service here\n", start_plain);
  expect_error(o, ErrorKind::permanent);
  EXPECT_EQ(o.error->reply().code, 554);
  EXPECT_EQ(o.error->reply().enhanced, "5.7.1");
  o = run("S: 421 4.3.2 Too many connections\n", start_plain);
  expect_error(o, ErrorKind::temporary);
  o = run("S: 250 what\n", start_plain);
  expect_error(o, ErrorKind::protocol);
}

TEST(SmtpClient, EhloTemporaryFailureDoesNotTryHelo) {
  auto o = run(kGreeting + "C: EHLO client.test\nS: 421 4.4.2 shutting down\n", start_plain);
  expect_error(o, ErrorKind::temporary);
  EXPECT_TRUE(o.state->complete());
}

// ---- STARTTLS ----------------------------------------------------------------------------

TEST(SmtpClient, StartTlsThenEhloAgain) {
  auto o = run(kGreeting +
                   "C: EHLO client.test\nS: 250-mx\nS: 250-PIPELINING\nS: 250 STARTTLS\n"
                   "C: STARTTLS\nS: 220 2.0.0 Ready to start TLS\n"
                   "C: EHLO client.test\nS: 250-mx\nS: 250 AUTH PLAIN\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(true);
                 // Only what was said over TLS counts.
                 EXPECT_FALSE(c.has_extension("PIPELINING"));
                 EXPECT_FALSE(c.has_extension("STARTTLS"));
                 EXPECT_TRUE(c.has_extension("AUTH"));
               });
  expect_ok(o);
  EXPECT_TRUE(o.state->tls_started);
}

TEST(SmtpClient, StartTlsRequiredButNotOffered) {
  auto o =
      run(kGreeting + kEhlo, [](Client& c) -> net::awaitable<void> { co_await c.start(true); });
  expect_error(o, ErrorKind::tls);
  EXPECT_FALSE(o.state->tls_started);
  EXPECT_EQ(o.state->written(), "EHLO client.test\r\n");  // no STARTTLS, no AUTH in clear text
}

TEST(SmtpClient, StartTlsRefused) {
  auto o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250 STARTTLS\n" +
                   "C: STARTTLS\nS: 454 4.7.0 TLS not available due to local problem\n",
               [](Client& c) -> net::awaitable<void> { co_await c.start(true); });
  expect_error(o, ErrorKind::tls);
  EXPECT_EQ(o.error->reply().code, 454);
  EXPECT_FALSE(o.state->tls_started);
}

TEST(SmtpClient, StartTlsRefusesInjectedClearTextReply) {
  auto script = test::parse_script(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250 STARTTLS\n" +
                                   "C: STARTTLS\n");
  script.push_back({Step::server, "220 go ahead\r\n250-injected\r\n"});
  auto o = run_steps(script, [](Client& c) -> net::awaitable<void> { co_await c.start(true); });
  expect_error(o, ErrorKind::protocol);
  EXPECT_FALSE(o.state->tls_started);
}

// ---- AUTH --------------------------------------------------------------------------------

TEST(SmtpClient, AuthPlain) {
  auto o = run(
      kGreeting + kEhlo + "C: AUTH PLAIN " + kPlain + "\nS: 235 2.7.0 Authentication successful\n",
      [](Client& c) -> net::awaitable<void> {
        co_await c.start(false);
        co_await c.login(kUser, kPassword);
      });
  expect_ok(o);
}

TEST(SmtpClient, AuthPlainRefusedKeepsSecretsOutOfTheMessage) {
  auto o = run(kGreeting + kEhlo + "C: AUTH PLAIN " + kPlain +
                   "\nS: 535 5.7.8 Error: authentication failed: bad credentials\n"
                   "C: QUIT\nS: 221 bye\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 try {
                   co_await c.login(kUser, kPassword);
                   ADD_FAILURE() << "login succeeded";
                 } catch (const Error& e) {
                   EXPECT_EQ(e.kind(), ErrorKind::auth);
                   EXPECT_EQ(e.reply().code, 535);
                   EXPECT_EQ(e.reply().enhanced, "5.7.8");
                   std::string what = e.what();
                   EXPECT_NE(what.find("535"), std::string::npos) << what;
                   EXPECT_EQ(what.find("secret"), std::string::npos) << what;
                   EXPECT_EQ(what.find(kPlain), std::string::npos) << what;
                 }
                 co_await c.quit();  // a refusal leaves the connection usable
               });
  expect_ok(o);
}

TEST(SmtpClient, AuthTemporaryFailure) {
  auto o = run(kGreeting + kEhlo + "C: AUTH PLAIN " + kPlain +
                   "\nS: 454 4.7.0 Temporary authentication failure\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 co_await c.login(kUser, kPassword);
               });
  expect_error(o, ErrorKind::temporary);
  EXPECT_EQ(o.error->reply().code, 454);
}

TEST(SmtpClient, AuthLogin) {
  const std::string script = kGreeting + kEhloNoPipelining +
                             "C: AUTH LOGIN\nS: 334 VXNlcm5hbWU6\n"
                             "C: YWxpY2VAZXhhbXBsZS5jb20=\nS: 334 UGFzc3dvcmQ6\n"
                             "C: c2VjcmV0\n";
  auto body = [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login(kUser, kPassword);
  };
  expect_ok(run(script + "S: 235 2.7.0 ok\n", body));
  auto o = run(script + "S: 535 5.7.8 nope\n", body);
  expect_error(o, ErrorKind::auth);
  EXPECT_EQ(o.error->reply().code, 535);
  EXPECT_EQ(std::string(o.error->what()).find("c2VjcmV0"), std::string::npos);
}

TEST(SmtpClient, AuthUnexpectedChallengeIsCancelled) {
  auto o = run(
      kGreeting + kEhlo + "C: AUTH PLAIN " + kPlain + "\nS: 334 \nC: *\nS: 501 5.7.0 cancelled\n",
      [](Client& c) -> net::awaitable<void> {
        co_await c.start(false);
        co_await c.login(kUser, kPassword);
      });
  expect_error(o, ErrorKind::auth);
  EXPECT_EQ(o.error->reply().code, 501);
  EXPECT_TRUE(o.state->complete());
}

TEST(SmtpClient, NoUsableMechanism) {
  auto body = [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login(kUser, kPassword);
  };
  auto o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250 AUTH CRAM-MD5 GSSAPI\n", body);
  expect_error(o, ErrorKind::auth);
  EXPECT_EQ(o.state->writes.size(), 1u);
  o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250 PIPELINING\n", body);
  expect_error(o, ErrorKind::auth);
  o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250 AUTH PLAIN\n",
          [](Client& c) -> net::awaitable<void> {
            co_await c.start(false);
            co_await c.login_xoauth2(kUser, kToken);
          });
  expect_error(o, ErrorKind::auth);
}

TEST(SmtpClient, XOAuth2) {
  auto o = run(kGreeting + kEhlo +
                   "C: AUTH XOAUTH2 "
                   "dXNlcj1hbGljZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnRva2VuAQE=\n"
                   "S: 235 2.7.0 Accepted\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 co_await c.login_xoauth2(kUser, kToken);
               });
  expect_ok(o);
}

TEST(SmtpClient, XOAuth2ChallengeGetsEmptyLine) {
  auto o = run(kGreeting + kEhlo +
                   "C: AUTH XOAUTH2 "
                   "dXNlcj1hbGljZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnRva2VuAQE=\n"
                   "S: 334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0=\n"
                   "C:\n"
                   "S: 535 5.7.8 Username and Password not accepted\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 co_await c.login_xoauth2(kUser, kToken);
               });
  expect_error(o, ErrorKind::auth);
  EXPECT_EQ(o.error->reply().code, 535);
  EXPECT_TRUE(o.state->complete());
  ASSERT_GE(o.state->writes.size(), 3u);
  EXPECT_EQ(o.state->writes.back(), "\r\n");
  std::string what = o.error->what();
  EXPECT_NE(what.find("\"status\":\"400\""), std::string::npos) << what;
  EXPECT_EQ(what.find("ya29"), std::string::npos) << what;
}

// ---- MAIL / RCPT / DATA ------------------------------------------------------------------

const std::string kPipelinedTransaction =
    "C: MAIL FROM:<alice@example.com> SIZE=14\n"
    "C: RCPT TO:<bob@b.test>\n"
    "C: RCPT TO:<carol@c.test>\n"
    "S: 250 2.1.0 Ok\n"
    "S: 250 2.1.5 Ok\n"
    "S: 250 2.1.5 Ok\n"
    "C: DATA\n"
    "S: 354 End data with <CR><LF>.<CR><LF>\n"
    "C: Subject: x\n"
    "C: \n"
    "C: .\n"
    "S: 250 2.0.0 Ok: queued as 4F1A2B3C\n";

TEST(SmtpClient, PipeliningSendsMailAndRcptsInOneWrite) {
  auto o = run(kGreeting + kEhlo + kPipelinedTransaction, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    const Envelope env = two_recipients();
    auto r = co_await c.send(env, "Subject: x\n\n");
    EXPECT_EQ(r.reply.code, 250);
    EXPECT_EQ(r.reply.enhanced, "2.0.0");
    EXPECT_EQ(r.reply.text, "Ok: queued as 4F1A2B3C");
    EXPECT_EQ(r.queue_id, "4F1A2B3C");
  });
  expect_ok(o);
  const auto& w = o.state->writes;
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[1],
            "MAIL FROM:<alice@example.com> SIZE=14\r\nRCPT TO:<bob@b.test>\r\n"
            "RCPT TO:<carol@c.test>\r\n");
  EXPECT_EQ(w[2], "DATA\r\n");
  EXPECT_EQ(w[3], "Subject: x\r\n\r\n.\r\n");
}

TEST(SmtpClient, PipeliningByteByByteReplies) {
  for (std::size_t chunk : {1u, 2u, 5u}) {
    auto o = run(
        kGreeting + kEhlo + kPipelinedTransaction,
        [](Client& c) -> net::awaitable<void> {
          co_await c.start(false);
          const Envelope env = two_recipients();
          auto r = co_await c.send(env, "Subject: x\r\n\r\n");
          EXPECT_EQ(r.queue_id, "4F1A2B3C");
        },
        -1, chunk);
    expect_ok(o);
  }
}

TEST(SmtpClient, WithoutPipeliningOneCommandAtATime) {
  auto o = run(kGreeting + kEhloNoPipelining +
                   "C: MAIL FROM:<>\nS: 250 ok\n"
                   "C: RCPT TO:<bob@b.test>\nS: 250 ok\n"
                   "C: RCPT TO:<carol@c.test>\nS: 251 will forward\n"
                   "C: DATA\nS: 354 go\nC: body\nC: .\n"
                   "S: 250 2.0.0 x9K3abc123 Message accepted for delivery\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 Envelope env{"", {"bob@b.test", "carol@c.test"}};  // the null sender
                 auto r = co_await c.send(env, "body\r\n");
                 EXPECT_EQ(r.queue_id, "x9K3abc123");
               });
  expect_ok(o);
  const auto& w = o.state->writes;
  ASSERT_EQ(w.size(), 6u);
  EXPECT_EQ(w[1], "MAIL FROM:<>\r\n");
  EXPECT_EQ(w[2], "RCPT TO:<bob@b.test>\r\n");
  EXPECT_EQ(w[3], "RCPT TO:<carol@c.test>\r\n");
}

TEST(SmtpClient, RefusedRecipientPermanentSendsRset) {
  auto o =
      run(kGreeting + kEhlo +
              "C: MAIL FROM:<alice@example.com> SIZE=4\n"
              "C: RCPT TO:<bob@b.test>\n"
              "C: RCPT TO:<carol@c.test>\n"
              "S: 250 2.1.0 Ok\n"
              "S: 250 2.1.5 Ok\n"
              "S: 550 5.1.1 <carol@c.test>: Recipient address rejected: User unknown\n"
              "C: RSET\nS: 250 2.0.0 Ok\n"
              "C: RSET\nS: 250 2.0.0 Ok\n",
          [](Client& c) -> net::awaitable<void> {
            co_await c.start(false);
            try {
              const Envelope env = two_recipients();
              co_await c.send(env, "hi\r\n");
              ADD_FAILURE() << "send succeeded";
            } catch (const Error& e) {
              EXPECT_EQ(e.kind(), ErrorKind::permanent);
              EXPECT_EQ(e.reply().code, 550);
              EXPECT_EQ(e.reply().enhanced, "5.1.1");
              EXPECT_NE(std::string(e.what()).find("recipient <carol@c.test>"), std::string::npos)
                  << e.what();
            }
            co_await c.reset();  // still usable
          });
  expect_ok(o);
}

TEST(SmtpClient, RefusedRecipientTemporaryWithoutPipelining) {
  auto o = run(kGreeting + kEhloNoPipelining +
                   "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
                   "C: RCPT TO:<bob@b.test>\nS: 450 4.2.0 <bob@b.test>: greylisted\n"
                   "C: RSET\nS: 250 ok\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 const Envelope env = two_recipients();
                 co_await c.send(env, "hi");
               });
  expect_error(o, ErrorKind::temporary);
  EXPECT_EQ(o.error->reply().code, 450);
  EXPECT_NE(std::string(o.error->what()).find("<bob@b.test>"), std::string::npos);
  EXPECT_TRUE(o.state->complete());  // RSET was sent, no RCPT for carol, no DATA
}

TEST(SmtpClient, RefusedSender) {
  auto o = run(kGreeting + kEhloNoPipelining +
                   "C: MAIL FROM:<alice@example.com>\nS: 553 5.7.1 Sender address rejected\n"
                   "C: RSET\nS: 250 ok\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 const Envelope env = two_recipients();
                 co_await c.send(env, "hi");
               });
  expect_error(o, ErrorKind::permanent);
  EXPECT_EQ(o.error->reply().code, 553);
  EXPECT_TRUE(o.state->complete());
}

TEST(SmtpClient, ClosingReplyToRcptBreaksTheConnection) {
  auto o = run(kGreeting + kEhloNoPipelining +
                   "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
                   "C: RCPT TO:<bob@b.test>\nS: 421 4.7.0 closing\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 try {
                   const Envelope env = two_recipients();
                   co_await c.send(env, "hi");
                 } catch (const Error& e) {
                   EXPECT_EQ(e.kind(), ErrorKind::temporary);
                 }
                 co_await c.reset();  // no RSET on the wire: the client knows it is broken
               });
  expect_error(o, ErrorKind::io);
  EXPECT_TRUE(o.state->complete());
}

TEST(SmtpClient, DataRefused) {
  auto o = run(kGreeting + kEhloNoPipelining +
                   "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
                   "C: RCPT TO:<bob@b.test>\nS: 250 ok\n"
                   "C: DATA\nS: 554 5.5.1 Error: no valid recipients\n"
                   "C: RSET\nS: 250 ok\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 const Envelope env{"alice@example.com", {"bob@b.test"}};
                 co_await c.send(env, "hi");
               });
  expect_error(o, ErrorKind::permanent);
  EXPECT_EQ(o.error->reply().code, 554);
  EXPECT_TRUE(o.state->complete());
}

TEST(SmtpClient, FinalReplyRefusals) {
  const std::string head = kGreeting + kEhloNoPipelining +
                           "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
                           "C: RCPT TO:<bob@b.test>\nS: 250 ok\n"
                           "C: DATA\nS: 354 go\nC: hi\nC: .\n";
  auto body = [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    const Envelope env{"alice@example.com", {"bob@b.test"}};
    co_await c.send(env, "hi");
  };
  auto o = run(head + "S: 451 4.3.0 Error: queue file write error\n", body);
  expect_error(o, ErrorKind::temporary);
  EXPECT_EQ(o.error->reply().code, 451);
  o = run(head + "S: 554 5.7.1 Spam message rejected\n", body);
  expect_error(o, ErrorKind::permanent);
  EXPECT_EQ(o.error->reply().enhanced, "5.7.1");
}

TEST(SmtpClient, DotStuffingAndBareLfExactBytes) {
  const std::string data = "Subject: dots\n\n.hidden\nline\r\n..two\r.cr\n.\nlast";
  auto o = run(kGreeting + kEhloNoPipelining +
                   "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
                   "C: RCPT TO:<bob@b.test>\nS: 250 ok\n"
                   "C: DATA\nS: 354 go\n"
                   "C: Subject: dots\nC:\nC: ..hidden\nC: line\nC: ...two\nC: ..cr\nC: ..\n"
                   "C: last\nC: .\nS: 250 ok\n",
               [&data](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 const Envelope env{"alice@example.com", {"bob@b.test"}};
                 co_await c.send(env, data);
               });
  expect_ok(o);
  ASSERT_FALSE(o.state->writes.empty());
  EXPECT_EQ(o.state->writes.back(),
            "Subject: dots\r\n\r\n..hidden\r\nline\r\n...two\r\n..cr\r\n..\r\nlast\r\n.\r\n");
}

TEST(SmtpClient, EightBitDataAnnouncedWhenOffered) {
  auto o = run(kGreeting + kEhlo +
                   "C: MAIL FROM:<alice@example.com> SIZE=8 BODY=8BITMIME\n"
                   "C: RCPT TO:<bob@b.test>\nS: 250 ok\nS: 250 ok\n"
                   "C: DATA\nS: 354 go\nC: Gr\xc3\xbc\xc3\x9f\nC: .\nS: 250 ok\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 const Envelope env{"alice@example.com", {"bob@b.test"}};
                 co_await c.send(env, "Gr\xc3\xbc\xc3\x9f");
               });
  expect_ok(o);
}

TEST(SmtpClient, TooLargeBeforeAnythingIsSent) {
  auto o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250 SIZE 100\nC: QUIT\nS: 221 bye\n",
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 EXPECT_EQ(c.max_size(), std::optional<std::uint64_t>(100));
                 try {
                   const Envelope env = two_recipients();
                   const std::string data(99, 'x');  // + CRLF = 101
                   co_await c.send(env, data);
                   ADD_FAILURE() << "send succeeded";
                 } catch (const Error& e) {
                   EXPECT_EQ(e.kind(), ErrorKind::too_large);
                 }
                 co_await c.quit();  // not broken
               });
  expect_ok(o);
  ASSERT_EQ(o.state->writes.size(), 2u);
  EXPECT_EQ(o.state->writes[1], "QUIT\r\n");
}

TEST(SmtpClient, InvalidAddressesAreRefusedLocally) {
  for (Envelope env : {Envelope{"a@x\r\nRCPT TO:<evil@x>", {"b@y"}}, Envelope{"a@x", {"b>@y"}},
                       Envelope{"a@x", {}}, Envelope{"a@x", {""}}}) {
    auto o = run(kGreeting + kEhlo, [env](Client& c) -> net::awaitable<void> {
      co_await c.start(false);
      co_await c.send(env, "hi");
    });
    expect_error(o, ErrorKind::permanent);
    EXPECT_EQ(o.state->writes.size(), 1u);
  }
}

// ---- failures ----------------------------------------------------------------------------

TEST(SmtpClient, CommandTimeoutOnSilentServer) {
  auto t0 = std::chrono::steady_clock::now();
  ClientOptions opts = fast_options();
  opts.command_timeout = 100ms;
  auto o = run(
      kGreeting + "C: EHLO client.test\nHANG\n",
      [](Client& c) -> net::awaitable<void> {
        try {
          co_await c.start(false);
          ADD_FAILURE() << "start succeeded";
        } catch (const Error& e) {
          EXPECT_EQ(e.kind(), ErrorKind::timeout) << e.what();
        }
        co_await c.reset();  // broken: Error{io} without touching the wire
      },
      -1, 1 << 20, opts);
  expect_error(o, ErrorKind::io);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(o.state->writes.size(), 1u);
}

TEST(SmtpClient, DataTimeout) {
  ClientOptions opts = fast_options();
  opts.data_timeout = 100ms;
  auto o = run(
      kGreeting + kEhloNoPipelining +
          "C: MAIL FROM:<alice@example.com>\nS: 250 ok\n"
          "C: RCPT TO:<bob@b.test>\nS: 250 ok\n"
          "C: DATA\nS: 354 go\nC: hi\nC: .\nHANG\n",
      [](Client& c) -> net::awaitable<void> {
        co_await c.start(false);
        const Envelope env{"alice@example.com", {"bob@b.test"}};
        co_await c.send(env, "hi");
      },
      -1, 1 << 20, opts);
  expect_error(o, ErrorKind::timeout);
}

TEST(SmtpClient, ConnectionClosedMidReply) {
  auto o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nS: 250-PIPELINING\n", start_plain);
  expect_error(o, ErrorKind::io);
  o = run(kGreeting + "C: EHLO client.test\nS: 250-mx\nP: 250 PIPEL\n", start_plain);
  expect_error(o, ErrorKind::io);
  o = run("P: 22", start_plain);
  expect_error(o, ErrorKind::io);
}

TEST(SmtpClient, MalformedReplyIsProtocolErrorAndBreaks) {
  auto o = run(kGreeting + "C: EHLO client.test\nS: hello there\n",
               [](Client& c) -> net::awaitable<void> {
                 try {
                   co_await c.start(false);
                 } catch (const Error& e) {
                   EXPECT_EQ(e.kind(), ErrorKind::protocol);
                 }
                 co_await c.login(kUser, kPassword);
               });
  expect_error(o, ErrorKind::io);
}

TEST(SmtpClient, QuitNeverThrows) {
  // The server closes instead of answering QUIT.
  auto o = run(kGreeting + kEhlo + "C: QUIT\n", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.quit();
    co_await c.quit();  // twice: nothing on the wire
  });
  expect_ok(o);
  EXPECT_TRUE(o.state->closed);
  // The server hangs: quit gives up after command_timeout.
  ClientOptions opts = fast_options();
  opts.command_timeout = 50ms;
  o = run(
      kGreeting + kEhlo + "C: QUIT\nHANG\n",
      [](Client& c) -> net::awaitable<void> {
        co_await c.start(false);
        co_await c.quit();
        const Envelope env = two_recipients();
        co_await c.send(env, "hi");  // closed: Error{io}
      },
      -1, 1 << 20, opts);
  expect_error(o, ErrorKind::io);
}

net::awaitable<void> full_session(Client& c) {
  co_await c.start(true);
  co_await c.login(kUser, kPassword);
  const Envelope env = two_recipients();
  auto r = co_await c.send(env, "Subject: x\n\n");
  EXPECT_EQ(r.queue_id, "4F1A2B3C");
}

const std::string kFullSession = kGreeting +
                                 "C: EHLO client.test\nS: 250-mx\nS: 250 STARTTLS\n"
                                 "C: STARTTLS\nS: 220 go ahead\n" +
                                 kEhlo + "C: AUTH PLAIN " + kPlain + "\nS: 235 ok\n" +
                                 kPipelinedTransaction;

// Beast's fail_count: the Nth read/write/handshake fails; the client must throw Error{io}, never
// hang, never throw anything else, and refuse further use.
TEST(SmtpClient, FailureAtEveryStep) {
  auto clean = run(kFullSession, full_session);
  expect_ok(clean);
  EXPECT_TRUE(clean.state->tls_started);
  const int ops = clean.state->ops;
  ASSERT_GT(ops, 10);
  for (int n = 1; n <= ops; ++n) {
    auto o = run(
        kFullSession,
        [](Client& c) -> net::awaitable<void> {
          std::optional<Error> first;
          try {
            co_await full_session(c);
          } catch (const Error& e) {
            first = e;
          }
          EXPECT_TRUE(first);
          if (first) {
            EXPECT_EQ(first->kind(), ErrorKind::io) << first->what();
          }
          co_await c.reset();  // must throw Error{io} without I/O
        },
        n);
    EXPECT_TRUE(o.state->injected) << "op " << n;
    expect_error(o, ErrorKind::io);
    EXPECT_EQ(o.state->ops, n) << "the client did I/O after the failure at op " << n;
  }
}

TEST(SmtpClient, FullSessionInSmallPieces) {
  for (std::size_t chunk : {1u, 3u, 7u}) expect_ok(run(kFullSession, full_session, -1, chunk));
}

// ---- the real transport on loopback ------------------------------------------------------

// A TCP server on 127.0.0.1 that sends `greeting` to its one client, then keeps the connection
// open (hang) or closes it.
struct LoopbackCase {
  std::string greeting;
  bool close_after = false;
};

std::optional<Error> run_loopback(const LoopbackCase& lc) {
  using tcp = net::ip::tcp;
  net::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::optional<Error> result;
  bool finished = false;
  std::optional<tcp::socket> peer;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        auto [ec, s] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
        if (ec) co_return;
        peer.emplace(std::move(s));
        auto [wec, n] = co_await net::async_write(*peer, net::buffer(lc.greeting),
                                                  net::as_tuple(net::use_awaitable));
        (void)wec;
        (void)n;
        if (lc.close_after) peer->close();
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        imap::ConnectOptions copts;
        copts.host = "127.0.0.1";
        copts.port = port;
        copts.security = core::Security::none;
        copts.timeout = 2s;
        auto transport = co_await imap::connect(io.get_executor(), copts);
        ClientOptions opts = fast_options();
        opts.command_timeout = 150ms;
        Client c(std::move(transport), opts);
        try {
          co_await c.start(false);
        } catch (const Error& e) {
          result = e;
        }
        finished = true;
        io.stop();
      },
      net::detached);
  io.run_for(10s);
  EXPECT_TRUE(finished) << "the client hung";
  return result;
}

TEST(SmtpClientLoopback, SilentServerTimesOut) {
  auto t0 = std::chrono::steady_clock::now();
  auto err = run_loopback({"", false});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::timeout) << err->what();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(SmtpClientLoopback, ClosedMidReplyIsIo) {
  auto err = run_loopback({"220-mx.example.com\r\n220-still", true});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::io) << err->what();
}

}  // namespace
}  // namespace el::smtp
