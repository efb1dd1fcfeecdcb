// Registry adapter on Redis (ARCHITECTURE §3, §5): every node of a fleet shares one logical
// database. Thread-safe; every method blocks on one or two round trips and must run on
// blocking_pool() (see store::call). Methods throw Unavailable while Redis cannot be reached or
// answers an error; get()/list() throw std::runtime_error for credentials they cannot decrypt.
//
// Key layout ({p} = options.prefix, "el:" by default; {id} = mailbox id, {node} = node id):
//   {p}mailboxes    ZSET   every mailbox id, score 0, so ZRANGEBYLEX pages in id order
//                          (list, unowned) and ZCARD counts (size)
//   {p}mbx:{id}     HASH   one mailbox:
//                            cfg              settings JSON (record_json's config_to_object,
//                                             compact; IMAP password and webhook secret sealed
//                                             "enc:v1:..." with the id as associated data when
//                                             a secret box is set)
//                            epoch            fencing epoch: +1 on every settings change and claim
//                            delivered        message.new events the sink accepted
//                            created_at       RFC 3339
//                            cp:{folder}      checkpoint "uidvalidity:last_uid"
//                            state, last_error, connected_since
//                                             the session as its owner last published it
//                                             (absent until published; empty values deleted)
//                            oauth            OAuth2 tokens the service refreshed since cfg was
//                                             written (sealed like cfg); replace_config drops it
//                            sync             the latest period synchronization, JSON
//   {p}lease:{id}   STRING owner node id, PX = lease time; absent: nobody holds the mailbox
//   {p}node:{node}  STRING NodeInfo JSON, PX = heartbeat ttl
//   {p}nodes        SET    node ids; members whose node key expired are dropped by nodes()
//   {p}send:{sid}   STRING a send (record_json's send_to_json), PX = retention
//   {p}sendkey:{id}:{key}  STRING the send id an Idempotency-Key names, PX = retention
//   {p}sends:pending       ZSET   sends not final yet, score = creation time (ms)
//   {p}sendclaim:{sid}     STRING the node running the send, PX = its claim
// Each multi-key change is one Lua script (EVALSHA, EVAL after NOSCRIPT), hence atomic: add,
// replace_config, remove, save_checkpoint, claim, renew, release, publish_states. Batches
// (renew, release, publish_states) send one script call per 500 ids, all pipelined.
//
// Key rotation: a secret box built with the old key as well opens values sealed with either;
// values are re-sealed with the current key whenever the settings are written again (add,
// replace_config). Records never rewritten keep the old ciphertext, so keep the old key
// configured until every mailbox has been updated (or re-register them).
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "core/secret_box.hpp"
#include "store/registry.hpp"

namespace el::store {

namespace redis {
class Client;
struct Value;
}  // namespace redis

struct RedisRegistryOptions {
  // redis://[user:password@]host:port/db (db: the logical database, default 0). The password
  // alone (redis://:pass@host:port/2) sends AUTH pass; with a user, AUTH user pass (ACL).
  std::string url = "redis://127.0.0.1:6379/0";
  std::string prefix = "el:";  // every key starts with it
  // Seals the IMAP password and webhook secret in the stored settings; null: stored in clear
  // (the app decides whether that is allowed).
  std::shared_ptr<const core::SecretBox> secret_box;
  std::size_t connections = 4;  // connection pool size = threads of blocking_pool()
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
};

class RedisRegistry final : public Registry {
 public:
  // No I/O: Redis need not be up yet. Throws std::invalid_argument for a malformed url (the
  // message never repeats the url: it may hold a password).
  explicit RedisRegistry(RedisRegistryOptions opts);
  ~RedisRegistry() override;  // waits for the calls running on blocking_pool()

  bool add(const MailboxRecord& record) override;
  std::optional<MailboxRecord> get(std::string_view id) const override;
  // Two round trips per 500 records: the ids, then every record's hash and lease pipelined.
  std::vector<MailboxRecord> list(std::string_view after_id, std::size_t limit) const override;
  std::size_t size() const override;
  std::optional<std::uint64_t> replace_config(const core::MailboxConfig& config) override;
  bool remove(std::string_view id) override;
  std::optional<std::uint64_t> epoch(std::string_view id) const override;
  bool save_checkpoint(std::string_view id, std::uint64_t epoch,
                       const core::FolderCheckpoint& checkpoint,
                       std::uint64_t delivered_increment) override;
  // Every write is acknowledged by Redis; its durability is Redis's (appendonly, fsync policy).
  void flush() override {}

  std::optional<std::uint64_t> claim(std::string_view id, std::string_view node,
                                     std::chrono::milliseconds lease) override;
  std::vector<std::optional<std::uint64_t>> renew(std::string_view node,
                                                  const std::vector<std::string>& ids,
                                                  std::chrono::milliseconds lease) override;
  void release(std::string_view node, const std::vector<std::string>& ids) override;
  // Pages through the ids 1000 at a time, checking their leases in one pipeline per page.
  std::vector<std::string> unowned(std::size_t limit) const override;
  void publish_states(const std::vector<StateUpdate>& updates) override;

  bool save_tokens(std::string_view id, const core::OAuth2Settings& tokens) override;
  bool put_sync(std::string_view id, const std::string& json) override;
  std::optional<SendRecord> create_send(const SendRecord& send,
                                        std::chrono::seconds retention) override;
  std::optional<SendRecord> get_send(std::string_view id) const override;
  void update_send(const SendRecord& send) override;
  std::vector<std::string> pending_sends(std::size_t limit) const override;
  bool claim_send(std::string_view id, std::string_view node,
                  std::chrono::milliseconds lease) override;

  void heartbeat(const NodeInfo& node, std::chrono::milliseconds ttl) override;
  void remove_node(std::string_view node) override;
  std::vector<NodeInfo> nodes() const override;

  boost::asio::thread_pool* blocking_pool() override;
  // The latest round trip, on any thread (calls and ping()), succeeded. False before the first.
  bool healthy() const override;
  std::string_view kind() const override { return "redis"; }

  // One round trip, for start-up checks and probes; false if Redis is unreachable or refuses us.
  bool ping();
  // host:port/db, never the credentials: for logs.
  const std::string& where() const;

 private:
  std::string mailbox_key(std::string_view id) const;
  std::string lease_key(std::string_view id) const;
  std::string node_key(std::string_view id) const;
  std::string send_key(std::string_view id) const;
  std::string config_json(const core::MailboxConfig& config) const;
  MailboxRecord parse_record(std::string_view id, const redis::Value& hash,
                             const redis::Value& lease) const;

  RedisRegistryOptions opts_;
  std::string mailboxes_key_;
  std::string nodes_key_;
  std::unique_ptr<redis::Client> client_;
  std::unique_ptr<boost::asio::thread_pool> pool_;
};

}  // namespace el::store
