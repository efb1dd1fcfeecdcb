// A small blocking Redis client over hiredis: a pool of connections, pipelines, Lua scripts by
// SHA with a fallback to EVAL. Used by RedisRegistry; knows nothing of mailboxes.
// Thread-safe. Every call borrows one connection for one round trip; an I/O or protocol error
// drops that connection and throws store::Unavailable (the next call reconnects: AUTH, SELECT).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/secret.hpp"

struct redisContext;

namespace el::store::redis {

// Where to connect. Prints as host:port/db; the password never leaves this struct except in AUTH.
struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  int db = 0;
  std::string user;              // empty: AUTH with the password alone (requirepass / default user)
  core::Secret password;         // empty: no AUTH
  std::string describe() const;  // "host:port/db"
};

// redis://[[user]:password@]host[:port][/db]. Throws std::invalid_argument with a message that
// never repeats the URL (it may hold a password).
Endpoint parse_url(std::string_view url);

// One reply, copied out of hiredis so that it outlives the connection.
struct Value {
  enum class Type { nil, string, integer, array, status, error };
  Type type = Type::nil;
  std::string str;  // string, status, error
  long long integer = 0;
  std::vector<Value> elements;

  bool is_nil() const { return type == Type::nil; }
  bool is_error() const { return type == Type::error; }
};

using Args = std::vector<std::string>;

// A Lua script, sent as EVALSHA and, when the server's script cache lacks it (NOSCRIPT: a
// restart, SCRIPT FLUSH), as EVAL, which caches it again.
struct Script {
  explicit Script(std::string source);
  std::string source;
  std::string sha1;  // hex
};

struct ScriptCall {
  Args keys;
  Args args;
};

struct ClientOptions {
  Endpoint endpoint;
  std::size_t connections = 4;  // at most this many open at once; callers beyond it wait
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
};

class Client {
 public:
  explicit Client(ClientOptions opts);  // no I/O
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Error replies come back as Values (Type::error); only I/O, protocol and connection-level
  // failures (LOADING, READONLY, NOAUTH, ...) throw Unavailable.
  Value command(const Args& argv);
  // All commands in one round trip; replies in order.
  std::vector<Value> pipeline(const std::vector<Args>& commands);
  Value eval(const Script& script, const Args& keys, const Args& args);
  // Many invocations of one script in one round trip (two after a NOSCRIPT).
  std::vector<Value> eval_pipeline(const Script& script, const std::vector<ScriptCall>& calls);

  bool ping();  // one round trip; false when unreachable or refused
  // The latest round trip (on any thread) succeeded. No I/O.
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  const std::string& where() const { return where_; }  // host:port/db, for messages and logs

 private:
  struct ContextFree {
    void operator()(redisContext* c) const;
  };
  using Context = std::unique_ptr<redisContext, ContextFree>;

  Context acquire();
  void give_back(Context c);  // null: the connection was dropped
  Context connect();
  std::vector<Value> round_trip(const std::vector<Args>& commands);
  std::string io_error(const redisContext* c) const;  // reads errno: call right after the failure
  void set_healthy(bool ok, std::string_view error = {});
  [[noreturn]] void fail(const std::string& what);

  ClientOptions opts_;
  std::string where_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Context> idle_;
  std::size_t open_ = 0;  // idle + borrowed + being connected
  std::atomic<bool> healthy_{false};
};

}  // namespace el::store::redis
