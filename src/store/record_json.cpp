// Mailbox records <-> JSON.
#include "store/record_json.hpp"

#include <openssl/evp.h>

#include <boost/json.hpp>
#include <stdexcept>

namespace el::store {

namespace json = boost::json;

std::string seal_secret(const core::Secret& secret, const std::string& id,
                        const core::SecretBox* box) {
  if (!box || secret.empty()) return secret.reveal();
  return box->seal(secret.reveal(), id);
}

namespace {

core::Secret unseal(const json::value& v, const std::string& id, const core::SecretBox* box) {
  std::string text = json::value_to<std::string>(v);
  if (!core::SecretBox::is_sealed(text)) return core::Secret(std::move(text));
  if (!box)
    throw std::runtime_error("the credentials of mailbox " + id +
                             " are encrypted: set EL_SECRET_KEY (and EL_SECRET_KEY_OLD while "
                             "rotating keys)");
  auto plain = box->open(text, id);
  if (!plain)
    throw std::runtime_error("cannot decrypt the credentials of mailbox " + id +
                             ": wrong EL_SECRET_KEY (or EL_SECRET_KEY_OLD)?");
  return core::Secret(std::move(*plain));
}

}  // namespace

json::object config_to_object(const core::MailboxConfig& c, const core::SecretBox* box,
                              SealedSecrets sealed) {
  json::object imap{
      {"host", c.imap.host},
      {"port", c.imap.port},
      {"security", core::to_string(c.imap.security)},
      {"username", c.imap.username},
      {"password", sealed.password ? *sealed.password : seal_secret(c.imap.password, c.id, box)},
      {"tls_ca_file", c.imap.tls.ca_file},
      {"tls_insecure", c.imap.tls.insecure}};
  json::array folders;
  for (const auto& f : c.folders) folders.emplace_back(f);
  json::object o{
      {"id", c.id}, {"email", c.email}, {"imap", std::move(imap)}, {"folders", std::move(folders)}};
  if (c.all_folders) o["all_folders"] = true;
  if (!c.sent_folder.empty()) o["sent_folder"] = c.sent_folder;
  if (c.smtp) {
    const auto& s = *c.smtp;
    o["smtp"] = json::object{{"host", s.host},
                             {"port", s.port},
                             {"security", core::to_string(s.security)},
                             {"username", s.username},
                             {"password", seal_secret(s.password, c.id, box)},
                             {"tls_ca_file", s.tls.ca_file},
                             {"tls_insecure", s.tls.insecure},
                             {"save_to_sent", s.save_to_sent}};
  }
  if (c.oauth2) {
    const auto& a = *c.oauth2;
    json::object oa{{"access_token", seal_secret(a.access_token, c.id, box)},
                    {"refresh_token", seal_secret(a.refresh_token, c.id, box)},
                    {"token_url", a.token_url},
                    {"client_id", a.client_id},
                    {"client_secret", seal_secret(a.client_secret, c.id, box)},
                    {"refresh_url", a.refresh_url},
                    {"mechanism", a.mechanism}};
    if (a.expires_at) oa["expires_at"] = core::format_rfc3339(*a.expires_at);
    o["oauth2"] = std::move(oa);
  }
  if (c.since) o["since"] = core::format_rfc3339(*c.since);
  if (c.webhook)
    o["webhook"] =
        json::object{{"url", c.webhook->url},
                     {"secret", sealed.webhook_secret ? *sealed.webhook_secret
                                                      : seal_secret(c.webhook->secret, c.id, box)}};
  return o;
}

core::MailboxConfig config_from_object(const json::object& o, const core::SecretBox* box) {
  core::MailboxConfig c;
  c.id = json::value_to<std::string>(o.at("id"));
  c.email = json::value_to<std::string>(o.at("email"));
  const auto& imap = o.at("imap").as_object();
  c.imap.host = json::value_to<std::string>(imap.at("host"));
  c.imap.port = static_cast<std::uint16_t>(imap.at("port").to_number<std::int64_t>());
  auto sec = core::security_from_string(imap.at("security").as_string());
  if (!sec) throw std::runtime_error("bad security value for mailbox " + c.id);
  c.imap.security = *sec;
  c.imap.username = json::value_to<std::string>(imap.at("username"));
  c.imap.password = unseal(imap.at("password"), c.id, box);
  if (auto* v = imap.if_contains("tls_ca_file"))
    c.imap.tls.ca_file = json::value_to<std::string>(*v);
  if (auto* v = imap.if_contains("tls_insecure")) c.imap.tls.insecure = v->as_bool();
  c.folders.clear();
  for (const auto& f : o.at("folders").as_array())
    c.folders.push_back(json::value_to<std::string>(f));
  if (auto* v = o.if_contains("since")) c.since = core::parse_rfc3339(v->as_string());
  if (auto* v = o.if_contains("all_folders")) c.all_folders = v->as_bool();
  if (auto* v = o.if_contains("sent_folder")) c.sent_folder = json::value_to<std::string>(*v);
  if (auto* v = o.if_contains("smtp")) {
    const auto& so = v->as_object();
    core::SmtpSettings s;
    s.host = json::value_to<std::string>(so.at("host"));
    s.port = static_cast<std::uint16_t>(so.at("port").to_number<std::int64_t>());
    auto ssec = core::security_from_string(so.at("security").as_string());
    if (!ssec) throw std::runtime_error("bad smtp security value for mailbox " + c.id);
    s.security = *ssec;
    s.username = json::value_to<std::string>(so.at("username"));
    s.password = unseal(so.at("password"), c.id, box);
    if (auto* x = so.if_contains("tls_ca_file")) s.tls.ca_file = json::value_to<std::string>(*x);
    if (auto* x = so.if_contains("tls_insecure")) s.tls.insecure = x->as_bool();
    if (auto* x = so.if_contains("save_to_sent")) s.save_to_sent = x->as_bool();
    c.smtp = std::move(s);
  }
  if (auto* v = o.if_contains("oauth2")) {
    const auto& ao = v->as_object();
    core::OAuth2Settings a;
    a.access_token = unseal(ao.at("access_token"), c.id, box);
    a.refresh_token = unseal(ao.at("refresh_token"), c.id, box);
    a.token_url = json::value_to<std::string>(ao.at("token_url"));
    a.client_id = json::value_to<std::string>(ao.at("client_id"));
    a.client_secret = unseal(ao.at("client_secret"), c.id, box);
    a.refresh_url = json::value_to<std::string>(ao.at("refresh_url"));
    if (auto* x = ao.if_contains("mechanism")) a.mechanism = json::value_to<std::string>(*x);
    if (auto* x = ao.if_contains("expires_at")) a.expires_at = core::parse_rfc3339(x->as_string());
    c.oauth2 = std::move(a);
  }
  if (auto* v = o.if_contains("webhook")) {
    const auto& w = v->as_object();
    c.webhook = core::WebhookTarget{json::value_to<std::string>(w.at("url")),
                                    unseal(w.at("secret"), c.id, box)};
  }
  return c;
}

json::object record_to_object(const MailboxRecord& r, const core::SecretBox* box,
                              SealedSecrets sealed) {
  json::object o = config_to_object(r.config, box, sealed);
  json::array cps;
  for (const auto& cp : r.checkpoints)
    cps.emplace_back(json::object{
        {"name", cp.name}, {"uidvalidity", cp.uidvalidity}, {"last_uid", cp.last_uid}});
  o["checkpoints"] = std::move(cps);
  o["delivered"] = r.delivered;
  o["epoch"] = r.epoch;
  o["created_at"] = r.created_at;
  if (!r.sync.empty()) o["sync"] = r.sync;
  return o;
}

MailboxRecord record_from_object(const json::object& o, const core::SecretBox* box) {
  MailboxRecord r;
  r.config = config_from_object(o, box);
  for (const auto& v : o.at("checkpoints").as_array()) {
    const auto& cp = v.as_object();
    r.checkpoints.push_back(
        {json::value_to<std::string>(cp.at("name")),
         static_cast<std::uint32_t>(cp.at("uidvalidity").to_number<std::int64_t>()),
         static_cast<std::uint32_t>(cp.at("last_uid").to_number<std::int64_t>())});
  }
  r.delivered = o.at("delivered").to_number<std::uint64_t>();
  r.epoch = o.at("epoch").to_number<std::uint64_t>();
  r.created_at = json::value_to<std::string>(o.at("created_at"));
  if (auto* v = o.if_contains("sync")) r.sync = json::value_to<std::string>(*v);
  return r;
}

std::string record_to_json(const MailboxRecord& r, const core::SecretBox* box) {
  return json::serialize(record_to_object(r, box));
}

MailboxRecord record_from_json(std::string_view text, const core::SecretBox* box) {
  return record_from_object(json::parse(text).as_object(), box);
}

namespace {

std::string b64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string b64_decode(std::string_view in) {
  if (in.empty()) return {};
  std::string out(3 * in.size() / 4 + 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) throw std::runtime_error("bad base64 in a stored send");
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (in.size() >= 1 && in.back() == '=') --len;
  if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

std::string send_to_json(const SendRecord& s) {
  json::array rcpts;
  for (const auto& r : s.recipients) rcpts.emplace_back(r);
  json::object o{{"id", s.id},
                 {"mailbox_id", s.mailbox_id},
                 {"idempotency_key", s.idempotency_key},
                 {"request_hash", s.request_hash},
                 {"state", s.state},
                 {"outcome", s.outcome},
                 {"message_id", s.message_id},
                 {"created_at", s.created_at},
                 {"updated_at", s.updated_at},
                 {"next_attempt_at", s.next_attempt_at},
                 {"attempts", s.attempts},
                 {"from", s.from},
                 {"recipients", std::move(rcpts)},
                 {"raw", b64_encode(s.raw)},
                 {"queue_id", s.queue_id},
                 {"reply_code", s.reply_code},
                 {"reply_text", s.reply_text},
                 {"error_code", s.error_code},
                 {"error_message", s.error_message},
                 {"sent_folder", s.sent_folder}};
  return json::serialize(o);
}

SendRecord send_from_json(std::string_view text) {
  const auto o = json::parse(text).as_object();
  SendRecord s;
  s.id = str(o, "id");
  s.mailbox_id = str(o, "mailbox_id");
  s.idempotency_key = str(o, "idempotency_key");
  s.request_hash = str(o, "request_hash");
  s.state = str(o, "state");
  s.outcome = str(o, "outcome");
  s.message_id = str(o, "message_id");
  s.created_at = str(o, "created_at");
  s.updated_at = str(o, "updated_at");
  s.next_attempt_at = str(o, "next_attempt_at");
  if (auto* v = o.if_contains("attempts")) s.attempts = v->to_number<std::uint32_t>();
  s.from = str(o, "from");
  if (auto* v = o.if_contains("recipients"))
    for (const auto& r : v->as_array()) s.recipients.push_back(json::value_to<std::string>(r));
  s.raw = b64_decode(str(o, "raw"));
  s.queue_id = str(o, "queue_id");
  if (auto* v = o.if_contains("reply_code")) s.reply_code = v->to_number<int>();
  s.reply_text = str(o, "reply_text");
  s.error_code = str(o, "error_code");
  s.error_message = str(o, "error_message");
  s.sent_folder = str(o, "sent_folder");
  return s;
}

}  // namespace el::store
