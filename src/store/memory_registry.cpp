// In-memory registry with an optional state file written atomically by a background thread.
#include "store/memory_registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/log.hpp"
#include "store/record_json.hpp"

namespace el::store {

namespace json = boost::json;

const core::FolderCheckpoint* MailboxRecord::checkpoint(std::string_view folder) const {
  for (const auto& c : checkpoints)
    if (c.name == folder) return &c;
  return nullptr;
}

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

MemoryRegistry::MemoryRegistry(MemoryRegistryOptions opts) : opts_(std::move(opts)) {
  if (opts_.state_file.empty()) return;
  load();
  writer_ = std::thread([this] { writer_loop(); });
}

MemoryRegistry::~MemoryRegistry() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void MemoryRegistry::load() {
  std::ifstream in(opts_.state_file, std::ios::binary);
  if (!in) {
    if (std::filesystem::exists(opts_.state_file))
      throw std::runtime_error("cannot read state file " + opts_.state_file);
    return;  // first start
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    auto doc = json::parse(ss.str()).as_object();
    if (doc.at("version").to_number<int>() != 1)
      throw std::runtime_error("unsupported state file version");
    for (const auto& v : doc.at("mailboxes").as_array()) {
      auto r = record_from_object(v.as_object(), opts_.secret_box.get());
      if (opts_.secret_box) sealed_[r.config.id] = seal(r.config);
      records_.emplace(r.config.id, std::move(r));
    }
    if (auto* sends = doc.if_contains("sends")) {
      for (const auto& v : sends->as_array()) {
        const auto& so = v.as_object();
        StoredSend st{send_from_json(so.at("record").as_string()),
                      std::chrono::system_clock::time_point(
                          std::chrono::seconds(so.at("expires").to_number<std::int64_t>()))};
        if (!st.record.idempotency_key.empty())
          send_keys_[st.record.mailbox_id + '\n' + st.record.idempotency_key] = st.record.id;
        sends_.emplace(st.record.id, std::move(st));
      }
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot load state file " + opts_.state_file + ": " + e.what());
  }
  log::info("state_loaded",
            {{"file", opts_.state_file}, {"mailboxes", std::to_string(records_.size())}});
}

std::string MemoryRegistry::snapshot() const {
  json::array arr;
  {
    std::lock_guard lk(mu_);
    arr.reserve(records_.size());
    for (const auto& [id, r] : records_) {
      const auto sealed = sealed_.find(id);
      if (sealed == sealed_.end()) {
        arr.emplace_back(record_to_object(r, nullptr));
      } else {
        arr.emplace_back(record_to_object(
            r, opts_.secret_box.get(),
            SealedSecrets{&sealed->second.password, &sealed->second.webhook_secret}));
      }
    }
  }
  json::array sends;
  {
    std::lock_guard lk(mu_);
    for (const auto& [id, st] : sends_) {
      sends.emplace_back(json::object{{"record", send_to_json(st.record)},
                                      {"expires", std::chrono::duration_cast<std::chrono::seconds>(
                                                      st.expires.time_since_epoch())
                                                      .count()}});
    }
  }
  return json::serialize(
      json::object{{"version", 1}, {"mailboxes", std::move(arr)}, {"sends", std::move(sends)}});
}

MemoryRegistry::Sealed MemoryRegistry::seal(const core::MailboxConfig& c) const {
  Sealed out;
  const auto* box = opts_.secret_box.get();
  if (!box) return out;
  out.password = seal_secret(c.imap.password, c.id, box);
  if (c.webhook) out.webhook_secret = seal_secret(c.webhook->secret, c.id, box);
  return out;
}

void MemoryRegistry::mark_dirty() {
  ++version_;
  if (!opts_.state_file.empty()) cv_.notify_all();
}

void MemoryRegistry::writer_loop() {
  std::unique_lock lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stopping_ || version_ != written_; });
    if (version_ == written_ && stopping_) return;
    if (!stopping_ && !urgent_) {
      // Coalesce a burst of checkpoints into one write; flush() does not wait for that.
      cv_.wait_for(lk, opts_.write_delay, [&] { return stopping_ || urgent_; });
    }
    urgent_ = false;
    const std::uint64_t target = version_;
    lk.unlock();
    std::string text = snapshot();
    std::string error;
    try {
      write_file(text);
    } catch (const std::exception& e) {
      error = e.what();
      log::error("state_write_failed", {{"file", opts_.state_file}, {"error", error}});
    }
    lk.lock();
    write_error_ = error;
    if (error.empty()) {
      written_ = target;
    } else if (!stopping_) {
      // Retry after a pause rather than spinning on a full disk.
      cv_.wait_for(lk, std::chrono::seconds(1), [&] { return stopping_; });
    } else {
      return;
    }
    cv_.notify_all();
  }
}

void MemoryRegistry::write_file(const std::string& text) {
  const std::filesystem::path path(opts_.state_file);
  const std::string tmp = opts_.state_file + ".tmp";
  // 0600: the file holds mailbox passwords.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno("open " + tmp);
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw_errno("write " + tmp);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    throw_errno("fsync " + tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), opts_.state_file.c_str()) != 0) throw_errno("rename " + tmp);
  const auto dir = path.has_parent_path() ? path.parent_path().string() : std::string(".");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void MemoryRegistry::flush() {
  if (opts_.state_file.empty()) return;
  std::unique_lock lk(mu_);
  const std::uint64_t target = version_;
  if (written_ >= target) return;
  urgent_ = true;
  cv_.notify_all();
  cv_.wait(lk, [&] { return written_ >= target || stopping_ || !write_error_.empty(); });
  if (written_ < target) {
    throw std::runtime_error("state file not written: " +
                             (write_error_.empty() ? std::string("shutting down") : write_error_));
  }
}

bool MemoryRegistry::add(const MailboxRecord& record) {
  Sealed sealed = seal(record.config);  // outside the lock
  std::lock_guard lk(mu_);
  auto [it, inserted] = records_.emplace(record.config.id, record);
  if (!inserted) return false;
  if (opts_.secret_box) sealed_[record.config.id] = std::move(sealed);
  mark_dirty();
  return true;
}

std::optional<MailboxRecord> MemoryRegistry::get(std::string_view id) const {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return std::nullopt;
  return view(it->second);
}

std::vector<MailboxRecord> MemoryRegistry::list(std::string_view after_id,
                                                std::size_t limit) const {
  std::lock_guard lk(mu_);
  std::vector<MailboxRecord> out;
  auto it = after_id.empty() ? records_.begin() : records_.upper_bound(after_id);
  for (; it != records_.end() && out.size() < limit; ++it) out.push_back(view(it->second));
  return out;
}

std::size_t MemoryRegistry::size() const {
  std::lock_guard lk(mu_);
  return records_.size();
}

std::optional<std::uint64_t> MemoryRegistry::replace_config(const core::MailboxConfig& config) {
  Sealed sealed = seal(config);  // outside the lock
  std::lock_guard lk(mu_);
  auto it = records_.find(config.id);
  if (it == records_.end()) return std::nullopt;
  auto& r = it->second;
  const auto& old = r.config.imap;
  const bool same_account = old.host == config.imap.host && old.port == config.imap.port &&
                            old.username == config.imap.username;
  std::vector<core::FolderCheckpoint> kept;
  if (same_account) {
    for (const auto& cp : r.checkpoints)
      for (const auto& f : config.folders)
        if (f == cp.name) kept.push_back(cp);
  }
  r.checkpoints = std::move(kept);
  r.config = config;
  if (opts_.secret_box) sealed_[config.id] = std::move(sealed);
  ++r.epoch;
  mark_dirty();
  return r.epoch;
}

bool MemoryRegistry::remove(std::string_view id) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return false;
  records_.erase(it);
  sealed_.erase(std::string(id));
  leases_.erase(std::string(id));
  states_.erase(std::string(id));
  mark_dirty();
  return true;
}

bool MemoryRegistry::save_checkpoint(std::string_view id, std::uint64_t epoch,
                                     const core::FolderCheckpoint& checkpoint,
                                     std::uint64_t delivered_increment) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end() || it->second.epoch != epoch) return false;
  auto& r = it->second;
  r.delivered += delivered_increment;
  for (auto& cp : r.checkpoints) {
    if (cp.name == checkpoint.name) {
      if (cp.uidvalidity == checkpoint.uidvalidity && cp.last_uid > checkpoint.last_uid)
        return true;  // never backwards within one uidvalidity (a late, stale task)
      cp = checkpoint;
      mark_dirty();
      return true;
    }
  }
  r.checkpoints.push_back(checkpoint);
  mark_dirty();
  return true;
}

bool MemoryRegistry::save_tokens(std::string_view id, const core::OAuth2Settings& tokens) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end() || !it->second.config.oauth2) return false;
  auto& a = *it->second.config.oauth2;
  a.access_token = tokens.access_token;
  a.expires_at = tokens.expires_at;
  if (!tokens.refresh_token.empty()) a.refresh_token = tokens.refresh_token;
  mark_dirty();
  return true;
}

bool MemoryRegistry::put_sync(std::string_view id, const std::string& text) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return false;
  it->second.sync = text;
  mark_dirty();
  return true;
}

void MemoryRegistry::expire_sends() {
  const auto now = std::chrono::system_clock::now();
  for (auto it = sends_.begin(); it != sends_.end();) {
    if (it->second.expires > now) {
      ++it;
      continue;
    }
    const auto& r = it->second.record;
    if (!r.idempotency_key.empty()) send_keys_.erase(r.mailbox_id + '\n' + r.idempotency_key);
    send_claims_.erase(it->first);
    it = sends_.erase(it);
  }
}

std::optional<SendRecord> MemoryRegistry::create_send(const SendRecord& send,
                                                      std::chrono::seconds retention) {
  std::lock_guard lk(mu_);
  expire_sends();
  if (!send.idempotency_key.empty()) {
    const std::string key = send.mailbox_id + '\n' + send.idempotency_key;
    if (auto k = send_keys_.find(key); k != send_keys_.end()) {
      if (auto s = sends_.find(k->second); s != sends_.end()) return s->second.record;
    }
    send_keys_[key] = send.id;
  }
  sends_[send.id] = StoredSend{send, std::chrono::system_clock::now() + retention};
  mark_dirty();
  return std::nullopt;
}

std::optional<SendRecord> MemoryRegistry::get_send(std::string_view id) const {
  std::lock_guard lk(mu_);
  auto it = sends_.find(id);
  // expire_sends() runs on writes only: a send past its retention is gone for readers already.
  if (it == sends_.end() || it->second.expires <= std::chrono::system_clock::now())
    return std::nullopt;
  return it->second.record;
}

void MemoryRegistry::update_send(const SendRecord& send) {
  std::lock_guard lk(mu_);
  auto it = sends_.find(send.id);
  if (it == sends_.end()) return;
  it->second.record = send;
  if (send.final()) {
    std::string().swap(it->second.record.raw);  // give the bytes back, not just the length
    send_claims_.erase(send.id);
  }
  mark_dirty();
}

std::vector<std::string> MemoryRegistry::pending_sends(std::size_t limit) const {
  std::lock_guard lk(mu_);
  std::vector<const SendRecord*> pending;
  const auto now = std::chrono::system_clock::now();
  for (const auto& [id, st] : sends_)
    if (!st.record.final() && st.expires > now) pending.push_back(&st.record);
  std::sort(pending.begin(), pending.end(),
            [](const auto* a, const auto* b) { return a->created_at < b->created_at; });
  std::vector<std::string> out;
  for (const auto* r : pending) {
    if (out.size() >= limit) break;
    out.push_back(r->id);
  }
  return out;
}

bool MemoryRegistry::claim_send(std::string_view id, std::string_view node,
                                std::chrono::milliseconds lease) {
  std::lock_guard lk(mu_);
  if (sends_.find(id) == sends_.end()) return false;
  const auto now = Clock::now();
  auto it = send_claims_.find(id);
  if (it != send_claims_.end() && it->second.until > now && it->second.node != node) return false;
  send_claims_[std::string(id)] = Lease{std::string(node), now + lease};
  return true;
}

std::optional<std::uint64_t> MemoryRegistry::epoch(std::string_view id) const {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return std::nullopt;
  return it->second.epoch;
}

MailboxRecord MemoryRegistry::view(const MailboxRecord& r) const {
  MailboxRecord out = r;
  const auto now = Clock::now();
  if (auto l = leases_.find(r.config.id); l != leases_.end() && l->second.until > now)
    out.owner = l->second.node;
  if (auto s = states_.find(r.config.id); s != states_.end()) {
    out.state = s->second.state;
    out.last_error = s->second.last_error;
    out.connected_since = s->second.connected_since;
  }
  return out;
}

std::optional<std::uint64_t> MemoryRegistry::claim(std::string_view id, std::string_view node,
                                                   std::chrono::milliseconds lease) {
  std::lock_guard lk(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return std::nullopt;
  const auto now = Clock::now();
  auto& l = leases_[std::string(id)];
  if (!l.node.empty() && l.until > now) return std::nullopt;
  l.node = std::string(node);
  l.until = now + lease;
  ++it->second.epoch;
  mark_dirty();
  return it->second.epoch;
}

std::vector<std::optional<std::uint64_t>> MemoryRegistry::renew(std::string_view node,
                                                                const std::vector<std::string>& ids,
                                                                std::chrono::milliseconds lease) {
  std::lock_guard lk(mu_);
  std::vector<std::optional<std::uint64_t>> out;
  out.reserve(ids.size());
  const auto now = Clock::now();
  for (const auto& id : ids) {
    auto r = records_.find(id);
    auto l = leases_.find(id);
    // A lease that expired but that no other node took is renewed: one process holds every
    // lease here (in Redis the key would be gone and the renewal would fail).
    if (r == records_.end() || l == leases_.end() || l->second.node != node) {
      out.emplace_back();
      continue;
    }
    l->second.until = now + lease;
    out.emplace_back(r->second.epoch);
  }
  return out;
}

void MemoryRegistry::release(std::string_view node, const std::vector<std::string>& ids) {
  std::lock_guard lk(mu_);
  for (const auto& id : ids)
    if (auto l = leases_.find(id); l != leases_.end() && l->second.node == node) leases_.erase(l);
}

std::vector<std::string> MemoryRegistry::unowned(std::size_t limit) const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  const auto now = Clock::now();
  for (const auto& [id, r] : records_) {
    if (out.size() >= limit) break;
    auto l = leases_.find(id);
    if (l == leases_.end() || l->second.until <= now) out.push_back(id);
  }
  return out;
}

void MemoryRegistry::publish_states(const std::vector<StateUpdate>& updates) {
  std::lock_guard lk(mu_);
  for (const auto& u : updates) {
    auto r = records_.find(u.id);
    if (r == records_.end() || r->second.epoch != u.epoch) continue;
    states_[u.id] = u;
  }
}

void MemoryRegistry::heartbeat(const NodeInfo& node, std::chrono::milliseconds ttl) {
  std::lock_guard lk(mu_);
  auto& n = nodes_[node.id];
  n.info = node;
  n.info.seen_at = core::format_rfc3339(std::chrono::system_clock::now());
  n.until = Clock::now() + ttl;
}

void MemoryRegistry::remove_node(std::string_view node) {
  std::lock_guard lk(mu_);
  if (auto it = nodes_.find(node); it != nodes_.end()) nodes_.erase(it);
}

std::vector<NodeInfo> MemoryRegistry::nodes() const {
  std::lock_guard lk(mu_);
  std::vector<NodeInfo> out;
  const auto now = Clock::now();
  for (const auto& [id, n] : nodes_)
    if (n.until > now) out.push_back(n.info);
  return out;
}

}  // namespace el::store
