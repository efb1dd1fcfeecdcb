// In-memory registry with an optional state file written atomically by a background thread.
#include "store/memory_registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/log.hpp"

namespace el::store {

namespace json = boost::json;

const core::FolderCheckpoint* MailboxRecord::checkpoint(std::string_view folder) const {
  for (const auto& c : checkpoints)
    if (c.name == folder) return &c;
  return nullptr;
}

namespace {

std::string seal_secret(const core::Secret& secret, const std::string& id,
                        const core::SecretBox* box) {
  if (!box || secret.empty()) return secret.reveal();
  return box->seal(secret.reveal(), id);
}

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

// sealed_password / sealed_secret: already sealed values to write, or null to seal here.
json::object to_object(const MailboxRecord& r, const core::SecretBox* box,
                       const std::string* sealed_password = nullptr,
                       const std::string* sealed_secret = nullptr) {
  const auto& c = r.config;
  json::object imap{
      {"host", c.imap.host},
      {"port", c.imap.port},
      {"security", core::to_string(c.imap.security)},
      {"username", c.imap.username},
      {"password", sealed_password ? *sealed_password : seal_secret(c.imap.password, c.id, box)},
      {"tls_ca_file", c.imap.tls.ca_file},
      {"tls_insecure", c.imap.tls.insecure}};
  json::array folders;
  for (const auto& f : c.folders) folders.emplace_back(f);
  json::object o{
      {"id", c.id}, {"email", c.email}, {"imap", std::move(imap)}, {"folders", std::move(folders)}};
  if (c.since) o["since"] = core::format_rfc3339(*c.since);
  if (c.webhook)
    o["webhook"] = json::object{
        {"url", c.webhook->url},
        {"secret", sealed_secret ? *sealed_secret : seal_secret(c.webhook->secret, c.id, box)}};
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

MailboxRecord from_object(const json::object& o, const core::SecretBox* box) {
  MailboxRecord r;
  auto& c = r.config;
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

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

std::string record_to_json(const MailboxRecord& r, const core::SecretBox* box) {
  return json::serialize(to_object(r, box));
}

MailboxRecord record_from_json(std::string_view text, const core::SecretBox* box) {
  return from_object(json::parse(text).as_object(), box);
}

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
      auto r = from_object(v.as_object(), opts_.secret_box.get());
      if (opts_.secret_box) sealed_[r.config.id] = seal(r.config);
      records_.emplace(r.config.id, std::move(r));
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
        arr.emplace_back(to_object(r, nullptr));
      } else {
        arr.emplace_back(to_object(r, opts_.secret_box.get(), &sealed->second.password,
                                   &sealed->second.webhook_secret));
      }
    }
  }
  return json::serialize(json::object{{"version", 1}, {"mailboxes", std::move(arr)}});
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
  return it->second;
}

std::vector<MailboxRecord> MemoryRegistry::list(std::string_view after_id,
                                                std::size_t limit) const {
  std::lock_guard lk(mu_);
  std::vector<MailboxRecord> out;
  auto it = after_id.empty() ? records_.begin() : records_.upper_bound(after_id);
  for (; it != records_.end() && out.size() < limit; ++it) out.push_back(it->second);
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
      cp = checkpoint;
      mark_dirty();
      return true;
    }
  }
  r.checkpoints.push_back(checkpoint);
  mark_dirty();
  return true;
}

}  // namespace el::store
