// Registry port: the mailboxes the service serves, their settings and delivery checkpoints, and
// who serves them (ownership leases with epochs, node heartbeats; ARCHITECTURE §5).
// Adapters: memory (optionally persisted to a state file) and Redis.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.hpp"

namespace boost::asio {
class thread_pool;
}

namespace el::store {

// The backend cannot be reached or answered an error (Redis down): nothing was changed, or the
// change is unknown. The API answers 503; sessions retry later.
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MailboxRecord {
  core::MailboxConfig config;
  std::vector<core::FolderCheckpoint> checkpoints;  // folders with a baseline, any order
  std::uint64_t delivered = 0;                      // message.new events accepted by the sink
  // Grows on every settings change and on every change of owner; checkpoints and tasks carry
  // it and a write under another epoch is refused (fencing).
  std::uint64_t epoch = 1;
  std::string created_at;  // RFC 3339
  // Filled by get() and list(): the node holding the lease (empty: none), and the session as
  // its owner last published it (see publish_states).
  std::string owner;
  std::string state;  // core::to_string(SessionState), empty if never published
  std::string last_error;
  std::string connected_since;  // RFC 3339 or empty

  // The latest period synchronization (POST /sync) as JSON text, empty if none; see put_sync.
  std::string sync;

  const core::FolderCheckpoint* checkpoint(std::string_view folder) const;
};

// One email sent through the API (POST /v1/mailboxes/{id}/send), from acceptance to its end.
struct SendRecord {
  std::string id;  // send id
  std::string mailbox_id;
  std::string idempotency_key;  // empty: none
  std::string request_hash;     // SHA-256 of the request body: a key reused for another body
  std::string state;            // queued | sending | retrying | sent | failed
  // Decided but not yet reported (message.sent / send_failed not delivered): "sent" or
  // "failed"; a node resuming the send only reports it.
  std::string outcome;
  std::string message_id;                               // without angle brackets
  std::string created_at, updated_at, next_attempt_at;  // RFC 3339
  std::uint32_t attempts = 0;
  std::string from;
  std::vector<std::string> recipients;
  std::string raw;  // the message; dropped when the send ends
  std::string queue_id;
  int reply_code = 0;
  std::string reply_text;  // the SMTP reply ("250 2.0.0 Ok: queued as ...")
  std::string error_code, error_message;
  std::string sent_folder;  // "" (not yet), "appended:<folder>", "skipped", "failed: why"
  bool final() const { return state == "sent" || state == "failed"; }
};

// A session state as its owner publishes it, so that any node can answer a status request.
struct StateUpdate {
  std::string id;
  std::uint64_t epoch = 0;  // ignored unless it is the mailbox's current epoch
  std::string state;
  std::string last_error;
  std::string connected_since;
};

// One node of the fleet, as its heartbeat describes it.
struct NodeInfo {
  std::string id;
  std::string role;  // api | worker | all
  std::size_t capacity = 0;
  std::size_t held = 0;  // mailboxes whose lease it holds
  std::string version;
  std::string started_at;  // RFC 3339
  std::string seen_at;     // RFC 3339, time of the last heartbeat (set by the adapter)
};

// Thread-safe. Methods throw Unavailable when the backend cannot be reached. When
// blocking_pool() is not null, every method may block on a network round trip and must be
// called from that pool (see store::call), never on an I/O thread.
class Registry {
 public:
  virtual ~Registry() = default;

  // --- mailboxes ---
  // false if the id is taken.
  virtual bool add(const MailboxRecord& record) = 0;
  virtual std::optional<MailboxRecord> get(std::string_view id) const = 0;
  // Records ordered by id, strictly after `after_id`, at most `limit`.
  virtual std::vector<MailboxRecord> list(std::string_view after_id, std::size_t limit) const = 0;
  virtual std::size_t size() const = 0;
  // Replaces the settings and bumps the epoch; keeps the checkpoints of folders still watched
  // unless the IMAP account (host, port, username) changed. Returns the new epoch, or nullopt.
  virtual std::optional<std::uint64_t> replace_config(const core::MailboxConfig& config) = 0;
  // Forgets the mailbox, its checkpoints and its lease.
  virtual bool remove(std::string_view id) = 0;
  // The mailbox's epoch now; nullopt if it does not exist.
  virtual std::optional<std::uint64_t> epoch(std::string_view id) const = 0;
  // Moves one folder's checkpoint and adds to the delivered count, only if the mailbox exists
  // and `epoch` is still its epoch (a stale owner or task cannot move progress). Within one
  // uidvalidity a checkpoint never moves back: a lower last_uid is accepted and ignored.
  // Returns whether the epoch was current.
  virtual bool save_checkpoint(std::string_view id, std::uint64_t epoch,
                               const core::FolderCheckpoint& checkpoint,
                               std::uint64_t delivered_increment) = 0;
  // Makes every change made before the call durable. Blocking; no-op where every write is
  // already acknowledged by the backend.
  virtual void flush() = 0;

  // Stores OAuth2 tokens the service refreshed (access_token, expires_at, refresh_token) into
  // the mailbox's settings without a settings change: the epoch stays. false: no such mailbox.
  virtual bool save_tokens(std::string_view id, const core::OAuth2Settings& tokens) = 0;
  // Records the progress of the mailbox's latest period synchronization (JSON text), shown in
  // its status by every node. false: no such mailbox.
  virtual bool put_sync(std::string_view id, const std::string& json) = 0;

  // --- sends ---
  // Stores a new send, pending. If (mailbox_id, idempotency_key) already names a send, stores
  // nothing and returns that one. Sends are forgotten `retention` after they were created.
  virtual std::optional<SendRecord> create_send(const SendRecord& send,
                                                std::chrono::seconds retention) = 0;
  virtual std::optional<SendRecord> get_send(std::string_view id) const = 0;
  // Replaces the record; a final one leaves the pending set and loses its raw message.
  virtual void update_send(const SendRecord& send) = 0;
  // Ids of sends not final yet, oldest first, at most limit.
  virtual std::vector<std::string> pending_sends(std::size_t limit) const = 0;
  // Takes (or extends, for the same node) the right to run a send for `lease`. false: another
  // node runs it.
  virtual bool claim_send(std::string_view id, std::string_view node,
                          std::chrono::milliseconds lease) = 0;

  // --- ownership ---
  // Takes the lease of a mailbox that no node holds: `node` owns it for `lease`, and the epoch
  // grows. Returns the new epoch; nullopt if another node holds it or the mailbox is gone.
  virtual std::optional<std::uint64_t> claim(std::string_view id, std::string_view node,
                                             std::chrono::milliseconds lease) = 0;
  // Extends the leases `node` holds, in one round trip. For each id, in order: the mailbox's
  // current epoch (which moves when its settings change) if `node` still holds the lease;
  // nullopt if it lost it (expired and taken by another node, or the mailbox was removed).
  virtual std::vector<std::optional<std::uint64_t>> renew(std::string_view node,
                                                          const std::vector<std::string>& ids,
                                                          std::chrono::milliseconds lease) = 0;
  // Gives up the leases `node` holds among ids, at once (hand-over). Others are untouched.
  virtual void release(std::string_view node, const std::vector<std::string>& ids) = 0;
  // Up to `limit` mailboxes no node holds a lease on.
  virtual std::vector<std::string> unowned(std::size_t limit) const = 0;
  // Session states of mailboxes an owner serves (each ignored unless its epoch is current).
  virtual void publish_states(const std::vector<StateUpdate>& updates) = 0;

  // --- nodes ---
  // Registers or refreshes a node; it counts as live for `ttl`.
  virtual void heartbeat(const NodeInfo& node, std::chrono::milliseconds ttl) = 0;
  virtual void remove_node(std::string_view node) = 0;
  // Live nodes, ordered by id.
  virtual std::vector<NodeInfo> nodes() const = 0;

  // --- adapter ---
  // Threads on which blocking calls run; nullptr: every call is quick and in memory.
  virtual boost::asio::thread_pool* blocking_pool() { return nullptr; }
  // Readiness: the backend answered recently (a cheap check, no round trip).
  virtual bool healthy() const { return true; }
  // "memory" or "redis" (for logs and metrics).
  virtual std::string_view kind() const = 0;
};

}  // namespace el::store
