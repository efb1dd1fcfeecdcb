// Mailbox records <-> JSON.
#include "store/record_json.hpp"

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
  return r;
}

std::string record_to_json(const MailboxRecord& r, const core::SecretBox* box) {
  return json::serialize(record_to_object(r, box));
}

MailboxRecord record_from_json(std::string_view text, const core::SecretBox* box) {
  return record_from_object(json::parse(text).as_object(), box);
}

}  // namespace el::store
