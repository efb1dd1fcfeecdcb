// In-memory registry, optionally persisted to a JSON state file (atomic replace: temp file,
// fsync, rename, fsync of the folder). Changes are written by a background thread, coalesced;
// flush() waits until everything before it is on disk.
#pragma once
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/secret_box.hpp"
#include "store/registry.hpp"

namespace el::store {

struct MemoryRegistryOptions {
  std::string state_file;                      // empty: memory only
  std::chrono::milliseconds write_delay{100};  // coalescing window for background writes
  // Seals passwords and webhook secrets in the state file (AES-256-GCM, the mailbox id as
  // associated data). Without it they are written in clear. Plain values found on load are
  // accepted and sealed at the next write; sealed values without a key refuse to load.
  std::shared_ptr<const core::SecretBox> secret_box;
};

class MemoryRegistry final : public Registry {
 public:
  // Loads the state file if it exists; throws std::runtime_error if it is unreadable or corrupt.
  explicit MemoryRegistry(MemoryRegistryOptions opts);
  ~MemoryRegistry() override;  // writes pending changes

  bool add(const MailboxRecord& record) override;
  std::optional<MailboxRecord> get(std::string_view id) const override;
  std::vector<MailboxRecord> list(std::string_view after_id, std::size_t limit) const override;
  std::size_t size() const override;
  std::optional<std::uint64_t> replace_config(const core::MailboxConfig& config) override;
  bool remove(std::string_view id) override;
  std::optional<std::uint64_t> epoch(std::string_view id) const override;
  bool save_checkpoint(std::string_view id, std::uint64_t epoch,
                       const core::FolderCheckpoint& checkpoint,
                       std::uint64_t delivered_increment) override;
  void flush() override;
  bool save_tokens(std::string_view id, const core::OAuth2Settings& tokens) override;
  bool put_sync(std::string_view id, const std::string& json) override;
  std::optional<SendRecord> create_send(const SendRecord& send,
                                        std::chrono::seconds retention) override;
  std::optional<SendRecord> get_send(std::string_view id) const override;
  void update_send(const SendRecord& send) override;
  std::vector<std::string> pending_sends(std::size_t limit) const override;
  bool claim_send(std::string_view id, std::string_view node,
                  std::chrono::milliseconds lease) override;

  // Leases, states and nodes live in memory only (one process holds them all); the epochs
  // they bump are persisted with the records.
  std::optional<std::uint64_t> claim(std::string_view id, std::string_view node,
                                     std::chrono::milliseconds lease) override;
  std::vector<std::optional<std::uint64_t>> renew(std::string_view node,
                                                  const std::vector<std::string>& ids,
                                                  std::chrono::milliseconds lease) override;
  void release(std::string_view node, const std::vector<std::string>& ids) override;
  std::vector<std::string> unowned(std::size_t limit) const override;
  void publish_states(const std::vector<StateUpdate>& updates) override;
  void heartbeat(const NodeInfo& node, std::chrono::milliseconds ttl) override;
  void remove_node(std::string_view node) override;
  std::vector<NodeInfo> nodes() const override;
  std::string_view kind() const override { return "memory"; }

  // The state as JSON text (what the state file holds). For tests and the writer.
  std::string snapshot() const;

 private:
  // Credentials as written to the file, sealed once when they change rather than on every
  // write (a write happens up to every write_delay while mail flows).
  struct Sealed {
    std::string password;
    std::string webhook_secret;
  };
  Sealed seal(const core::MailboxConfig& c) const;  // empty when there is no secret box

  using Clock = std::chrono::steady_clock;
  struct Lease {
    std::string node;
    Clock::time_point until;
  };
  struct Node {
    NodeInfo info;
    Clock::time_point until;
  };
  MailboxRecord view(const MailboxRecord& r) const;  // with owner and state; caller holds mu_
  void mark_dirty();                                 // caller holds mu_
  void writer_loop();
  void write_file(const std::string& text);
  void load();

  MemoryRegistryOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, MailboxRecord, std::less<>> records_;
  std::map<std::string, Sealed, std::less<>> sealed_;  // by mailbox id, with a secret box only
  std::map<std::string, Lease, std::less<>> leases_;
  std::map<std::string, StateUpdate, std::less<>> states_;
  std::map<std::string, Node, std::less<>> nodes_;
  struct StoredSend {
    SendRecord record;
    std::chrono::system_clock::time_point expires;
  };
  std::map<std::string, StoredSend, std::less<>> sends_;       // by send id
  std::map<std::string, std::string, std::less<>> send_keys_;  // mailbox \n key -> send id
  std::map<std::string, Lease, std::less<>> send_claims_;      // by send id
  void expire_sends();                                         // caller holds mu_
  std::uint64_t version_ = 0;                                  // bumped by every change
  std::uint64_t written_ = 0;                                  // version last on disk
  bool stopping_ = false;
  bool urgent_ = false;  // a flush() waits: write now, without the coalescing delay
  std::string write_error_;
  std::thread writer_;
};

}  // namespace el::store
