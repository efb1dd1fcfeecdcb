// Client tests against replayed Dovecot transcripts, with a failure injected at each I/O step.
#include "imap/client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>

#include "support/replay_transport.hpp"

namespace el::imap {
namespace {

using namespace std::chrono_literals;
namespace test = el::testing;
using test::ReplayState;
using test::ReplayTransport;
using Body = std::function<net::awaitable<void>(Client&)>;

ClientOptions fast_options() {
  ClientOptions o;
  o.command_timeout = 500ms;
  o.done_timeout = 200ms;
  return o;
}

struct Outcome {
  bool finished = false;
  std::optional<Error> error;
  std::string other_exception;
  std::shared_ptr<ReplayState> state;
};

// Runs `body` on a Client over the replayed script; fails the test if it hangs.
Outcome run(const std::vector<test::Step>& script, const Body& body, int fail_at = -1,
            std::size_t chunk = 1 << 20, ClientOptions opts = fast_options()) {
  net::io_context io;
  Outcome out;
  out.state = std::make_shared<ReplayState>();
  out.state->fail_at = fail_at;
  auto transport = std::make_unique<ReplayTransport>(io.get_executor(), script, out.state, chunk);
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

Outcome run_file(const char* file, const Body& body, int fail_at = -1) {
  return run(test::load_script(std::string("imap/") + file), body, fail_at);
}

void expect_ok(const Outcome& o) {
  EXPECT_FALSE(o.error) << o.error->what();
  EXPECT_TRUE(o.state->complete()) << "script not fully replayed: step " << o.state->step;
}

void expect_error(const Outcome& o, ErrorKind kind) {
  ASSERT_TRUE(o.error) << "expected Error{" << to_string(kind) << "}";
  EXPECT_EQ(o.error->kind(), kind) << o.error->what();
}

const core::Secret kPassword{"secret"};

net::awaitable<void> full_session(Client& c) {
  co_await c.start(false);
  co_await c.login("alice", kPassword);
  auto sel = co_await c.select("INBOX", false);
  EXPECT_EQ(sel.uidvalidity, 1718035200u);
  EXPECT_EQ(sel.uidnext, 3u);
  EXPECT_EQ(sel.exists, 2u);
  auto uids = co_await c.uid_search("UID 2:*");
  EXPECT_EQ(uids, std::vector<std::uint32_t>{2});
  auto msgs = co_await c.uid_fetch("2");
  EXPECT_EQ(msgs.size(), 1u);
  auto r = co_await c.idle(std::chrono::minutes(29));
  EXPECT_TRUE(r.new_mail);
  EXPECT_EQ(r.exists, 3u);
}

TEST(ImapClient, FullSession) {
  auto o = run_file("dovecot/session.txt", full_session);
  expect_ok(o);
}

TEST(ImapClient, FullSessionByteByByte) {
  auto o = run(test::load_script("imap/dovecot/session.txt"), full_session, -1, 1);
  expect_ok(o);
  o = run(test::load_script("imap/dovecot/session.txt"), full_session, -1, 7);
  expect_ok(o);
}

// Beast's fail_count: the Nth read/write fails; the client must throw Error{io}, never hang,
// never crash, never throw anything else.
TEST(ImapClient, FailureAtEveryStep) {
  auto clean = run_file("dovecot/session.txt", full_session);
  expect_ok(clean);
  int ops = clean.state->ops;
  ASSERT_GT(ops, 10);
  for (int n = 1; n <= ops; ++n) {
    auto o = run_file("dovecot/session.txt", full_session, n);
    ASSERT_TRUE(o.state->injected) << n;
    expect_error(o, ErrorKind::io);
  }
}

TEST(ImapClient, LoginSaslIr) {
  auto o = run_file("dovecot/login_sasl_ir.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    EXPECT_TRUE(c.has_capability("sasl-ir"));
    EXPECT_FALSE(c.has_capability("MOVE"));
    co_await c.login("alice", kPassword);
    EXPECT_TRUE(c.has_capability("MOVE"));  // refreshed from the OK's CAPABILITY code
    co_await c.logout();
  });
  expect_ok(o);
  EXPECT_TRUE(o.state->closed);
}

TEST(ImapClient, LoginPlainWithContinuation) {
  expect_ok(run_file("dovecot/login_plain_continuation.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login("alice", kPassword);
    EXPECT_TRUE(c.has_capability("IDLE"));
  }));
}

TEST(ImapClient, LoginCommandQuotes) {
  expect_ok(run_file("dovecot/login_login.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login("alice", core::Secret("se\"c\\ret"));
    EXPECT_TRUE(c.has_capability("UIDPLUS"));  // asked with CAPABILITY after login
  }));
}

TEST(ImapClient, LoginCommandLiteral) {
  expect_ok(run_file("dovecot/login_login_literal.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login("alice", core::Secret("s\xc3\xa9"
                                           "cret"));
  }));
}

TEST(ImapClient, AuthRefused) {
  auto o = run_file("dovecot/auth_failed.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login("alice", kPassword);
  });
  expect_error(o, ErrorKind::auth);
  EXPECT_NE(std::string(o.error->what()).find("Authentication failed"), std::string::npos);
}

TEST(ImapClient, SelectParsesAndEncodesFolder) {
  auto o = run_file("dovecot/select_utf7.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    auto s = co_await c.select("Entw\xc3\xbcrfe/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", true);
    EXPECT_EQ(s.uidvalidity, 1718035201u);
    EXPECT_EQ(s.uidnext, 42u);
    EXPECT_EQ(s.exists, 17u);
    EXPECT_EQ(c.exists(), 17u);
    co_await c.select("Missing", false);
  });
  expect_error(o, ErrorKind::no);
  EXPECT_TRUE(o.state->complete());
}

TEST(ImapClient, SearchAndFetchLiterals) {
  auto o = run_file("dovecot/fetch.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    auto uids = co_await c.uid_search("SINCE 1-Jun-2024");
    EXPECT_EQ(uids, (std::vector<std::uint32_t>{7, 9, 12}));
    auto m = co_await c.uid_fetch("7:12");
    EXPECT_EQ(m.size(), 3u);  // the flag-only FETCH for message 1 is not a message
    if (m.size() != 3) co_return;
    EXPECT_EQ(m[0].uid, 7u);
    EXPECT_EQ(m[0].flags, (std::vector<std::string>{"\\Seen", "$Forwarded"}));
    EXPECT_EQ(m[0].internal_date, " 2-Jun-2024 08:00:00 +0200");
    EXPECT_EQ(m[0].size, 58u);
    EXPECT_EQ(m[0].body, "Subject: one\r\n\r\nBody with ) and { braces } and \"quotes\".\r\n");
    EXPECT_EQ(m[0].body.size(), m[0].size);
    EXPECT_EQ(m[1].uid, 9u);
    EXPECT_EQ(m[1].body, "");
    EXPECT_EQ(m[2].uid, 12u);
    EXPECT_EQ(m[2].body, "Subject: three\r\n\r\nx\r\n");
  });
  expect_ok(o);
}

TEST(ImapClient, IdleEndsOnExists) {
  auto o = run_file("dovecot/idle_exists.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.select("INBOX", false);
    auto r = co_await c.idle(std::chrono::minutes(29));
    EXPECT_TRUE(r.new_mail);
    EXPECT_FALSE(r.interrupted);
    EXPECT_EQ(r.exists, 6u);
  });
  expect_ok(o);
}

TEST(ImapClient, IdleEndsOnExpunge) {
  auto o = run_file("dovecot/idle_expunge.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    auto r = co_await c.idle(std::chrono::minutes(29));
    EXPECT_TRUE(r.expunged);
    EXPECT_EQ(r.exists, 2u);
  });
  expect_ok(o);
}

TEST(ImapClient, IdleInterrupted) {
  auto start = std::chrono::steady_clock::now();
  auto o = run_file("dovecot/idle_silent.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    net::steady_timer t(co_await net::this_coro::executor);
    t.expires_after(30ms);
    t.async_wait([&c](boost::system::error_code) { c.interrupt(); });
    auto r = co_await c.idle(std::chrono::steady_clock::duration::max());  // no overflow
    EXPECT_TRUE(r.interrupted);
    EXPECT_FALSE(r.new_mail);
  });
  expect_ok(o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(ImapClient, InterruptBeforeIdleIsNotLost) {
  auto o = run(test::parse_script("S: * OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n"),
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 c.interrupt();
                 auto r = co_await c.idle(std::chrono::minutes(29));
                 EXPECT_TRUE(r.interrupted);
               });
  expect_ok(o);
}

TEST(ImapClient, IdleMaxDuration) {
  auto o = run_file("dovecot/idle_silent.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    auto r = co_await c.idle(50ms);
    EXPECT_FALSE(r.interrupted);
    EXPECT_FALSE(r.new_mail);
  });
  expect_ok(o);
}

TEST(ImapClient, DoneNotAnsweredTimesOut) {
  auto o = run_file("dovecot/idle_done_unanswered.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.idle(std::chrono::minutes(29));
  });
  expect_error(o, ErrorKind::timeout);
}

TEST(ImapClient, CommandTimeout) {
  auto o = run(test::parse_script("S: * OK [CAPABILITY IMAP4rev1 IDLE] ready\nC: A1 NOOP\nHANG\n"),
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 co_await c.noop();
               });
  expect_error(o, ErrorKind::timeout);
}

TEST(ImapClient, ByeMidSession) {
  auto o = run_file("dovecot/bye_mid_session.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.noop();
  });
  expect_error(o, ErrorKind::bye);
}

TEST(ImapClient, ByeGreeting) {
  expect_error(run_file("dovecot/greeting_bye.txt",
                        [](Client& c) -> net::awaitable<void> { co_await c.start(false); }),
               ErrorKind::bye);
}

TEST(ImapClient, NoopReportsNewMail) {
  expect_ok(run_file("dovecot/noop.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    bool grew = co_await c.noop();
    EXPECT_FALSE(grew);
    grew = co_await c.noop();
    EXPECT_TRUE(grew);
    EXPECT_EQ(c.exists(), 4u);
    grew = co_await c.noop();
    EXPECT_FALSE(grew);
    EXPECT_EQ(c.exists(), 3u);
  }));
}

TEST(ImapClient, StartTls) {
  auto o = run_file("dovecot/starttls.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(true);
    EXPECT_TRUE(c.has_capability("AUTH=PLAIN"));
    EXPECT_FALSE(c.has_capability("STARTTLS"));
  });
  expect_ok(o);
  EXPECT_TRUE(o.state->tls_started);
}

TEST(ImapClient, StartTlsNotOffered) {
  expect_error(run_file("dovecot/login_sasl_ir.txt",
                        [](Client& c) -> net::awaitable<void> { co_await c.start(true); }),
               ErrorKind::tls);
}

TEST(ImapClient, IdleNotSupported) {
  auto o = run(test::parse_script("S: * OK [CAPABILITY IMAP4rev1] ready\n"),
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 co_await c.idle(1s);
               });
  expect_error(o, ErrorKind::no);
}

TEST(ImapClient, MalformedResponseIsProtocolError) {
  auto o = run(test::parse_script("S: * OK [CAPABILITY IMAP4rev1] ready\nC: A1 NOOP\n"
                                  "S: * 1 FETCH (UID 1))\n"),
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 co_await c.noop();
               });
  expect_error(o, ErrorKind::protocol);
}

TEST(ImapClient, LiteralOverLimitIsProtocolError) {
  ClientOptions opts = fast_options();
  opts.max_literal = 10;
  auto o = run(
      test::load_script("imap/dovecot/fetch.txt"),
      [](Client& c) -> net::awaitable<void> {
        co_await c.start(false);
        co_await c.uid_search("SINCE 1-Jun-2024");
        co_await c.uid_fetch("7:12");
      },
      -1, 1 << 20, opts);
  expect_error(o, ErrorKind::protocol);
}

TEST(ImapClient, BrokenConnectionIsNotReused) {
  auto o = run(test::parse_script("S: * OK [CAPABILITY IMAP4rev1] ready\nC: A1 NOOP\nHANG\n"),
               [](Client& c) -> net::awaitable<void> {
                 co_await c.start(false);
                 try {
                   co_await c.noop();
                 } catch (const Error& e) {
                   EXPECT_EQ(e.kind(), ErrorKind::timeout);
                 }
                 co_await c.noop();
               });
  expect_error(o, ErrorKind::io);
}

TEST(ImapClient, IdSendsQuotedFieldsAndToleratesBad) {
  expect_ok(run_file("dovecot/id.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::pair<std::string, std::string>> fields{
        {std::string("name"), std::string("email-listener")},
        {std::string("bad\r\n"), std::string("dropped")},
        {std::string("version"), std::string("0.1.0")}};
    co_await c.id(fields);
    co_await c.id({});  // BAD from the server: ID is informational, no error
  }));
}

TEST(ImapClient, LogoutNeverThrows) {
  auto clean = run_file("dovecot/login_sasl_ir.txt", [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login("alice", kPassword);
    co_await c.logout();
  });
  expect_ok(clean);
  for (int n = 1; n <= clean.state->ops; ++n) {
    auto o = run_file(
        "dovecot/login_sasl_ir.txt",
        [](Client& c) -> net::awaitable<void> {
          try {
            co_await c.start(false);
            co_await c.login("alice", kPassword);
          } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::io);
          }
          co_await c.logout();
        },
        n);
    EXPECT_FALSE(o.error) << n;
    EXPECT_TRUE(o.state->closed);
  }
}

net::awaitable<void> sizes_then_header(Client& c) {
  co_await c.start(false);
  auto sizes = co_await c.uid_fetch("7,9", Client::FetchBody::none);
  EXPECT_EQ(sizes.size(), 2u);  // the unsolicited flag update is not a result
  if (sizes.size() != 2) co_return;
  EXPECT_EQ(sizes[0].uid, 7u);
  EXPECT_EQ(sizes[0].size, 104857600u);
  EXPECT_TRUE(sizes[0].body.empty());
  EXPECT_EQ(sizes[1].uid, 9u);
  EXPECT_EQ(sizes[1].size, 21u);
  auto head = co_await c.uid_fetch("7", Client::FetchBody::header);
  EXPECT_EQ(head.size(), 1u);
  if (head.size() != 1) co_return;
  EXPECT_EQ(head[0].uid, 7u);
  EXPECT_EQ(head[0].body, "Subject: huge\r\n\r\n");
}

TEST(ImapClient, FetchSizesThenHeaderOnly) {
  auto clean = run_file("dovecot/fetch_sizes_header.txt", sizes_then_header);
  expect_ok(clean);
  // A failure injected at each I/O step in turn: always Error{io}, never a hang.
  for (int n = 1; n <= clean.state->ops; ++n) {
    auto o = run_file("dovecot/fetch_sizes_header.txt", sizes_then_header, n);
    ASSERT_TRUE(o.state->injected) << n;
    expect_error(o, ErrorKind::io);
  }
}

}  // namespace
}  // namespace el::imap
