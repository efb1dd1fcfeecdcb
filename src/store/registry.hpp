// Registry port: the mailboxes the service serves, their settings and delivery checkpoints.
// Adapters: memory (optionally persisted to a state file, here) and Redis (later).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.hpp"

namespace el::store {

struct MailboxRecord {
  core::MailboxConfig config;
  std::vector<core::FolderCheckpoint> checkpoints;  // folders with a baseline, any order
  std::uint64_t delivered = 0;                      // message.new events accepted by the sink
  std::uint64_t epoch = 1;  // grows on every settings change; fences writes of old sessions
  std::string created_at;   // RFC 3339

  const core::FolderCheckpoint* checkpoint(std::string_view folder) const;
};

// Thread-safe. Every method is quick and in memory except flush(), which may block on disk and
// must be called off the I/O threads.
class Registry {
 public:
  virtual ~Registry() = default;
  // false if the id is taken.
  virtual bool add(const MailboxRecord& record) = 0;
  virtual std::optional<MailboxRecord> get(std::string_view id) const = 0;
  // Records ordered by id, strictly after `after_id`, at most `limit`.
  virtual std::vector<MailboxRecord> list(std::string_view after_id, std::size_t limit) const = 0;
  virtual std::size_t size() const = 0;
  // Replaces the settings and bumps the epoch; keeps the checkpoints of folders still watched
  // unless the IMAP account (host, port, username) changed. Returns the new epoch, or nullopt.
  virtual std::optional<std::uint64_t> replace_config(const core::MailboxConfig& config) = 0;
  virtual bool remove(std::string_view id) = 0;
  // Moves one folder's checkpoint and adds to the delivered count, only if the mailbox exists
  // and `epoch` is still its epoch (a stale session cannot move progress). Returns whether saved.
  virtual bool save_checkpoint(std::string_view id, std::uint64_t epoch,
                               const core::FolderCheckpoint& checkpoint,
                               std::uint64_t delivered_increment) = 0;
  // Makes every change made before the call durable. Blocking; no-op for a pure memory store.
  virtual void flush() = 0;
};

}  // namespace el::store
