// Validation of mailbox bodies: every bad input answered with the right code and field through
// handle() without reaching the service, and the typed config built from good input.
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>
#include <functional>

#include "test_util.hpp"

namespace el::http {
namespace {

namespace json = boost::json;
using testing::expect_error;
using testing::FakeApi;
using testing::make_request;
using testing::run;

json::object base() {
  return json::parse(R"({"email":"a@example.com",
    "imap":{"host":"imap.example.com","username":"a","password":"hunter2"}})")
      .as_object();
}

json::object& imap(json::object& o) { return o["imap"].as_object(); }

struct BadCase {
  std::string name;
  std::function<void(json::object&)> edit;  // applied to base(); unused when raw is set
  std::string code;
  std::string field;
  std::string raw = {};
};

std::vector<BadCase> bad_cases() {
  std::vector<BadCase> c;
  auto add = [&](std::string name, std::function<void(json::object&)> edit, std::string code,
                 std::string field) {
    c.push_back({name, edit, code, field});
  };
  auto raw = [&](std::string name, std::string body, std::string code) {
    c.push_back({name, nullptr, code, "", body});
  };
  raw("truncated", R"({"email":)", "invalid_json");
  raw("trailing comma", R"({"email":"a@b",})", "invalid_json");
  raw("comment", R"({/*x*/})", "invalid_json");
  raw("bad utf8", "{\"email\":\"a\xff@b\"}", "invalid_json");
  raw("empty body", "", "invalid_json");
  raw("array", "[]", "invalid_type");
  raw("string", R"("x")", "invalid_type");
  raw("number", "1", "invalid_type");

  add(
      "missing email", [](auto& o) { o.erase("email"); }, "missing_field", "email");
  add(
      "null email", [](auto& o) { o["email"] = nullptr; }, "missing_field", "email");
  add(
      "missing imap", [](auto& o) { o.erase("imap"); }, "missing_field", "imap");
  add(
      "missing host", [](auto& o) { imap(o).erase("host"); }, "missing_field", "imap.host");
  add(
      "missing username", [](auto& o) { imap(o).erase("username"); }, "missing_field",
      "imap.username");
  add(
      "missing password", [](auto& o) { imap(o).erase("password"); }, "missing_field",
      "imap.password");
  add(
      "missing webhook url",
      [](auto& o) {
        o["webhook"] = json::object{{"secret", "s"}};
      },
      "missing_field", "webhook.url");

  add(
      "email number", [](auto& o) { o["email"] = 5; }, "invalid_type", "email");
  add(
      "imap string", [](auto& o) { o["imap"] = "x"; }, "invalid_type", "imap");
  add(
      "host number", [](auto& o) { imap(o)["host"] = 1; }, "invalid_type", "imap.host");
  add(
      "port string", [](auto& o) { imap(o)["port"] = "993"; }, "invalid_type", "imap.port");
  add(
      "port fraction", [](auto& o) { imap(o)["port"] = 993.5; }, "invalid_type", "imap.port");
  add(
      "port bool", [](auto& o) { imap(o)["port"] = true; }, "invalid_type", "imap.port");
  add(
      "security number", [](auto& o) { imap(o)["security"] = 1; }, "invalid_type", "imap.security");
  add(
      "password number", [](auto& o) { imap(o)["password"] = 1; }, "invalid_type", "imap.password");
  add(
      "tls_insecure string", [](auto& o) { imap(o)["tls_insecure"] = "yes"; }, "invalid_type",
      "imap.tls_insecure");
  add(
      "tls_ca_file number", [](auto& o) { imap(o)["tls_ca_file"] = 1; }, "invalid_type",
      "imap.tls_ca_file");
  add(
      "folders string", [](auto& o) { o["folders"] = "INBOX"; }, "invalid_type", "folders");
  add(
      "folders of numbers", [](auto& o) { o["folders"] = json::array{1}; }, "invalid_type",
      "folders");
  add(
      "since number", [](auto& o) { o["since"] = 0; }, "invalid_type", "since");
  add(
      "webhook string", [](auto& o) { o["webhook"] = "http://x"; }, "invalid_type", "webhook");
  add(
      "webhook secret number",
      [](auto& o) {
        o["webhook"] = json::object{{"url", "http://h/"}, {"secret", 1}};
      },
      "invalid_type", "webhook.secret");
  add(
      "id number", [](auto& o) { o["id"] = 7; }, "invalid_type", "id");

  add(
      "port zero", [](auto& o) { imap(o)["port"] = 0; }, "invalid_value", "imap.port");
  add(
      "port negative", [](auto& o) { imap(o)["port"] = -1; }, "invalid_value", "imap.port");
  add(
      "port too big", [](auto& o) { imap(o)["port"] = 65536; }, "invalid_value", "imap.port");
  add(
      "port huge", [](auto& o) { imap(o)["port"] = std::uint64_t{1} << 63; }, "invalid_value",
      "imap.port");
  add(
      "security ssl", [](auto& o) { imap(o)["security"] = "ssl"; }, "invalid_value",
      "imap.security");
  add(
      "security case", [](auto& o) { imap(o)["security"] = "TLS"; }, "invalid_value",
      "imap.security");
  add(
      "email no at", [](auto& o) { o["email"] = "user.example.com"; }, "invalid_value", "email");
  add(
      "email two ats", [](auto& o) { o["email"] = "a@b@c"; }, "invalid_value", "email");
  add(
      "email empty local", [](auto& o) { o["email"] = "@b"; }, "invalid_value", "email");
  add(
      "email empty domain", [](auto& o) { o["email"] = "a@"; }, "invalid_value", "email");
  add(
      "email space", [](auto& o) { o["email"] = "a b@c"; }, "invalid_value", "email");
  add(
      "host empty", [](auto& o) { imap(o)["host"] = ""; }, "invalid_value", "imap.host");
  add(
      "host with CRLF", [](auto& o) { imap(o)["host"] = "h\r\nx"; }, "invalid_value", "imap.host");
  add(
      "username empty", [](auto& o) { imap(o)["username"] = ""; }, "invalid_value",
      "imap.username");
  add(
      "password empty", [](auto& o) { imap(o)["password"] = ""; }, "invalid_value",
      "imap.password");
  add(
      "password with LF", [](auto& o) { imap(o)["password"] = "hunter2\n"; }, "invalid_value",
      "imap.password");
  add(
      "folders empty", [](auto& o) { o["folders"] = json::array{}; }, "invalid_value", "folders");
  add(
      "folder empty name",
      [](auto& o) {
        o["folders"] = json::array{"INBOX", ""};
      },
      "invalid_value", "folders");
  add(
      "folder duplicate",
      [](auto& o) {
        o["folders"] = json::array{"Sent", "Sent"};
      },
      "invalid_value", "folders");
  add(
      "inbox duplicate any case",
      [](auto& o) {
        o["folders"] = json::array{"INBOX", "inbox"};
      },
      "invalid_value", "folders");
  add(
      "51 folders",
      [](auto& o) {
        json::array a;
        for (int i = 0; i < 51; ++i) a.emplace_back("f" + std::to_string(i));
        o["folders"] = a;
      },
      "invalid_value", "folders");
  add(
      "since words", [](auto& o) { o["since"] = "yesterday"; }, "invalid_value", "since");
  add(
      "since date only", [](auto& o) { o["since"] = "2024-01-01"; }, "invalid_value", "since");
  add(
      "since no zone", [](auto& o) { o["since"] = "2024-01-01T00:00:00"; }, "invalid_value",
      "since");
  for (const char* url : {"ftp://h/x", "/hook", "http://", "not a url", "mailto:a@b", "h:80"}) {
    add(
        std::string("webhook url ") + url,
        [url](auto& o) {
          o["webhook"] = json::object{{"url", url}};
        },
        "invalid_value", "webhook.url");
  }
  add(
      "id with space", [](auto& o) { o["id"] = "a b"; }, "invalid_value", "id");
  add(
      "id empty", [](auto& o) { o["id"] = ""; }, "invalid_value", "id");
  add(
      "id dotdot", [](auto& o) { o["id"] = ".."; }, "invalid_value", "id");
  add(
      "id slash", [](auto& o) { o["id"] = "a/b"; }, "invalid_value", "id");
  add(
      "id 129", [](auto& o) { o["id"] = std::string(129, 'a'); }, "invalid_value", "id");

  add(
      "unknown top", [](auto& o) { o["colour"] = "red"; }, "unknown_field", "colour");
  add(
      "unknown imap", [](auto& o) { imap(o)["passwrd"] = "x"; }, "unknown_field", "imap.passwrd");
  add(
      "unknown webhook",
      [](auto& o) {
        o["webhook"] = json::object{{"url", "http://h/"}, {"sekret", "s"}};
      },
      "unknown_field", "webhook.sekret");
  // smtp, oauth2, folders "all", sent_folder
  add(
      "smtp not object", [](auto& o) { o["smtp"] = "smtp.example.com"; }, "invalid_type", "smtp");
  add(
      "smtp without host",
      [](auto& o) {
        o["smtp"] = json::object{{"port", 587}};
      },
      "missing_field", "smtp.host");
  add(
      "smtp bad security",
      [](auto& o) {
        o["smtp"] = json::object{{"host", "h"}, {"security", "ssl"}};
      },
      "invalid_value", "smtp.security");
  add(
      "smtp bad port",
      [](auto& o) {
        o["smtp"] = json::object{{"host", "h"}, {"port", 0}};
      },
      "invalid_value", "smtp.port");
  add(
      "smtp unknown key",
      [](auto& o) {
        o["smtp"] = json::object{{"host", "h"}, {"x", 1}};
      },
      "unknown_field", "smtp.x");
  add(
      "smtp password with CRLF",
      [](auto& o) {
        o["smtp"] = json::object{{"host", "h"}, {"password", "a\r\nb"}};
      },
      "invalid_value", "smtp.password");
  add(
      "oauth2 not object", [](auto& o) { o["oauth2"] = "tok"; }, "invalid_type", "oauth2");
  add(
      "oauth2 empty", [](auto& o) { o["oauth2"] = json::object{}; }, "missing_field",
      "oauth2.access_token");
  add(
      "oauth2 token_url without refresh token",
      [](auto& o) {
        o["oauth2"] = json::object{{"access_token", "t"}, {"token_url", "https://x/token"}};
      },
      "missing_field", "oauth2.refresh_token");
  add(
      "oauth2 token_url and refresh_url",
      [](auto& o) {
        o["oauth2"] = json::object{{"access_token", "t"},
                                   {"refresh_token", "r"},
                                   {"token_url", "https://x/token"},
                                   {"refresh_url", "https://app/token"}};
      },
      "invalid_value", "oauth2.refresh_url");
  add(
      "oauth2 bad url",
      [](auto& o) {
        o["oauth2"] = json::object{{"access_token", "t"}, {"refresh_url", "ftp://x"}};
      },
      "invalid_value", "oauth2.refresh_url");
  add(
      "oauth2 bad mechanism",
      [](auto& o) {
        o["oauth2"] = json::object{{"access_token", "t"}, {"mechanism", "plain"}};
      },
      "invalid_value", "oauth2.mechanism");
  add(
      "oauth2 bad expires_at",
      [](auto& o) {
        o["oauth2"] = json::object{{"access_token", "t"}, {"expires_at", "soon"}};
      },
      "invalid_value", "oauth2.expires_at");
  add(
      "folders other string", [](auto& o) { o["folders"] = "some"; }, "invalid_type", "folders");
  add(
      "sent_folder empty", [](auto& o) { o["sent_folder"] = ""; }, "invalid_value", "sent_folder");
  return c;
}

TEST(MailboxBody, EveryBadInputIsRejectedBeforeTheService) {
  for (const auto& bc : bad_cases()) {
    SCOPED_TRACE(bc.name);
    std::string body = bc.raw;
    if (bc.edit) {
      auto o = base();
      bc.edit(o);
      body = json::serialize(o);
    }
    for (auto [method, target] : {std::pair{bhttp::verb::post, "/v1/mailboxes"},
                                  std::pair{bhttp::verb::put, "/v1/mailboxes/mb1"}}) {
      // PUT may leave the password out; every other case applies to both methods.
      const bool create_only = bc.name == "missing password" || bc.name == "oauth2 empty" ||
                               bc.name == "oauth2 token_url without refresh token";
      if (method == bhttp::verb::put && create_only) continue;
      FakeApi api;
      Request req = make_request(method, target, body);
      if (body.empty()) req.erase(bhttp::field::content_type);
      auto res = run(req, api);
      expect_error(res, 400, bc.code, bc.field);
      EXPECT_TRUE(api.calls().empty());
      EXPECT_EQ(res.body().find("hunter2"), std::string::npos) << "password echoed";
    }
  }
}

TEST(MailboxBody, LongUnknownKeyIsTruncatedInTheField) {
  auto o = base();
  o[std::string(5000, 'k')] = 1;
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ApiError>(parsed));
  auto res = error_response(std::get<ApiError>(parsed), 11, true);
  EXPECT_LT(res.body().size(), 400u);
}

TEST(MailboxBody, DefaultsApply) {
  auto parsed = parse_mailbox_body(json::serialize(base()), BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& p = std::get<ParsedMailbox>(parsed);
  EXPECT_EQ(p.config.id, "");
  EXPECT_EQ(p.config.email, "a@example.com");
  EXPECT_EQ(p.config.imap.host, "imap.example.com");
  EXPECT_EQ(p.config.imap.port, 993);
  EXPECT_EQ(p.config.imap.security, core::Security::tls);
  EXPECT_EQ(p.config.imap.username, "a");
  EXPECT_EQ(p.config.imap.password.reveal(), "hunter2");
  EXPECT_EQ(p.config.imap.tls.ca_file, "");
  EXPECT_FALSE(p.config.imap.tls.insecure);
  EXPECT_EQ(p.config.folders, std::vector<std::string>{"INBOX"});
  EXPECT_FALSE(p.config.since);
  EXPECT_FALSE(p.config.webhook);
  EXPECT_FALSE(p.mask.keep_password);
  EXPECT_FALSE(p.mask.keep_webhook_secret);
}

TEST(MailboxBody, DefaultPortFollowsSecurity) {
  for (auto [sec, port] :
       {std::pair{"tls", 993}, std::pair{"starttls", 143}, std::pair{"none", 143}}) {
    auto o = base();
    imap(o)["security"] = sec;
    auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
    ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed)) << sec;
    EXPECT_EQ(std::get<ParsedMailbox>(parsed).config.imap.port, port) << sec;
  }
  auto o = base();
  imap(o)["security"] = "starttls";
  imap(o)["port"] = 1143;
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  EXPECT_EQ(std::get<ParsedMailbox>(parsed).config.imap.port, 1143);
}

TEST(MailboxBody, EveryFieldIsRead) {
  const char* body = R"({"id":"acme.sales-1_x","email":"sales@acme.test",
    "imap":{"host":"::1","port":65535,"security":"none","username":"u","password":"p w",
            "tls_ca_file":"/etc/ca.pem","tls_insecure":true},
    "folders":["INBOX","Archive/2024","Ünïcödé"],"since":"2024-03-01T10:00:00+01:00",
    "webhook":{"url":"https://hooks.acme.test:8443/in?x=1","secret":"whsec"}})";
  auto parsed = parse_mailbox_body(body, BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& c = std::get<ParsedMailbox>(parsed).config;
  EXPECT_EQ(c.id, "acme.sales-1_x");
  EXPECT_EQ(c.imap.host, "::1");
  EXPECT_EQ(c.imap.port, 65535);
  EXPECT_EQ(c.imap.security, core::Security::none);
  EXPECT_EQ(c.imap.password.reveal(), "p w");
  EXPECT_EQ(c.imap.tls.ca_file, "/etc/ca.pem");
  EXPECT_TRUE(c.imap.tls.insecure);
  EXPECT_EQ(c.folders, (std::vector<std::string>{"INBOX", "Archive/2024", "Ünïcödé"}));
  ASSERT_TRUE(c.since);
  EXPECT_EQ(*c.since, *core::parse_rfc3339("2024-03-01T09:00:00Z"));
  ASSERT_TRUE(c.webhook);
  EXPECT_EQ(c.webhook->url, "https://hooks.acme.test:8443/in?x=1");
  EXPECT_EQ(c.webhook->secret.reveal(), "whsec");
}

TEST(MailboxBody, NullMeansAbsent) {
  auto o = base();
  o["id"] = nullptr;
  o["folders"] = nullptr;
  o["since"] = nullptr;
  o["webhook"] = nullptr;
  imap(o)["port"] = nullptr;
  imap(o)["security"] = nullptr;
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& c = std::get<ParsedMailbox>(parsed).config;
  EXPECT_EQ(c.imap.port, 993);
  EXPECT_EQ(c.folders, std::vector<std::string>{"INBOX"});
  EXPECT_FALSE(c.webhook);
}

TEST(MailboxBody, UpdateMaskKeepsWhatWasLeftOut) {
  auto o = base();
  imap(o).erase("password");
  o["webhook"] = json::object{{"url", "http://127.0.0.1:9000/hook"}};
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::update);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& p = std::get<ParsedMailbox>(parsed);
  EXPECT_TRUE(p.mask.keep_password);
  EXPECT_TRUE(p.mask.keep_webhook_secret);
  EXPECT_TRUE(p.config.imap.password.empty());

  o["webhook"].as_object()["secret"] = "";  // an explicit empty secret replaces the stored one
  imap(o)["password"] = "new";
  parsed = parse_mailbox_body(json::serialize(o), BodyMode::update);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  EXPECT_FALSE(std::get<ParsedMailbox>(parsed).mask.keep_password);
  EXPECT_FALSE(std::get<ParsedMailbox>(parsed).mask.keep_webhook_secret);
}

TEST(MailboxBody, CreateWithoutSecretSignsWithEmptyKey) {
  auto o = base();
  o["webhook"] = json::object{{"url", "http://h/"}};
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& p = std::get<ParsedMailbox>(parsed);
  EXPECT_FALSE(p.mask.keep_webhook_secret);
  EXPECT_TRUE(p.config.webhook->secret.empty());
}

TEST(MailboxBody, SmtpOauth2AndAllFolders) {
  auto o = base();
  imap(o).erase("password");
  o["folders"] = "all";
  o["sent_folder"] = "Gesendet";
  o["smtp"] = json::object{{"host", "smtp.example.com"}, {"security", "starttls"}};
  o["oauth2"] = json::object{{"access_token", "at"},
                             {"refresh_token", "rt"},
                             {"token_url", "https://login.example.com/token"},
                             {"client_id", "cid"},
                             {"client_secret", "cs"},
                             {"expires_at", "2026-12-06T10:00:00Z"},
                             {"mechanism", "oauthbearer"}};
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& c = std::get<ParsedMailbox>(parsed).config;
  EXPECT_TRUE(c.all_folders);
  EXPECT_EQ(c.folders, std::vector<std::string>{"INBOX"});
  EXPECT_EQ(c.sent_folder, "Gesendet");
  EXPECT_TRUE(c.imap.password.empty());  // the token signs in
  ASSERT_TRUE(c.smtp);
  EXPECT_EQ(c.smtp->effective_port(), 587);
  EXPECT_EQ(c.smtp->username, "");  // the IMAP one is used
  EXPECT_TRUE(c.smtp->save_to_sent);
  ASSERT_TRUE(c.oauth2);
  EXPECT_EQ(c.oauth2->access_token.reveal(), "at");
  EXPECT_EQ(c.oauth2->refresh_token.reveal(), "rt");
  EXPECT_EQ(c.oauth2->client_secret.reveal(), "cs");
  EXPECT_EQ(c.oauth2->mechanism, "oauthbearer");
  EXPECT_TRUE(c.oauth2->can_refresh());
  EXPECT_EQ(core::format_rfc3339(*c.oauth2->expires_at), "2026-12-06T10:00:00.000Z");
}

TEST(MailboxBody, PasswordRequiredWithoutOauth2) {
  auto o = base();
  imap(o).erase("password");
  FakeApi api;
  expect_error(run(make_request(bhttp::verb::post, "/v1/mailboxes", json::serialize(o)), api), 400,
               "missing_field", "imap.password");
  EXPECT_TRUE(api.calls().empty());
}

TEST(MailboxBody, GmailAndMicrosoftSaveSentThemselves) {
  for (const char* host : {"smtp.gmail.com", "smtp.office365.com", "SMTP-MAIL.OUTLOOK.COM"}) {
    auto o = base();
    o["smtp"] = json::object{{"host", host}};
    auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
    ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed)) << host;
    EXPECT_FALSE(std::get<ParsedMailbox>(parsed).config.smtp->save_to_sent) << host;
  }
  auto o = base();
  o["smtp"] = json::object{{"host", "smtp.gmail.com"}, {"save_to_sent", true}};
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::create);
  EXPECT_TRUE(std::get<ParsedMailbox>(parsed).config.smtp->save_to_sent);
}

TEST(MailboxBody, UpdateKeepsSmtpPasswordAndTokens) {
  auto o = base();
  o["smtp"] = json::object{{"host", "h"}};
  o["oauth2"] = json::object{{"refresh_url", "https://app.example.com/token"}};
  auto parsed = parse_mailbox_body(json::serialize(o), BodyMode::update);
  ASSERT_TRUE(std::holds_alternative<ParsedMailbox>(parsed));
  const auto& m = std::get<ParsedMailbox>(parsed).mask;
  EXPECT_TRUE(m.keep_smtp_password);
  EXPECT_TRUE(m.keep_oauth2_tokens);
}

}  // namespace
}  // namespace el::http
