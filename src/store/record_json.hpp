// Mailbox records <-> JSON, shared by the state file and the Redis adapter. Secrets (IMAP
// password, webhook secret) are included, sealed with AES-256-GCM when a box is given (the
// mailbox id as associated data): the caller decides where the text may go. Reading throws
// std::runtime_error for malformed input and for sealed secrets it cannot open.
#pragma once
#include <boost/json/object.hpp>
#include <string>
#include <string_view>

#include "core/secret_box.hpp"
#include "store/registry.hpp"

namespace el::store {

// Already-sealed secrets to write as they are (sealing once when credentials change, not on
// every write); null members are sealed here.
struct SealedSecrets {
  const std::string* password = nullptr;
  const std::string* webhook_secret = nullptr;
};

// The settings alone: id, email, imap, folders, since, webhook.
boost::json::object config_to_object(const core::MailboxConfig& c, const core::SecretBox* box,
                                     SealedSecrets sealed = {});
core::MailboxConfig config_from_object(const boost::json::object& o, const core::SecretBox* box);

// Settings plus checkpoints, delivered, epoch, created_at (the state file's entries).
boost::json::object record_to_object(const MailboxRecord& r, const core::SecretBox* box,
                                     SealedSecrets sealed = {});
MailboxRecord record_from_object(const boost::json::object& o, const core::SecretBox* box);

std::string record_to_json(const MailboxRecord& r, const core::SecretBox* box = nullptr);
MailboxRecord record_from_json(std::string_view text, const core::SecretBox* box = nullptr);

// A secret as stored: sealed with the box, or in clear without one.
// Sends as JSON text (the raw message base64-encoded, so any byte survives).
std::string send_to_json(const SendRecord& s);
SendRecord send_from_json(std::string_view text);

std::string seal_secret(const core::Secret& secret, const std::string& id,
                        const core::SecretBox* box);

}  // namespace el::store
