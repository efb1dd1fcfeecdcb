// Blocking Redis client over hiredis: connection pool, pipelines, scripts.
#include "store/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <boost/url/parse.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "core/log.hpp"
#include "store/registry.hpp"

namespace el::store::redis {

namespace {

constexpr std::string_view kUrlForm = "redis://[user:password@]host:port/db";

timeval to_timeval(std::chrono::milliseconds ms) {
  if (ms.count() <= 0) ms = std::chrono::milliseconds(1);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

Value to_value(const redisReply& r) {
  Value v;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      v.type = Value::Type::string;
      v.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = Value::Type::status;
      v.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = Value::Type::error;
      v.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = Value::Type::integer;
      v.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = Value::Type::array;
      v.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i) v.elements.push_back(to_value(*r.element[i]));
      break;
    default:
      break;  // nil
  }
  return v;
}

// Errors after which the connection is not worth keeping: the server is starting, is a replica
// now (failover) or forgot who we are; a fresh connection (resolve, AUTH, SELECT) may fare better.
bool connection_level_error(const Value& v) {
  if (!v.is_error()) return false;
  for (std::string_view p : {"LOADING", "READONLY", "MASTERDOWN", "NOAUTH", "WRONGPASS"})
    if (std::string_view(v.str).substr(0, p.size()) == p) return true;
  return false;
}

// An idle connection has nothing to read in RESP2: readable means the server closed it
// (restart, `timeout` setting) or reset it. Catching that before use spares the caller a
// failure that a fresh connection would not have had.
bool idle_connection_alive(const redisContext* c) {
  pollfd p{c->fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

// hiredis writes with write(2): a connection the server closed would raise SIGPIPE, whose
// default action ends the process. Block it on this thread for the round trip and swallow one
// we caused, without touching the process-wide disposition (the application's business).
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        timespec zero{0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

std::string sha1_hex(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha1(), nullptr) != 1)
    throw std::runtime_error("SHA-1 of a Lua script failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

Args script_command(const char* verb, const std::string& script, const ScriptCall& call) {
  Args argv;
  argv.reserve(3 + call.keys.size() + call.args.size());
  argv.emplace_back(verb);
  argv.push_back(script);
  argv.push_back(std::to_string(call.keys.size()));
  argv.insert(argv.end(), call.keys.begin(), call.keys.end());
  argv.insert(argv.end(), call.args.begin(), call.args.end());
  return argv;
}

bool is_noscript(const Value& v) {
  return v.is_error() && std::string_view(v.str).substr(0, 8) == "NOSCRIPT";
}

}  // namespace

std::string Endpoint::describe() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" + std::to_string(db);
}

Endpoint parse_url(std::string_view url) {
  auto bad = [](std::string_view why) {
    return std::invalid_argument("bad Redis URL (" + std::string(why) + "); expected " +
                                 std::string(kUrlForm));
  };
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) throw bad("not a URL");
  const auto& u = *parsed;
  if (u.scheme() == "rediss") throw bad("TLS (rediss://) is not supported");
  if (u.scheme() != "redis") throw bad("the scheme must be redis://");
  Endpoint e;
  e.host = u.host_address();
  if (e.host.empty()) throw bad("no host");
  if (u.has_port()) {
    // port_number() wraps values over 65535 silently.
    const auto text = u.port();
    unsigned port = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc() || end != text.data() + text.size() || port == 0 || port > 65535)
      throw bad("the port must be 1-65535");
    e.port = static_cast<std::uint16_t>(port);
  }
  if (u.has_userinfo()) {
    e.user = u.user();
    if (u.has_password()) e.password = core::Secret(u.password());
  }
  if (e.password.empty()) e.user.clear();  // nothing to authenticate with (as redis-cli does)
  std::string path = u.path();
  if (!path.empty() && path != "/") {
    std::string_view digits(path);
    digits.remove_prefix(1);
    int db = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), db);
    if (path[0] != '/' || ec != std::errc() || end != digits.data() + digits.size() || db < 0)
      throw bad("the path must be the database number, e.g. /0");
    e.db = db;
  }
  if (u.has_query() || u.has_fragment()) throw bad("query and fragment are not supported");
  return e;
}

Script::Script(std::string src) : source(std::move(src)), sha1(sha1_hex(source)) {}

void Client::ContextFree::operator()(redisContext* c) const { redisFree(c); }

Client::Client(ClientOptions opts) : opts_(std::move(opts)), where_(opts_.endpoint.describe()) {
  if (opts_.connections == 0) opts_.connections = 1;
}

Client::~Client() = default;

void Client::set_healthy(bool ok, std::string_view error) {
  const bool was = healthy_.exchange(ok, std::memory_order_relaxed);
  if (was == ok) return;
  // Transitions only: an outage would otherwise log once per call.
  if (ok)
    log::info("redis_connected", {{"redis", where_}});
  else
    log::warn("redis_unavailable", {{"redis", where_}, {"error", std::string(error)}});
}

void Client::fail(const std::string& what) {
  std::string msg = "redis " + where_ + ": " + what;
  // Belt and braces: no server message we know of echoes the password, but none may.
  const auto& pw = opts_.endpoint.password.reveal();
  if (!pw.empty())
    for (auto pos = msg.find(pw); pos != std::string::npos; pos = msg.find(pw, pos))
      msg.replace(pos, pw.size(), "***");
  set_healthy(false, msg);
  throw Unavailable(msg);
}

std::string Client::io_error(const redisContext* c) const {
  // hiredis reports a read past SO_RCVTIMEO as EAGAIN, which reads like a bug in a log.
  if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
    return "no answer within " + std::to_string(opts_.command_timeout.count()) + " ms";
  if (c->err == REDIS_ERR_EOF) return "the server closed the connection";
  return c->errstr;
}

Client::Context Client::connect() {
  const auto& ep = opts_.endpoint;
  Context c(redisConnectWithTimeout(ep.host.c_str(), ep.port, to_timeval(opts_.connect_timeout)));
  if (!c) fail("cannot connect: out of memory");
  if (c->err) fail(std::string("cannot connect: ") + c->errstr);
  if (redisSetTimeout(c.get(), to_timeval(opts_.command_timeout)) != REDIS_OK ||
      redisEnableKeepAlive(c.get()) != REDIS_OK)
    fail(std::string("cannot set socket options: ") + c->errstr);

  SigpipeBlock no_sigpipe;
  auto exchange = [&](const Args& argv, const char* what) {
    std::vector<const char*> ptrs;
    std::vector<std::size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    Reply r(static_cast<redisReply*>(
        redisCommandArgv(c.get(), static_cast<int>(argv.size()), ptrs.data(), lens.data())));
    if (!r) {
      const std::string detail = io_error(c.get());
      fail(std::string(what) + " failed: " + detail);
    }
    if (r->type == REDIS_REPLY_ERROR)
      fail(std::string(what) + " refused: " + std::string(r->str, r->len));
  };
  if (!ep.password.empty()) {
    if (ep.user.empty())
      exchange({"AUTH", ep.password.reveal()}, "authentication");
    else
      exchange({"AUTH", ep.user, ep.password.reveal()}, "authentication");
  }
  if (ep.db != 0) exchange({"SELECT", std::to_string(ep.db)}, "SELECT");
  return c;
}

Client::Context Client::acquire() {
  std::unique_lock lk(mu_);
  const auto deadline =
      std::chrono::steady_clock::now() + opts_.connect_timeout + opts_.command_timeout;
  while (true) {
    while (!idle_.empty()) {
      Context c = std::move(idle_.back());
      idle_.pop_back();
      if (idle_connection_alive(c.get())) return c;
      --open_;
    }
    if (open_ < opts_.connections) {
      ++open_;
      lk.unlock();
      try {
        return connect();
      } catch (...) {
        lk.lock();
        --open_;
        cv_.notify_one();
        throw;
      }
    }
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= opts_.connections)
      throw Unavailable("redis " + where_ + ": all " + std::to_string(opts_.connections) +
                        " connections stayed busy");
  }
}

void Client::give_back(Context c) {
  std::lock_guard lk(mu_);
  if (c)
    idle_.push_back(std::move(c));
  else
    --open_;
  cv_.notify_one();
}

std::vector<Value> Client::round_trip(const std::vector<Args>& commands) {
  std::vector<Value> out;
  if (commands.empty()) return out;
  Context c = acquire();
  SigpipeBlock no_sigpipe;
  auto drop = [&](const std::string& what) {
    std::string detail = io_error(c.get());
    c.reset();
    give_back(nullptr);
    fail(what + detail);
  };
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (const auto& argv : commands) {
    ptrs.clear();
    lens.clear();
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c.get(), static_cast<int>(argv.size()), ptrs.data(), lens.data()) !=
        REDIS_OK)
      drop("cannot queue a command: ");
  }
  out.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(c.get(), &raw) != REDIS_OK || !raw) drop("");
    Reply r(static_cast<redisReply*>(raw));
    out.push_back(to_value(*r));
    if (connection_level_error(out.back())) {
      c.reset();
      give_back(nullptr);
      fail(out.back().str);
    }
  }
  give_back(std::move(c));
  set_healthy(true);
  return out;
}

Value Client::command(const Args& argv) { return std::move(round_trip({argv}).front()); }

std::vector<Value> Client::pipeline(const std::vector<Args>& commands) {
  return round_trip(commands);
}

Value Client::eval(const Script& script, const Args& keys, const Args& args) {
  return std::move(eval_pipeline(script, {ScriptCall{keys, args}}).front());
}

std::vector<Value> Client::eval_pipeline(const Script& script,
                                         const std::vector<ScriptCall>& calls) {
  std::vector<Args> commands;
  commands.reserve(calls.size());
  for (const auto& call : calls) commands.push_back(script_command("EVALSHA", script.sha1, call));
  auto out = round_trip(commands);
  // NOSCRIPT means the call did nothing, so sending it again as EVAL is safe; the calls of one
  // batch touch different mailboxes, so their order does not matter.
  std::vector<std::size_t> missing;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (is_noscript(out[i])) missing.push_back(i);
  if (missing.empty()) return out;
  commands.clear();
  for (auto i : missing) commands.push_back(script_command("EVAL", script.source, calls[i]));
  auto again = round_trip(commands);
  for (std::size_t k = 0; k < missing.size(); ++k) out[missing[k]] = std::move(again[k]);
  return out;
}

bool Client::ping() {
  try {
    auto v = command({"PING"});
    return v.type == Value::Type::status && v.str == "PONG";
  } catch (const Unavailable&) {
    return false;
  }
}

}  // namespace el::store::redis
