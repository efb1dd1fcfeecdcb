// record_json: sends (binary messages included) and mailbox settings with SMTP and OAuth2 parts
// through JSON and back, in clear and sealed.
#include "store/record_json.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>

using namespace el;
namespace json = boost::json;

namespace {

store::SendRecord full_send() {
  store::SendRecord s;
  s.id = "snd-1";
  s.mailbox_id = "mb-1";
  s.idempotency_key = "order \"7\" / ünïcode";
  s.request_hash = std::string(64, 'a');
  s.state = "retrying";
  s.outcome = "sent";
  s.message_id = "abc@mb-1.example.test";
  s.created_at = "2026-03-01T10:00:00.000Z";
  s.updated_at = "2026-03-01T10:01:00.000Z";
  s.next_attempt_at = "2026-03-01T10:05:00.000Z";
  s.attempts = 4294967295u;
  s.from = "mb-1@example.test";
  s.recipients = {"bob@example.test", "\"odd name\"@example.test"};
  s.queue_id = "4Q2x";
  s.reply_code = 451;
  s.reply_text = "451 4.3.0 try again\r\n";
  s.error_code = "smtp_temporary";
  s.error_message = "try again";
  s.sent_folder = "appended:Sent";
  return s;
}

void expect_same(const store::SendRecord& a, const store::SendRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.mailbox_id, b.mailbox_id);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.request_hash, b.request_hash);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.outcome, b.outcome);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.next_attempt_at, b.next_attempt_at);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.recipients, b.recipients);
  EXPECT_EQ(a.raw, b.raw);
  EXPECT_EQ(a.queue_id, b.queue_id);
  EXPECT_EQ(a.reply_code, b.reply_code);
  EXPECT_EQ(a.reply_text, b.reply_text);
  EXPECT_EQ(a.error_code, b.error_code);
  EXPECT_EQ(a.error_message, b.error_message);
  EXPECT_EQ(a.sent_folder, b.sent_folder);
}

core::MailboxConfig full_config() {
  core::MailboxConfig c;
  c.id = "mb-1";
  c.email = "mb-1@example.test";
  c.imap.host = "imap.example.test";
  c.imap.port = 993;
  c.imap.security = core::Security::tls;
  c.imap.username = "imap-user";
  c.imap.password = core::Secret("imap-pw");
  c.folders = {"INBOX", "Projects/2026"};
  c.all_folders = true;
  c.sent_folder = "Gesendet";
  c.since = *core::parse_rfc3339("2025-12-01T00:00:00.000Z");
  c.webhook = core::WebhookTarget{"https://app.example.test/hook", core::Secret("hook-secret")};
  core::SmtpSettings s;
  s.host = "smtp.example.test";
  s.port = 2525;
  s.security = core::Security::none;
  s.username = "smtp-user";
  s.password = core::Secret("smtp-pw");
  s.tls.ca_file = "/etc/smtp-ca.pem";
  s.tls.insecure = true;
  s.save_to_sent = false;
  c.smtp = s;
  core::OAuth2Settings a;
  a.access_token = core::Secret("access-token");
  a.refresh_token = core::Secret("refresh-token");
  a.expires_at = *core::parse_rfc3339("2026-03-01T11:22:33.456Z");
  a.token_url = "https://login.example.test/token";
  a.client_id = "client-id";
  a.client_secret = core::Secret("client-secret");
  a.refresh_url = "https://app.example.test/refresh";
  a.mechanism = "oauthbearer";
  c.oauth2 = a;
  return c;
}

void expect_same(const core::MailboxConfig& a, const core::MailboxConfig& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.email, b.email);
  EXPECT_EQ(a.imap.host, b.imap.host);
  EXPECT_EQ(a.imap.port, b.imap.port);
  EXPECT_EQ(a.imap.security, b.imap.security);
  EXPECT_EQ(a.imap.username, b.imap.username);
  EXPECT_EQ(a.imap.password.reveal(), b.imap.password.reveal());
  EXPECT_EQ(a.folders, b.folders);
  EXPECT_EQ(a.all_folders, b.all_folders);
  EXPECT_EQ(a.sent_folder, b.sent_folder);
  EXPECT_EQ(a.since, b.since);
  ASSERT_EQ(a.webhook.has_value(), b.webhook.has_value());
  if (a.webhook) {
    EXPECT_EQ(a.webhook->url, b.webhook->url);
    EXPECT_EQ(a.webhook->secret.reveal(), b.webhook->secret.reveal());
  }
  ASSERT_EQ(a.smtp.has_value(), b.smtp.has_value());
  if (a.smtp) {
    EXPECT_EQ(a.smtp->host, b.smtp->host);
    EXPECT_EQ(a.smtp->port, b.smtp->port);
    EXPECT_EQ(a.smtp->security, b.smtp->security);
    EXPECT_EQ(a.smtp->username, b.smtp->username);
    EXPECT_EQ(a.smtp->password.reveal(), b.smtp->password.reveal());
    EXPECT_EQ(a.smtp->tls.ca_file, b.smtp->tls.ca_file);
    EXPECT_EQ(a.smtp->tls.insecure, b.smtp->tls.insecure);
    EXPECT_EQ(a.smtp->save_to_sent, b.smtp->save_to_sent);
  }
  ASSERT_EQ(a.oauth2.has_value(), b.oauth2.has_value());
  if (a.oauth2) {
    EXPECT_EQ(a.oauth2->access_token.reveal(), b.oauth2->access_token.reveal());
    EXPECT_EQ(a.oauth2->refresh_token.reveal(), b.oauth2->refresh_token.reveal());
    EXPECT_EQ(a.oauth2->expires_at, b.oauth2->expires_at);
    EXPECT_EQ(a.oauth2->token_url, b.oauth2->token_url);
    EXPECT_EQ(a.oauth2->client_id, b.oauth2->client_id);
    EXPECT_EQ(a.oauth2->client_secret.reveal(), b.oauth2->client_secret.reveal());
    EXPECT_EQ(a.oauth2->refresh_url, b.oauth2->refresh_url);
    EXPECT_EQ(a.oauth2->mechanism, b.oauth2->mechanism);
  }
}

const char* kKeyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const char* kKeyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

}  // namespace

TEST(RecordJson, SendRoundTripEveryField) {
  auto s = full_send();
  for (int i = 0; i < 256; ++i) s.raw.push_back(static_cast<char>(i));
  const std::string text = store::send_to_json(s);
  // Valid JSON text whatever the bytes: the message is base64 in it.
  EXPECT_NO_THROW(json::parse(text));
  expect_same(store::send_from_json(text), s);
}

TEST(RecordJson, SendRawOfEveryLengthModThree) {
  // Padding differs by length: 0, 1 or 2 "=" at the end, and bytes that decode to zeros.
  for (std::string raw : {std::string(), std::string("\0", 1), std::string("\xff\0", 2),
                          std::string("abc"), std::string("\0\0\0\0", 4),
                          std::string("\xfb\xff\xbf\x00\x01", 5), std::string(1000, '\0')}) {
    auto s = full_send();
    s.raw = raw;
    auto back = store::send_from_json(store::send_to_json(s));
    EXPECT_EQ(back.raw, raw) << "length " << raw.size();
  }
}

TEST(RecordJson, SendFromJsonDefaultsAndBadBase64) {
  auto s = store::send_from_json(R"({"id":"x","state":"queued"})");
  EXPECT_EQ(s.id, "x");
  EXPECT_EQ(s.state, "queued");
  EXPECT_EQ(s.attempts, 0u);
  EXPECT_EQ(s.reply_code, 0);
  EXPECT_TRUE(s.raw.empty());
  EXPECT_TRUE(s.recipients.empty());
  EXPECT_THROW(store::send_from_json(R"({"id":"x","raw":"!!!!"})"), std::runtime_error);
  EXPECT_THROW(store::send_from_json("not json"), std::exception);
}

TEST(RecordJson, ConfigWithSmtpAndOAuth2RoundTrip) {
  const auto c = full_config();
  const auto o = store::config_to_object(c, nullptr);
  // The settings as stored: readable where they are not secrets.
  ASSERT_TRUE(o.contains("smtp"));
  EXPECT_EQ(o.at("smtp").at("save_to_sent"), false);
  EXPECT_EQ(o.at("smtp").at("security"), "none");
  ASSERT_TRUE(o.contains("oauth2"));
  EXPECT_EQ(o.at("oauth2").at("mechanism"), "oauthbearer");
  EXPECT_EQ(o.at("oauth2").at("expires_at"), "2026-03-01T11:22:33.456Z");
  expect_same(store::config_from_object(o, nullptr), c);
  // Through text as well, as the state file and Redis keep it.
  expect_same(store::config_from_object(json::parse(json::serialize(o)).as_object(), nullptr), c);
}

TEST(RecordJson, ConfigOptionalPartsStayAbsent) {
  auto c = full_config();
  c.smtp.reset();
  c.webhook.reset();
  c.since.reset();
  c.oauth2->expires_at.reset();
  c.all_folders = false;
  c.sent_folder.clear();
  const auto o = store::config_to_object(c, nullptr);
  EXPECT_FALSE(o.contains("smtp"));
  EXPECT_FALSE(o.contains("webhook"));
  EXPECT_FALSE(o.contains("since"));
  EXPECT_FALSE(o.at("oauth2").as_object().contains("expires_at"));
  const auto back = store::config_from_object(o, nullptr);
  expect_same(back, c);
  EXPECT_FALSE(back.oauth2->expires_at);

  // Older records without save_to_sent or mechanism take the defaults.
  auto with_smtp = store::config_to_object(full_config(), nullptr);
  with_smtp["smtp"].as_object().erase("save_to_sent");
  with_smtp["oauth2"].as_object().erase("mechanism");
  const auto old = store::config_from_object(with_smtp, nullptr);
  EXPECT_TRUE(old.smtp->save_to_sent);
  EXPECT_EQ(old.oauth2->mechanism, "xoauth2");
}

TEST(RecordJson, ConfigSecretsSealedWithABox) {
  const auto box = core::SecretBox::from_base64(kKeyA);
  const auto c = full_config();
  const auto o = store::config_to_object(c, &box);
  const std::string text = json::serialize(o);
  for (const char* secret :
       {"imap-pw", "smtp-pw", "access-token", "refresh-token", "client-secret", "hook-secret"}) {
    EXPECT_EQ(text.find(std::string("\"") + secret + "\""), std::string::npos)
        << secret << " in clear: " << text;
  }
  EXPECT_TRUE(core::SecretBox::is_sealed(o.at("smtp").at("password").as_string()));
  EXPECT_TRUE(core::SecretBox::is_sealed(o.at("imap").at("password").as_string()));
  for (const char* key : {"access_token", "refresh_token", "client_secret"}) {
    EXPECT_TRUE(core::SecretBox::is_sealed(o.at("oauth2").at(key).as_string())) << key;
  }
  EXPECT_EQ(o.at("oauth2").at("client_id"), "client-id");
  expect_same(store::config_from_object(o, &box), c);

  // Without the key, with another key, or moved to another mailbox: refused.
  EXPECT_THROW(store::config_from_object(o, nullptr), std::runtime_error);
  const auto other = core::SecretBox::from_base64(kKeyB);
  EXPECT_THROW(store::config_from_object(o, &other), std::runtime_error);
  auto moved = o;
  moved["id"] = "mb-2";
  EXPECT_THROW(store::config_from_object(moved, &box), std::runtime_error);
}

TEST(RecordJson, RecordKeepsSyncAndEmptySecretsStayEmpty) {
  store::MailboxRecord r;
  r.config = full_config();
  r.config.smtp->password = core::Secret("");  // "the IMAP password"
  r.config.oauth2->refresh_token = core::Secret("");
  r.sync = R"({"sync_id":"sy1","state":"done"})";
  r.epoch = 9;
  r.created_at = "2026-01-01T00:00:00.000Z";
  const auto box = core::SecretBox::from_base64(kKeyA);
  const auto back = store::record_from_json(store::record_to_json(r, &box), &box);
  EXPECT_EQ(back.sync, r.sync);
  EXPECT_EQ(back.epoch, 9u);
  EXPECT_TRUE(back.config.smtp->password.empty());
  EXPECT_TRUE(back.config.oauth2->refresh_token.empty());
  EXPECT_EQ(back.config.oauth2->access_token.reveal(), "access-token");
}
