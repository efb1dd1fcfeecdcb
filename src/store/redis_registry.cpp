// Registry on Redis: mailbox hashes, lease keys, node heartbeats; Lua scripts for atomicity.
#include "store/redis_registry.hpp"

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <stdexcept>

#include "core/log.hpp"
#include "store/record_json.hpp"
#include "store/redis_client.hpp"

namespace el::store {

namespace json = boost::json;
using redis::Args;
using redis::ScriptCall;
using redis::Value;

namespace {

// Ids per script call in batches: keeps each script short (it blocks Redis while it runs) and
// each request well under Redis's 1 GiB query buffer limit.
constexpr std::size_t kBatch = 500;
constexpr std::size_t kListPage = 500;
constexpr std::size_t kScanPage = 1000;

// Lua numbers are doubles: epochs (64-bit) are compared and returned as strings, never as
// numbers, so none loses precision (HINCRBY's own reply is a number, hence the HGET after it).

// KEYS: hash, zset. ARGV: id, cfg, epoch, delivered, created_at, then cp field/value pairs.
const redis::Script& add_script() {
  static const redis::Script s(R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local f = {'cfg', ARGV[2], 'epoch', ARGV[3], 'delivered', ARGV[4], 'created_at', ARGV[5]}
for i = 6, #ARGV do f[#f + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(f))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
)lua");
  return s;
}

// KEYS: hash. ARGV: cfg, host, port, username, folders... Keeps the checkpoints of folders
// still watched when the account (host, port, username) is the same, as MemoryRegistry does.
const redis::Script& replace_script() {
  static const redis::Script s(R"lua(
local old = redis.call('HGET', KEYS[1], 'cfg')
if not old then return false end
local same = false
local ok, o = pcall(cjson.decode, old)
if ok and type(o) == 'table' and type(o.imap) == 'table' then
  same = o.imap.host == ARGV[2] and tostring(o.imap.port) == ARGV[3] and
         o.imap.username == ARGV[4]
end
local keep = {}
if same then
  for i = 5, #ARGV do keep['cp:' .. ARGV[i]] = true end
end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 3) == 'cp:' and not keep[f] then redis.call('HDEL', KEYS[1], f) end
end
redis.call('HSET', KEYS[1], 'cfg', ARGV[1])
redis.call('HDEL', KEYS[1], 'oauth')
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return redis.call('HGET', KEYS[1], 'epoch')
)lua");
  return s;
}

// KEYS: hash. ARGV: field, value. Sets a field of an existing mailbox only.
const redis::Script& hset_existing_script() {
  static const redis::Script s(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
)lua");
  return s;
}

// KEYS: hash. ARGV: oauth JSON, keep_refresh. Sets the refreshed tokens of an existing mailbox;
// with keep_refresh = '1' (the new tokens carry no refresh token) the refresh token an earlier
// save stored is kept, as MemoryRegistry keeps it (absent: the settings' one applies on read).
const redis::Script& save_tokens_script() {
  static const redis::Script s(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local text = ARGV[1]
if ARGV[2] == '1' then
  local old = redis.call('HGET', KEYS[1], 'oauth')
  if old then
    local ok_old, o = pcall(cjson.decode, old)
    local ok_new, n = pcall(cjson.decode, text)
    if ok_old and ok_new and type(o) == 'table' and type(n) == 'table' and
       type(o.refresh_token) == 'string' and o.refresh_token ~= '' then
      n.refresh_token = o.refresh_token
      text = cjson.encode(n)
    end
  end
end
redis.call('HSET', KEYS[1], 'oauth', text)
return 1
)lua");
  return s;
}

// KEYS: send key, idempotency key (or the send key again), pending zset. ARGV: id, json,
// retention ms, score, has_key. Returns the existing send's JSON, or nil once stored.
const redis::Script& create_send_script() {
  static const redis::Script s(R"lua(
if ARGV[5] == '1' then
  local other = redis.call('GET', KEYS[2])
  if other then
    local existing = redis.call('GET', ARGV[6] .. other)
    if existing then return existing end
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return false
)lua");
  return s;
}

// KEYS: send key, pending zset. ARGV: id, json, final.
const redis::Script& update_send_script() {
  static const redis::Script s(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[3] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
)lua");
  return s;
}

// KEYS: claim key. ARGV: node, lease ms.
const redis::Script& claim_send_script() {
  static const redis::Script s(R"lua(
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua");
  return s;
}

// KEYS: hash, lease, zset. ARGV: id.
const redis::Script& remove_script() {
  static const redis::Script s(R"lua(
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return n
)lua");
  return s;
}

// KEYS: hash. ARGV: epoch, cp field, uidvalidity, last_uid, delivered increment.
// The delivered count grows even when a late task's lower last_uid is ignored: its events were
// accepted by the sink all the same (MemoryRegistry counts them too).
const redis::Script& checkpoint_script() {
  static const redis::Script s(R"lua(
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[1], 'delivered', ARGV[5]) end
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur then
  local v, u = string.match(cur, '^(%d+):(%d+)$')
  if v == ARGV[3] and tonumber(u) > tonumber(ARGV[4]) then return 1 end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. ':' .. ARGV[4])
return 1
)lua");
  return s;
}

// KEYS: hash, lease. ARGV: node, lease ms.
const redis::Script& claim_script() {
  static const redis::Script s(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return redis.call('HGET', KEYS[1], 'epoch')
)lua");
  return s;
}

// KEYS: lease1, hash1, lease2, hash2, ... ARGV: node, lease ms. Returns per id the epoch
// (a string) or nil. A lease whose mailbox is gone is deleted so that it cannot outlive it.
const redis::Script& renew_script() {
  static const redis::Script s(R"lua(
local out = {}
for i = 1, #KEYS, 2 do
  local e = false
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    e = redis.call('HGET', KEYS[i + 1], 'epoch')
    if e then
      redis.call('PEXPIRE', KEYS[i], ARGV[2])
    else
      redis.call('DEL', KEYS[i])
    end
  end
  out[#out + 1] = e
end
return out
)lua");
  return s;
}

// KEYS: leases. ARGV: node.
const redis::Script& release_script() {
  static const redis::Script s(R"lua(
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return #KEYS
)lua");
  return s;
}

// KEYS: hashes. ARGV: epoch, state, last_error, connected_since for each. Empty values are
// deleted rather than stored (memory: a field costs ~50 bytes even when empty).
const redis::Script& publish_script() {
  static const redis::Script s(R"lua(
local names = {'state', 'last_error', 'connected_since'}
for i = 1, #KEYS do
  local a = (i - 1) * 4
  if redis.call('HGET', KEYS[i], 'epoch') == ARGV[a + 1] then
    for j = 1, 3 do
      local v = ARGV[a + 1 + j]
      if v == '' then
        redis.call('HDEL', KEYS[i], names[j])
      else
        redis.call('HSET', KEYS[i], names[j], v)
      end
    end
  end
end
return #KEYS
)lua");
  return s;
}

// KEYS: nodes set, then node keys. ARGV: the node ids. Drops members whose key expired; checked
// again here because a heartbeat may have revived one since nodes() read it.
const redis::Script& prune_nodes_script() {
  static const redis::Script s(R"lua(
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i - 1]) end
end
return 1
)lua");
  return s;
}

const Value& checked(const Value& v, std::string_view what) {
  if (v.is_error()) throw Unavailable("redis " + std::string(what) + ": " + v.str);
  return v;
}

std::uint64_t to_u64(std::string_view s, std::string_view what) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size())
    throw std::runtime_error("redis: bad " + std::string(what) + " value");
  return n;
}

// The epoch a script returned: an integer, or a string when it came from a hash field.
std::optional<std::uint64_t> epoch_of(const Value& v, std::string_view what) {
  checked(v, what);
  if (v.type == Value::Type::integer) return static_cast<std::uint64_t>(v.integer);
  if (v.type == Value::Type::string) return to_u64(v.str, "epoch");
  return std::nullopt;
}

std::string ms(std::chrono::milliseconds d) {
  return std::to_string(std::max<std::chrono::milliseconds::rep>(1, d.count()));
}

std::string checkpoint_field(std::string_view folder) { return "cp:" + std::string(folder); }
std::string checkpoint_value(const core::FolderCheckpoint& cp) {
  return std::to_string(cp.uidvalidity) + ":" + std::to_string(cp.last_uid);
}

std::string node_json(const NodeInfo& n) {
  return json::serialize(json::object{{"id", n.id},
                                      {"role", n.role},
                                      {"capacity", n.capacity},
                                      {"held", n.held},
                                      {"version", n.version},
                                      {"started_at", n.started_at},
                                      {"seen_at", n.seen_at}});
}

std::optional<NodeInfo> node_from_json(const std::string& id, const std::string& text) {
  try {
    const auto o = json::parse(text).as_object();
    auto str = [&](const char* k) {
      const auto* v = o.if_contains(k);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    auto num = [&](const char* k) {
      const auto* v = o.if_contains(k);
      return v && v->is_number() ? v->to_number<std::size_t>() : std::size_t{0};
    };
    NodeInfo n;
    n.id = id;
    n.role = str("role");
    n.capacity = num("capacity");
    n.held = num("held");
    n.version = str("version");
    n.started_at = str("started_at");
    n.seen_at = str("seen_at");
    return n;
  } catch (const std::exception& e) {
    log::warn("redis_bad_node_entry", {{"node", id}, {"error", e.what()}});
    return std::nullopt;
  }
}

}  // namespace

RedisRegistry::RedisRegistry(RedisRegistryOptions opts) : opts_(std::move(opts)) {
  if (opts_.connections == 0) opts_.connections = 1;
  redis::ClientOptions co;
  co.endpoint = redis::parse_url(opts_.url);
  co.connections = opts_.connections;
  co.connect_timeout = opts_.connect_timeout;
  co.command_timeout = opts_.command_timeout;
  client_ = std::make_unique<redis::Client>(std::move(co));
  mailboxes_key_ = opts_.prefix + "mailboxes";
  nodes_key_ = opts_.prefix + "nodes";
  pool_ = std::make_unique<boost::asio::thread_pool>(opts_.connections);
}

RedisRegistry::~RedisRegistry() { pool_->join(); }

boost::asio::thread_pool* RedisRegistry::blocking_pool() { return pool_.get(); }
bool RedisRegistry::healthy() const { return client_->healthy(); }
bool RedisRegistry::ping() { return client_->ping(); }
const std::string& RedisRegistry::where() const { return client_->where(); }

std::string RedisRegistry::mailbox_key(std::string_view id) const {
  return opts_.prefix + "mbx:" + std::string(id);
}
std::string RedisRegistry::lease_key(std::string_view id) const {
  return opts_.prefix + "lease:" + std::string(id);
}
std::string RedisRegistry::node_key(std::string_view id) const {
  return opts_.prefix + "node:" + std::string(id);
}

std::string RedisRegistry::config_json(const core::MailboxConfig& config) const {
  auto o = config_to_object(config, opts_.secret_box.get());
  // Defaults cost bytes in every mailbox (memory budget) and config_from_object fills them in.
  if (auto* imap = o.if_contains("imap"); imap && imap->is_object()) {
    auto& i = imap->as_object();
    if (auto* ca = i.if_contains("tls_ca_file"); ca && ca->is_string() && ca->as_string().empty())
      i.erase("tls_ca_file");
    if (auto* ins = i.if_contains("tls_insecure"); ins && ins->is_bool() && !ins->as_bool())
      i.erase("tls_insecure");
  }
  return json::serialize(o);
}

MailboxRecord RedisRegistry::parse_record(std::string_view id, const Value& hash,
                                          const Value& lease) const {
  MailboxRecord r;
  bool have_config = false;
  const std::string* oauth = nullptr;  // tokens refreshed since the settings were written
  const auto& e = hash.elements;
  for (std::size_t i = 0; i + 1 < e.size(); i += 2) {
    const std::string& field = e[i].str;
    const std::string& value = e[i + 1].str;
    if (field == "cfg") {
      json::object o;
      try {
        o = json::parse(value).as_object();
      } catch (const std::exception& ex) {
        throw std::runtime_error("the settings of mailbox " + std::string(id) +
                                 " in redis are not valid JSON: " + ex.what());
      }
      r.config = config_from_object(o, opts_.secret_box.get());  // throws for sealed secrets
      have_config = true;
    } else if (field == "oauth") {
      oauth = &value;
    } else if (field == "sync") {
      r.sync = value;
    } else if (field == "epoch") {
      r.epoch = to_u64(value, "epoch");
    } else if (field == "delivered") {
      r.delivered = to_u64(value, "delivered");
    } else if (field == "created_at") {
      r.created_at = value;
    } else if (field == "state") {
      r.state = value;
    } else if (field == "last_error") {
      r.last_error = value;
    } else if (field == "connected_since") {
      r.connected_since = value;
    } else if (field.starts_with("cp:")) {
      const auto colon = value.find(':');
      if (colon == std::string::npos)
        throw std::runtime_error("redis: bad checkpoint of mailbox " + std::string(id));
      const std::string_view v(value);
      r.checkpoints.push_back(
          {field.substr(3), static_cast<std::uint32_t>(to_u64(v.substr(0, colon), "checkpoint")),
           static_cast<std::uint32_t>(to_u64(v.substr(colon + 1), "checkpoint"))});
    }
  }
  if (!have_config)
    throw std::runtime_error("mailbox " + std::string(id) + " in redis has no settings");
  if (oauth != nullptr && r.config.oauth2) {
    // The same layout as the settings' "oauth2" object, sealed the same way.
    json::object cfg{
        {"id", r.config.id},
        {"email", r.config.email},
        {"imap",
         json::object{
             {"host", ""}, {"port", 0}, {"security", "tls"}, {"username", ""}, {"password", ""}}},
        {"folders", json::array{}},
        {"oauth2", json::parse(*oauth)}};
    auto parsed = config_from_object(cfg, opts_.secret_box.get());
    auto& a = *r.config.oauth2;
    a.access_token = parsed.oauth2->access_token;
    a.expires_at = parsed.oauth2->expires_at;
    if (!parsed.oauth2->refresh_token.empty()) a.refresh_token = parsed.oauth2->refresh_token;
  }
  if (lease.type == Value::Type::string) r.owner = lease.str;
  std::sort(r.checkpoints.begin(), r.checkpoints.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return r;
}

// --- mailboxes ---------------------------------------------------------------------------------

bool RedisRegistry::add(const MailboxRecord& record) {
  const auto& id = record.config.id;
  Args args{id, config_json(record.config), std::to_string(record.epoch),
            std::to_string(record.delivered), record.created_at};
  for (const auto& cp : record.checkpoints) {
    args.push_back(checkpoint_field(cp.name));
    args.push_back(checkpoint_value(cp));
  }
  auto v = client_->eval(add_script(), {mailbox_key(id), mailboxes_key_}, args);
  return checked(v, "add").integer == 1;
}

std::optional<MailboxRecord> RedisRegistry::get(std::string_view id) const {
  auto replies = client_->pipeline({{"HGETALL", mailbox_key(id)}, {"GET", lease_key(id)}});
  checked(replies[0], "get");
  checked(replies[1], "get");
  if (replies[0].elements.empty()) return std::nullopt;
  return parse_record(id, replies[0], replies[1]);
}

std::vector<MailboxRecord> RedisRegistry::list(std::string_view after_id, std::size_t limit) const {
  std::vector<MailboxRecord> out;
  std::string cursor(after_id);
  while (out.size() < limit) {
    const std::size_t want = std::min(limit - out.size(), kListPage);
    auto ids = client_->command({"ZRANGEBYLEX", mailboxes_key_,
                                 cursor.empty() ? std::string("-") : "(" + cursor, "+", "LIMIT",
                                 "0", std::to_string(want)});
    checked(ids, "list");
    if (ids.elements.empty()) break;
    std::vector<Args> cmds;
    cmds.reserve(2 * ids.elements.size());
    for (const auto& id : ids.elements) {
      cmds.push_back({"HGETALL", mailbox_key(id.str)});
      cmds.push_back({"GET", lease_key(id.str)});
    }
    auto replies = client_->pipeline(cmds);
    for (std::size_t i = 0; i < ids.elements.size(); ++i) {
      const auto& hash = checked(replies[2 * i], "list");
      if (hash.elements.empty()) continue;  // removed since ZRANGEBYLEX
      out.push_back(parse_record(ids.elements[i].str, hash, checked(replies[2 * i + 1], "list")));
    }
    cursor = ids.elements.back().str;
    if (ids.elements.size() < want) break;
  }
  return out;
}

std::size_t RedisRegistry::size() const {
  auto v = client_->command({"ZCARD", mailboxes_key_});
  return static_cast<std::size_t>(checked(v, "size").integer);
}

std::optional<std::uint64_t> RedisRegistry::replace_config(const core::MailboxConfig& config) {
  // Sealing here with the current key is what re-seals values sealed with an old one.
  Args args{config_json(config), config.imap.host, std::to_string(config.imap.port),
            config.imap.username};
  args.insert(args.end(), config.folders.begin(), config.folders.end());
  return epoch_of(client_->eval(replace_script(), {mailbox_key(config.id)}, args),
                  "replace_config");
}

bool RedisRegistry::remove(std::string_view id) {
  auto v = client_->eval(remove_script(), {mailbox_key(id), lease_key(id), mailboxes_key_},
                         {std::string(id)});
  return checked(v, "remove").integer == 1;
}

bool RedisRegistry::save_tokens(std::string_view id, const core::OAuth2Settings& tokens) {
  core::MailboxConfig c;
  c.id = std::string(id);
  c.oauth2 = tokens;
  auto o = config_to_object(c, opts_.secret_box.get());
  const std::string text = json::serialize(o.at("oauth2"));
  auto v = client_->eval(save_tokens_script(), {mailbox_key(id)},
                         {text, tokens.refresh_token.empty() ? "1" : "0"});
  return checked(v, "save_tokens").integer == 1;
}

bool RedisRegistry::put_sync(std::string_view id, const std::string& text) {
  auto v = client_->eval(hset_existing_script(), {mailbox_key(id)}, {"sync", text});
  return checked(v, "put_sync").integer == 1;
}

std::string RedisRegistry::send_key(std::string_view id) const {
  return opts_.prefix + "send:" + std::string(id);
}

std::optional<SendRecord> RedisRegistry::create_send(const SendRecord& send,
                                                     std::chrono::seconds retention) {
  const bool keyed = !send.idempotency_key.empty();
  const std::string idem =
      keyed ? opts_.prefix + "sendkey:" + send.mailbox_id + ":" + send.idempotency_key
            : send_key(send.id);
  const auto score = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  auto v = client_->eval(
      create_send_script(), {send_key(send.id), idem, opts_.prefix + "sends:pending"},
      {send.id, send_to_json(send),
       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(retention).count()),
       std::to_string(score), keyed ? "1" : "0", opts_.prefix + "send:"});
  checked(v, "create_send");
  if (v.type == Value::Type::string) return send_from_json(v.str);
  return std::nullopt;
}

std::optional<SendRecord> RedisRegistry::get_send(std::string_view id) const {
  auto v = client_->command({"GET", send_key(id)});
  checked(v, "get_send");
  if (v.type != Value::Type::string) return std::nullopt;
  return send_from_json(v.str);
}

void RedisRegistry::update_send(const SendRecord& send) {
  SendRecord copy = send;
  if (copy.final()) copy.raw.clear();
  auto v = client_->eval(update_send_script(), {send_key(send.id), opts_.prefix + "sends:pending"},
                         {send.id, send_to_json(copy), copy.final() ? "1" : "0"});
  checked(v, "update_send");
}

std::vector<std::string> RedisRegistry::pending_sends(std::size_t limit) const {
  if (limit == 0) return {};  // ZRANGE 0 0 would still answer one id
  auto v =
      client_->command({"ZRANGE", opts_.prefix + "sends:pending", "0", std::to_string(limit - 1)});
  checked(v, "pending_sends");
  std::vector<std::string> out;
  for (const auto& e : v.elements) out.push_back(e.str);
  return out;
}

bool RedisRegistry::claim_send(std::string_view id, std::string_view node,
                               std::chrono::milliseconds lease) {
  auto v = client_->eval(claim_send_script(), {opts_.prefix + "sendclaim:" + std::string(id)},
                         {std::string(node), std::to_string(lease.count())});
  return checked(v, "claim_send").integer == 1;
}

std::optional<std::uint64_t> RedisRegistry::epoch(std::string_view id) const {
  return epoch_of(client_->command({"HGET", mailbox_key(id), "epoch"}), "epoch");
}

bool RedisRegistry::save_checkpoint(std::string_view id, std::uint64_t epoch,
                                    const core::FolderCheckpoint& checkpoint,
                                    std::uint64_t delivered_increment) {
  auto v =
      client_->eval(checkpoint_script(), {mailbox_key(id)},
                    {std::to_string(epoch), checkpoint_field(checkpoint.name),
                     std::to_string(checkpoint.uidvalidity), std::to_string(checkpoint.last_uid),
                     std::to_string(delivered_increment)});
  return checked(v, "save_checkpoint").integer == 1;
}

// --- ownership ---------------------------------------------------------------------------------

std::optional<std::uint64_t> RedisRegistry::claim(std::string_view id, std::string_view node,
                                                  std::chrono::milliseconds lease) {
  return epoch_of(client_->eval(claim_script(), {mailbox_key(id), lease_key(id)},
                                {std::string(node), ms(lease)}),
                  "claim");
}

std::vector<std::optional<std::uint64_t>> RedisRegistry::renew(std::string_view node,
                                                               const std::vector<std::string>& ids,
                                                               std::chrono::milliseconds lease) {
  std::vector<std::optional<std::uint64_t>> out;
  if (ids.empty()) return out;
  std::vector<ScriptCall> calls;
  for (std::size_t i = 0; i < ids.size(); i += kBatch) {
    ScriptCall call;
    const std::size_t end = std::min(ids.size(), i + kBatch);
    for (std::size_t k = i; k < end; ++k) {
      call.keys.push_back(lease_key(ids[k]));
      call.keys.push_back(mailbox_key(ids[k]));
    }
    call.args = {std::string(node), ms(lease)};
    calls.push_back(std::move(call));
  }
  auto replies = client_->eval_pipeline(renew_script(), calls);
  out.reserve(ids.size());
  for (std::size_t c = 0; c < replies.size(); ++c) {
    const auto& r = checked(replies[c], "renew");
    if (r.elements.size() != calls[c].keys.size() / 2)
      throw Unavailable("redis renew: unexpected reply");
    for (const auto& e : r.elements) out.push_back(epoch_of(e, "renew"));
  }
  return out;
}

void RedisRegistry::release(std::string_view node, const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  std::vector<ScriptCall> calls;
  for (std::size_t i = 0; i < ids.size(); i += kBatch) {
    ScriptCall call;
    const std::size_t end = std::min(ids.size(), i + kBatch);
    for (std::size_t k = i; k < end; ++k) call.keys.push_back(lease_key(ids[k]));
    call.args = {std::string(node)};
    calls.push_back(std::move(call));
  }
  for (const auto& r : client_->eval_pipeline(release_script(), calls)) checked(r, "release");
}

std::vector<std::string> RedisRegistry::unowned(std::size_t limit) const {
  std::vector<std::string> out;
  std::string cursor;
  while (out.size() < limit) {
    auto ids = client_->command({"ZRANGEBYLEX", mailboxes_key_,
                                 cursor.empty() ? std::string("-") : "(" + cursor, "+", "LIMIT",
                                 "0", std::to_string(kScanPage)});
    checked(ids, "unowned");
    if (ids.elements.empty()) break;
    std::vector<Args> cmds;
    cmds.reserve(ids.elements.size());
    for (const auto& id : ids.elements) cmds.push_back({"EXISTS", lease_key(id.str)});
    auto held = client_->pipeline(cmds);
    for (std::size_t i = 0; i < held.size() && out.size() < limit; ++i)
      if (checked(held[i], "unowned").integer == 0) out.push_back(ids.elements[i].str);
    cursor = ids.elements.back().str;
    if (ids.elements.size() < kScanPage) break;
  }
  return out;
}

void RedisRegistry::publish_states(const std::vector<StateUpdate>& updates) {
  if (updates.empty()) return;
  std::vector<ScriptCall> calls;
  for (std::size_t i = 0; i < updates.size(); i += kBatch) {
    ScriptCall call;
    const std::size_t end = std::min(updates.size(), i + kBatch);
    for (std::size_t k = i; k < end; ++k) {
      const auto& u = updates[k];
      call.keys.push_back(mailbox_key(u.id));
      call.args.insert(call.args.end(),
                       {std::to_string(u.epoch), u.state, u.last_error, u.connected_since});
    }
    calls.push_back(std::move(call));
  }
  for (const auto& r : client_->eval_pipeline(publish_script(), calls))
    checked(r, "publish_states");
}

// --- nodes -------------------------------------------------------------------------------------

void RedisRegistry::heartbeat(const NodeInfo& node, std::chrono::milliseconds ttl) {
  NodeInfo n = node;
  n.seen_at = core::format_rfc3339(std::chrono::system_clock::now());
  auto replies = client_->pipeline(
      {{"SET", node_key(n.id), node_json(n), "PX", ms(ttl)}, {"SADD", nodes_key_, n.id}});
  for (const auto& r : replies) checked(r, "heartbeat");
}

void RedisRegistry::remove_node(std::string_view node) {
  auto replies =
      client_->pipeline({{"DEL", node_key(node)}, {"SREM", nodes_key_, std::string(node)}});
  for (const auto& r : replies) checked(r, "remove_node");
}

std::vector<NodeInfo> RedisRegistry::nodes() const {
  std::vector<NodeInfo> out;
  auto members = client_->command({"SMEMBERS", nodes_key_});
  checked(members, "nodes");
  if (members.elements.empty()) return out;
  Args mget{"MGET"};
  for (const auto& m : members.elements) mget.push_back(node_key(m.str));
  auto values = client_->command(mget);
  checked(values, "nodes");
  ScriptCall prune{{nodes_key_}, {}};
  for (std::size_t i = 0; i < members.elements.size() && i < values.elements.size(); ++i) {
    const auto& id = members.elements[i].str;
    const auto& v = values.elements[i];
    if (v.type != Value::Type::string) {
      prune.keys.push_back(node_key(id));
      prune.args.push_back(id);
      continue;
    }
    if (auto n = node_from_json(id, v.str)) out.push_back(std::move(*n));
  }
  if (!prune.args.empty())
    checked(client_->eval(prune_nodes_script(), prune.keys, prune.args), "nodes");
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

}  // namespace el::store
