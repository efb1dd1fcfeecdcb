// Client tests for LIST, STATUS, APPEND and the OAuth SASL mechanisms, over replayed transcripts
// (Dovecot 2.3 answers, Gmail-style XOAUTH2 refusals), checking the exact bytes written.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>

#include "imap/client.hpp"
#include "imap/encoding.hpp"
#include "support/replay_transport.hpp"

namespace el::imap {
namespace {

using namespace std::chrono_literals;
namespace test = el::testing;
using test::ReplayState;
using test::ReplayTransport;
using test::Step;
using Body = std::function<net::awaitable<void>(Client&)>;
using Script = std::vector<Step>;

// Dovecot 2.3.19's default capabilities after login (LITERAL+, SPECIAL-USE, LIST-EXTENDED).
const std::string kDovecotGreeting =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
    "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT "
    "CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT "
    "SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE] Dovecot (Debian) ready.";

Step C(const std::string& line) { return {Step::client, line + "\r\n"}; }
Step S(const std::string& line) { return {Step::server, line + "\r\n"}; }

// Every call the client made on its transport, in order: what the tests assert about waiting.
struct Event {
  enum Kind { read, write } kind;
  std::string bytes;  // writes only
};

class RecordingTransport final : public Transport {
 public:
  RecordingTransport(std::unique_ptr<Transport> inner, std::vector<Event>& log)
      : inner_(std::move(inner)), log_(log) {}
  net::any_io_executor get_executor() override { return inner_->get_executor(); }
  net::awaitable<std::size_t> read_some(net::mutable_buffer buf) override {
    log_.push_back({Event::read, {}});
    co_return co_await inner_->read_some(buf);
  }
  net::awaitable<void> write_all(std::string_view data) override {
    log_.push_back({Event::write, std::string(data)});
    co_await inner_->write_all(data);
  }
  net::awaitable<void> start_tls() override { co_await inner_->start_tls(); }
  void cancel() override { inner_->cancel(); }
  void close() override { inner_->close(); }

 private:
  std::unique_ptr<Transport> inner_;
  std::vector<Event>& log_;
};

struct Outcome {
  bool finished = false;
  std::optional<Error> error;
  std::string other_exception;
  std::shared_ptr<ReplayState> state;
  std::vector<Event> events;

  std::vector<std::string> writes() const {
    std::vector<std::string> out;
    for (const auto& e : events) {
      if (e.kind == Event::write) out.push_back(e.bytes);
    }
    return out;
  }
  // Writes after the greeting was read, merged between reads: one entry per flight of bytes the
  // client sent without waiting for the server.
  std::vector<std::string> flights() const {
    std::vector<std::string> out;
    bool open = false;
    for (const auto& e : events) {
      if (e.kind == Event::read) {
        open = false;
      } else if (open) {
        out.back() += e.bytes;
      } else {
        out.push_back(e.bytes);
        open = true;
      }
    }
    return out;
  }
};

Outcome run(const Script& script, const Body& body, int fail_at = -1, std::size_t chunk = 1 << 20) {
  net::io_context io;
  Outcome out;
  out.state = std::make_shared<ReplayState>();
  out.state->fail_at = fail_at;
  auto replay = std::make_unique<ReplayTransport>(io.get_executor(), script, out.state, chunk);
  auto transport = std::make_unique<RecordingTransport>(std::move(replay), out.events);
  ClientOptions opts;
  opts.command_timeout = 500ms;
  opts.done_timeout = 200ms;
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

void expect_ok(const Outcome& o) {
  EXPECT_FALSE(o.error) << o.error->what();
  EXPECT_TRUE(o.state->complete()) << "script not fully replayed: step " << o.state->step;
}

void expect_error(const Outcome& o, ErrorKind kind) {
  ASSERT_TRUE(o.error) << "expected Error{" << to_string(kind) << "}";
  EXPECT_EQ(o.error->kind(), kind) << o.error->what();
}

std::string what(const Outcome& o) { return o.error ? o.error->what() : std::string(); }

// ---- LIST --------------------------------------------------------------------------------------

Script dovecot_list() {
  return {
      S(kDovecotGreeting),
      C("A1 LIST \"\" \"*\" RETURN (SPECIAL-USE)"),
      S("* LIST (\\HasNoChildren) \"/\" INBOX"),
      S("* LIST (\\HasNoChildren \\Sent) \"/\" Sent"),
      S("* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\""),
      S("* 3 EXISTS"),  // unrelated untagged data keeps being tracked
      S("* LIST (\\Noselect \\HasChildren) \"/\" Projects"),
      S("* LIST (\\HasNoChildren \\Archive) \"/\" \"Projects/&AMk-t&AOk-\""),
      {Step::server, "* LIST (\\HasNoChildren \\junk) \"/\" {13}\r\nSpam \"quoted\"\r\n"},
      S("* LIST (\\HasNoChildren \\Trash \\Archive) NIL \"Deleted Messages\""),
      S("* LIST (\\HasNoChildren) \".\" \"a\\\\b\""),
      S("A1 OK List completed (0.001 + 0.000 secs)."),
  };
}

net::awaitable<void> list_dovecot(Client& c) {
  co_await c.start(false);
  auto folders = co_await c.list_folders();
  EXPECT_EQ(c.exists(), 3u);
  EXPECT_EQ(folders.size(), 8u);
  if (folders.size() != 8) co_return;
  EXPECT_EQ(folders[0].name, "INBOX");
  EXPECT_EQ(folders[0].delimiter, "/");
  EXPECT_EQ(folders[0].special_use, "");
  EXPECT_TRUE(folders[0].selectable());
  EXPECT_EQ(folders[1].name, "Sent");
  EXPECT_EQ(folders[1].special_use, "\\Sent");
  EXPECT_EQ(folders[1].attributes, (std::vector<std::string>{"\\HasNoChildren", "\\Sent"}));
  EXPECT_EQ(folders[2].name, "Drafts");
  EXPECT_EQ(folders[2].special_use, "\\Drafts");
  EXPECT_EQ(folders[3].name, "Projects");
  EXPECT_FALSE(folders[3].selectable());
  EXPECT_EQ(folders[3].special_use, "");
  EXPECT_EQ(folders[4].name, "Projects/\xc3\x89t\xc3\xa9");  // "Projects/Été"
  EXPECT_EQ(folders[4].special_use, "\\Archive");
  EXPECT_TRUE(folders[4].selectable());
  EXPECT_EQ(folders[5].name, "Spam \"quoted\"");      // a literal
  EXPECT_EQ(folders[5].special_use, "\\Junk");        // canonical spelling
  EXPECT_EQ(folders[5].attributes.back(), "\\junk");  // as sent
  EXPECT_EQ(folders[6].name, "Deleted Messages");
  EXPECT_EQ(folders[6].delimiter, "");           // NIL
  EXPECT_EQ(folders[6].special_use, "\\Trash");  // the first role wins
  EXPECT_EQ(folders[7].name, "a\\b");
  EXPECT_EQ(folders[7].delimiter, ".");
}

TEST(ImapClientExt, ListSpecialUseDovecot) { expect_ok(run(dovecot_list(), list_dovecot)); }

TEST(ImapClientExt, ListSpecialUseByteByByte) {
  expect_ok(run(dovecot_list(), list_dovecot, -1, 1));
  expect_ok(run(dovecot_list(), list_dovecot, -1, 5));
}

TEST(ImapClientExt, ListPlainWhenNotOffered) {
  // SPECIAL-USE without LIST-EXTENDED, LIST-EXTENDED alone, neither: always the plain command.
  for (const char* caps : {"IMAP4rev1 SPECIAL-USE", "IMAP4rev1 LIST-EXTENDED", "IMAP4rev1"}) {
    Script script{
        S(std::string("* OK [CAPABILITY ") + caps + "] ready"),
        C("A1 LIST \"\" \"*\""),
        S("* LIST (\\HasNoChildren) \"/\" \"INBOX\""),
        S("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\""),
        S("A1 OK LIST completed"),
    };
    auto o = run(script, [](Client& c) -> net::awaitable<void> {
      co_await c.start(false);
      auto folders = co_await c.list_folders();
      EXPECT_EQ(folders.size(), 2u);
      if (folders.size() != 2) co_return;
      EXPECT_EQ(folders[1].name, "Sent Items");
      EXPECT_EQ(folders[1].special_use, "\\Sent");  // roles in plain LIST are still used
    });
    expect_ok(o);
    EXPECT_EQ(o.writes(), std::vector<std::string>{"A1 LIST \"\" \"*\"\r\n"}) << caps;
  }
}

// ---- STATUS ------------------------------------------------------------------------------------

TEST(ImapClientExt, StatusParses) {
  Script script{
      S(kDovecotGreeting),
      C("A1 STATUS \"Sent\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"),
      S("* STATUS \"Sent\" (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 12 UNSEEN 1)"),
      S("A1 OK Status completed (0.001 + 0.000 secs)."),
      C("A2 STATUS \"&AMk-t&AOk-\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"),
      S("* STATUS Other (MESSAGES 99)"),  // another folder (NOTIFY): not ours
      S("* STATUS &AMk-t&AOk- (UIDVALIDITY 1718035200 MESSAGES 0)"),
      S("A2 OK Status completed."),
  };
  expect_ok(run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    auto s = co_await c.status("Sent");
    EXPECT_EQ(s.messages, 3u);
    EXPECT_EQ(s.uidnext, 9u);
    EXPECT_EQ(s.uidvalidity, 12u);
    EXPECT_EQ(s.unseen, 1u);
    s = co_await c.status("\xc3\x89t\xc3\xa9");
    EXPECT_EQ(s.messages, 0u);
    EXPECT_EQ(s.uidvalidity, 1718035200u);
    EXPECT_EQ(s.uidnext, 0u);  // left out
    EXPECT_EQ(s.unseen, 0u);
  }));
}

TEST(ImapClientExt, StatusNoKeepsConnection) {
  Script script{
      S(kDovecotGreeting),
      C("A1 STATUS \"Missing\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"),
      S("A1 NO [NONEXISTENT] Mailbox doesn't exist: Missing (0.001 + 0.000 secs)."),
      C("A2 NOOP"),
      S("A2 OK NOOP completed."),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    try {
      co_await c.status("Missing");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::no);
      EXPECT_NE(std::string(e.what()).find("NONEXISTENT"), std::string::npos) << e.what();
    }
    co_await c.noop();
  });
  expect_ok(o);
}

// ---- APPEND ------------------------------------------------------------------------------------

const std::string kMessage = "Subject: hi\r\n\r\nbody\r\n";  // 21 bytes

TEST(ImapClientExt, AppendLiteralPlusOneWrite) {
  const std::string cmd = "A1 APPEND \"Sent\" (\\Seen) {21+}\r\n" + kMessage + "\r\n";
  Script script{
      S(kDovecotGreeting),
      {Step::client, cmd},
      S("A1 OK [APPENDUID 1718035200 42] Append completed (0.004 + 0.000 secs)."),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> flags{std::string("\\Seen")};
    auto r = co_await c.append("Sent", flags, kMessage);
    EXPECT_EQ(r.uidvalidity, 1718035200u);
    EXPECT_EQ(r.uid, 42u);
  });
  expect_ok(o);
  EXPECT_EQ(o.writes(), std::vector<std::string>{cmd});
}

TEST(ImapClientExt, AppendSynchronizingWaitsForContinuation) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 UIDPLUS] ready"),
      C("A1 APPEND \"Drafts\" (\\Draft $Label1) {21}"),
      S("+ OK"),
      {Step::client, kMessage + "\r\n"},
      S("A1 OK Append completed."),  // no APPENDUID
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> flags{std::string("\\Draft"), std::string("$Label1")};
    auto r = co_await c.append("Drafts", flags, kMessage);
    EXPECT_EQ(r.uidvalidity, 0u);
    EXPECT_EQ(r.uid, 0u);
  });
  expect_ok(o);
  EXPECT_EQ(o.flights(),
            (std::vector<std::string>{"A1 APPEND \"Drafts\" (\\Draft $Label1) {21}\r\n",
                                      kMessage + "\r\n"}));
}

TEST(ImapClientExt, AppendLiteralMinusOnlyForSmallMessages) {
  const std::string big(5000, 'x');
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 LITERAL-] ready"),
      {Step::client, "A1 APPEND \"INBOX\" () {21+}\r\n" + kMessage + "\r\n"},
      S("A1 OK Append completed."),
      C("A2 APPEND \"INBOX\" () {5000}"),
      S("+ go ahead"),
      {Step::client, big + "\r\n"},
      S("A2 OK Append completed."),
  };
  auto o = run(script, [&big](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> none;
    co_await c.append("INBOX", none, kMessage);
    co_await c.append("INBOX", none, big);
  });
  expect_ok(o);
  EXPECT_EQ(o.flights().size(), 3u);
}

TEST(ImapClientExt, AppendLargeMessageIsNotCopiedAndNotWaited) {
  std::string big(300 * 1024, 'a');
  for (std::size_t i = 0; i < big.size(); i += 77) big[i] = '\n';
  const std::string head = "A1 APPEND \"Archive\" () {" + std::to_string(big.size()) + "+}\r\n";
  Script script{
      S(kDovecotGreeting),
      {Step::client, head + big + "\r\n"},
      S("A1 OK [APPENDUID 7 1000] Append completed."),
  };
  auto o = run(script, [&big](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> none;
    auto r = co_await c.append("Archive", none, big);
    EXPECT_EQ(r.uidvalidity, 7u);
    EXPECT_EQ(r.uid, 1000u);
  });
  expect_ok(o);
  // One flight: head, the caller's bytes, CRLF; the message bytes are written as they are.
  EXPECT_EQ(o.flights(), std::vector<std::string>{head + big + "\r\n"});
  EXPECT_EQ(o.writes(), (std::vector<std::string>{head, big, "\r\n"}));
}

TEST(ImapClientExt, AppendTryCreate) {
  Script script{
      S(kDovecotGreeting),
      {Step::client, "A1 APPEND \"Nope\" () {21+}\r\n" + kMessage + "\r\n"},
      S("A1 NO [TRYCREATE] Mailbox doesn't exist: Nope (0.001 + 0.000 secs)."),
      C("A2 NOOP"),
      S("A2 OK NOOP completed."),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> none;
    try {
      co_await c.append("Nope", none, kMessage);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::no);
      std::string w = e.what();
      EXPECT_NE(w.find("[TRYCREATE]"), std::string::npos) << w;
      EXPECT_NE(w.find("Mailbox doesn't exist"), std::string::npos) << w;
    }
    co_await c.noop();  // still usable
  });
  expect_ok(o);
}

TEST(ImapClientExt, AppendNoBeforeContinuation) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1] ready"),
      C("A1 APPEND \"Nope\" () {21}"),
      S("A1 NO [TRYCREATE] Mailbox doesn't exist: Nope"),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> none;
    co_await c.append("Nope", none, kMessage);
  });
  expect_error(o, ErrorKind::no);
  EXPECT_TRUE(o.state->complete());
}

TEST(ImapClientExt, AppendRefusesFlagInjection) {
  auto o = run({S(kDovecotGreeting)}, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> flags{std::string("\\Seen) {0}\r\nA9 LOGOUT")};
    co_await c.append("INBOX", flags, kMessage);
  });
  expect_error(o, ErrorKind::bad);
  EXPECT_TRUE(o.writes().empty());
}

// ---- XOAUTH2 / OAUTHBEARER ---------------------------------------------------------------------

const core::Secret kToken{"tok"};
const core::Secret kLongToken{"ya29.a0AfH6SMsecretsecret"};
// {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"} (Gmail's refusal)
const std::string kGmailError =
    "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ"
    "==";

TEST(ImapClientExt, XOAuth2SaslIr) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN] Gimap ready"),
      // base64("user=u\x01" "auth=Bearer tok\x01\x01")
      C("A1 AUTHENTICATE XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHRvawEB"),
      S("* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS "
        "COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS "
        "LITERAL- SPECIAL-USE APPENDLIMIT=35651584"),
      S("A1 OK u authenticated (Success)"),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_xoauth2("u", kToken);
    EXPECT_TRUE(c.has_capability("MOVE"));
    EXPECT_FALSE(c.has_capability("AUTH=XOAUTH2"));
  });
  expect_ok(o);
}

TEST(ImapClientExt, XOAuth2WithoutSaslIrRefreshesCapabilities) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready"),
      C("A1 AUTHENTICATE XOAUTH2"),
      S("+ "),
      C("dXNlcj11AWF1dGg9QmVhcmVyIHRvawEB"),
      S("A1 OK Success"),
      C("A2 CAPABILITY"),
      S("* CAPABILITY IMAP4rev1 IDLE UIDPLUS"),
      S("A2 OK Capability completed."),
  };
  expect_ok(run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_xoauth2("u", kToken);
    EXPECT_TRUE(c.has_capability("IDLE"));
  }));
}

TEST(ImapClientExt, XOAuth2Refused) {
  std::string initial =
      "user=alice@example.com\x01"
      "auth=Bearer " +
      kLongToken.reveal() + "\x01\x01";
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] Gimap ready"),
      C("A1 AUTHENTICATE XOAUTH2 " + base64_encode(initial)),
      S("+ " + kGmailError),
      C(""),  // the empty response that ends the exchange
      S("A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"),
      C("A2 NOOP"),
      S("A2 OK Success"),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    try {
      co_await c.login_xoauth2("alice@example.com", kLongToken);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::auth);
      std::string w = e.what();
      EXPECT_NE(w.find("400"), std::string::npos) << w;
      EXPECT_NE(w.find("Invalid credentials"), std::string::npos) << w;
      EXPECT_EQ(w.find("ya29"), std::string::npos) << w;
      EXPECT_EQ(w.find("eyJ"), std::string::npos) << w;
    }
    co_await c.noop();  // a refusal does not break the connection
  });
  expect_ok(o);
}

TEST(ImapClientExt, OAuthBearerSaslIr) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER AUTH=XOAUTH2] ready"),
      // base64("n,a=u,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01")
      C("A1 AUTHENTICATE OAUTHBEARER "
        "bixhPXUsAWhvc3Q9aW1hcC5leGFtcGxlLmNvbQFwb3J0PTk5MwFhdXRoPUJlYXJlciB0b2sBAQ=="),
      S("A1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in"),
  };
  expect_ok(run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_oauthbearer("u", "imap.example.com", 993, kToken);
    EXPECT_TRUE(c.has_capability("MOVE"));
  }));
}

TEST(ImapClientExt, OAuthBearerEscapesUserName) {
  std::string initial =
      "n,a=a=3Db=2Cc,\x01host=h\x01port=143\x01"
      "auth=Bearer tok\x01\x01";
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] ready"),
      C("A1 AUTHENTICATE OAUTHBEARER " + base64_encode(initial)),
      S("A1 OK [CAPABILITY IMAP4rev1] Logged in"),
  };
  expect_ok(run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_oauthbearer("a=b,c", "h", 143, kToken);
  }));
}

TEST(ImapClientExt, OAuthBearerRefusedWithoutSaslIr) {
  std::string initial =
      "n,a=alice,\x01host=imap.example.com\x01port=993\x01"
      "auth=Bearer " +
      kLongToken.reveal() + "\x01\x01";
  // {"status":"invalid_token","scope":"example_scope","openid-configuration":"https://..."}
  const std::string error_json =
      "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRp"
      "b24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=";
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER] ready"),
      C("A1 AUTHENTICATE OAUTHBEARER"),
      S("+ "),
      C(base64_encode(initial)),
      S("+ " + error_json),
      C("AQ=="),  // RFC 7628 §3.2.3: a lone ^A
      S("A1 NO [AUTHENTICATIONFAILED] Authentication failed."),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_oauthbearer("alice", "imap.example.com", 993, kLongToken);
  });
  expect_error(o, ErrorKind::auth);
  EXPECT_TRUE(o.state->complete());
  EXPECT_NE(what(o).find("invalid_token"), std::string::npos) << what(o);
  EXPECT_EQ(what(o).find("ya29"), std::string::npos) << what(o);
}

TEST(ImapClientExt, OAuthRefusedWithoutJsonStatus) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready"),
      C("A1 AUTHENTICATE XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHRvawEB"),
      S("A1 NO [AUTHENTICATIONFAILED] Authentication failed."),  // no challenge at all
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_xoauth2("u", kToken);
  });
  expect_error(o, ErrorKind::auth);
  EXPECT_NE(what(o).find("Authentication failed."), std::string::npos) << what(o);
  EXPECT_EQ(what(o).find("status"), std::string::npos) << what(o);
}

TEST(ImapClientExt, OAuthSecondChallengeIsProtocolError) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready"),
      C("A1 AUTHENTICATE XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHRvawEB"),
      S("+ " + kGmailError),
      C(""),
      S("+ " + kGmailError),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    co_await c.login_xoauth2("u", kToken);
  });
  expect_error(o, ErrorKind::protocol);
}

TEST(ImapClientExt, OAuthMechanismNotOffered) {
  for (int mech = 0; mech < 2; ++mech) {
    auto o = run({S("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready")},
                 [mech](Client& c) -> net::awaitable<void> {
                   co_await c.start(false);
                   if (mech == 0) {
                     co_await c.login_xoauth2("u", kToken);
                   } else {
                     co_await c.login_oauthbearer("u", "h", 993, kToken);
                   }
                 });
    expect_error(o, ErrorKind::auth);
    EXPECT_NE(what(o).find(mech == 0 ? "AUTH=XOAUTH2" : "AUTH=OAUTHBEARER"), std::string::npos)
        << what(o);
    EXPECT_NE(what(o).find("does not offer"), std::string::npos) << what(o);
    EXPECT_TRUE(o.writes().empty());
  }
}

// ---- Failure injection across all the new commands ---------------------------------------------

Script oauth_list_status_append() {
  return {
      S("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready"),
      C("A1 AUTHENTICATE XOAUTH2"),
      S("+ "),
      C("dXNlcj11AWF1dGg9QmVhcmVyIHRvawEB"),
      S("A1 OK [CAPABILITY IMAP4rev1 UIDPLUS SPECIAL-USE LIST-EXTENDED] Success"),
      C("A2 LIST \"\" \"*\" RETURN (SPECIAL-USE)"),
      {Step::server, "* LIST (\\Sent) NIL {4}\r\nSent\r\n"},
      S("A2 OK done"),
      C("A3 STATUS \"Sent\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"),
      S("* STATUS Sent (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 3 UNSEEN 0)"),
      S("A3 OK done"),
      C("A4 APPEND \"Sent\" (\\Seen) {21}"),
      S("+ OK"),
      {Step::client, kMessage + "\r\n"},
      S("A4 OK [APPENDUID 3 2] done"),
  };
}

net::awaitable<void> oauth_list_status_append_body(Client& c) {
  co_await c.start(false);
  co_await c.login_xoauth2("u", kToken);
  auto folders = co_await c.list_folders();
  EXPECT_EQ(folders.size(), 1u);
  auto s = co_await c.status("Sent");
  EXPECT_EQ(s.uidvalidity, 3u);
  std::vector<std::string> flags{std::string("\\Seen")};
  auto r = co_await c.append("Sent", flags, kMessage);
  EXPECT_EQ(r.uid, 2u);
}

TEST(ImapClientExt, FailureAtEveryStep) {
  auto clean = run(oauth_list_status_append(), oauth_list_status_append_body);
  expect_ok(clean);
  int ops = clean.state->ops;
  ASSERT_GT(ops, 10);
  for (int n = 1; n <= ops; ++n) {
    auto o = run(oauth_list_status_append(), oauth_list_status_append_body, n);
    ASSERT_TRUE(o.state->injected) << n;
    expect_error(o, ErrorKind::io);
  }
}

// ---- base64 ------------------------------------------------------------------------------------

TEST(Base64, DecodeRoundTrip) {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("user=u\x01"
                                    "auth=Bearer tok\x01\x01"),
                        std::string("\x00\xff\x10", 3)}) {
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d) << s;
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(base64_decode("AQ=="), std::string("\x01"));
  EXPECT_FALSE(base64_decode("AQ="));   // length
  EXPECT_FALSE(base64_decode("A==="));  // too much padding
  EXPECT_FALSE(base64_decode("AR=="));  // stray bits
  EXPECT_FALSE(base64_decode("QU=B"));  // padding inside
  EXPECT_FALSE(base64_decode("QU,B"));  // modified-UTF-7 alphabet
  EXPECT_FALSE(base64_decode("QUJD\r\n"));
}

// ---- NOTIFY (RFC 5465) -------------------------------------------------------------------------

TEST(ImapClientExt, NotifySetThenIdleEndsOnUnsolicitedStatus) {
  Script script{
      S(kDovecotGreeting),
      C("A1 NOTIFY SET (mailboxes (\"Archive\" \"&AMk-t&AOk-\") (MessageNew MessageExpunge))"),
      S("A1 OK NOTIFY completed."),
      C("A2 IDLE"),
      S("+ idling"),
      S("* STATUS &AMk-t&AOk- (MESSAGES 4 UIDNEXT 12)"),
      C("DONE"),
      S("A2 OK Idle completed."),
      C("A3 STATUS \"Archive\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"),
      S("* STATUS Archive (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7 UNSEEN 1)"),
      S("A3 OK Status completed."),
  };
  expect_ok(run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> folders{"Archive", "\xc3\x89t\xc3\xa9"};
    co_await c.notify_set(folders);
    auto r = co_await c.idle(std::chrono::seconds(30));
    EXPECT_FALSE(r.new_mail);
    EXPECT_EQ(r.notified, std::vector<std::string>{"\xc3\x89t\xc3\xa9"});
    auto s = co_await c.status("Archive");
    EXPECT_EQ(s.uidnext, 2u);
    // The answer to our own STATUS is not a notification.
    EXPECT_TRUE(c.take_notified().empty());
  }));
}

TEST(ImapClientExt, NotifyNotOffered) {
  Script script{
      S("* OK [CAPABILITY IMAP4rev1 IDLE] ready."),
  };
  auto o = run(script, [](Client& c) -> net::awaitable<void> {
    co_await c.start(false);
    std::vector<std::string> folders{"Archive"};
    try {
      co_await c.notify_set(folders);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::no);
    }
  });
  expect_ok(o);
}

}  // namespace
}  // namespace el::imap
