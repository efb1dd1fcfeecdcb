// A private redis-server for tests: free loopback port, temp dir, no persistence unless asked;
// plus a raw hiredis connection to look at what the adapter stored.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace el::test {

inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

inline bool have_redis_server() { return ::access(kRedisServer, X_OK) == 0; }

inline std::string missing_redis_message() {
  return std::string(kRedisServer) +
         " is missing: run scripts/install-test-deps.sh (installs redis-server) to run the Redis "
         "adapter tests";
}

// Ports below the kernel's ephemeral range (as tests/integration/harness/ports.py picks them):
// a port bind(0) handed out and we released lies where the kernel allocates outgoing
// connections next, so a server restarted on it could find it taken.
inline bool port_bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

inline int free_port() {
  std::random_device rd;
  std::mt19937 rng(rd());
  std::uniform_int_distribution<int> dist(20000, 31999);
  for (int i = 0; i < 200; ++i) {
    const int p = dist(rng);
    if (port_bindable(p)) return p;
  }
  throw std::runtime_error("no free loopback port");
}

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;
struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};

// A plain connection, independent of the code under test.
class RawRedis {
 public:
  RawRedis(int port, int db = 0, const std::string& password = {}) {
    ctx_.reset(redisConnect("127.0.0.1", port));
    if (!ctx_ || ctx_->err) throw std::runtime_error("raw redis connect failed");
    if (!password.empty()) (void)cmd({"AUTH", password});
    if (db != 0) (void)cmd({"SELECT", std::to_string(db)});
  }
  ReplyPtr cmd(const std::vector<std::string>& argv) {
    std::vector<const char*> p;
    std::vector<std::size_t> l;
    for (const auto& a : argv) {
      p.push_back(a.data());
      l.push_back(a.size());
    }
    ReplyPtr r(static_cast<redisReply*>(
        redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), p.data(), l.data())));
    if (!r) throw std::runtime_error("raw redis command failed");
    return r;
  }
  std::string str(const std::vector<std::string>& argv) {
    auto r = cmd(argv);
    return r->str ? std::string(r->str, r->len) : std::string();
  }
  long long integer(const std::vector<std::string>& argv) { return cmd(argv)->integer; }

 private:
  std::unique_ptr<redisContext, ContextFree> ctx_;
};

class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra_args = {}, std::string password = {})
      : extra_(std::move(extra_args)), password_(std::move(password)) {
    if (!have_redis_server()) throw std::runtime_error(missing_redis_message());
    char tmpl[] = "/tmp/el-redis-test-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
  }
  ~RedisServer() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // First start: a fresh port; later starts (restart) reuse it.
  void start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (port_ == 0 || (attempt > 0 && !restarted_)) port_ = free_port();
      spawn();
      if (wait_ready()) return;
      kill();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    throw std::runtime_error("redis-server did not start; log:\n" + log_text());
  }
  void restart() {
    kill();
    restarted_ = true;
    start();
  }
  void kill() { signal_and_reap(SIGKILL); }
  void stop() { signal_and_reap(SIGTERM); }
  void pause() const { ::kill(pid_, SIGSTOP); }
  void resume() const { ::kill(pid_, SIGCONT); }

  int port() const { return port_; }
  std::string url(int db = 0, const std::string& userinfo = {}) const {
    return "redis://" + (userinfo.empty() ? "" : userinfo + "@") +
           "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }
  RawRedis raw(int db = 0) const { return RawRedis(port_, db, password_); }
  std::string log_text() const {
    std::ifstream in(dir_ + "/redis.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void spawn() {
    std::vector<std::string> args{kRedisServer,
                                  "--port",
                                  std::to_string(port_),
                                  "--bind",
                                  "127.0.0.1",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--daemonize",
                                  "no",
                                  "--dir",
                                  dir_,
                                  "--logfile",
                                  dir_ + "/redis.log"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, kRedisServer, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("posix_spawn redis-server failed");
    pid_ = pid;
  }
  bool wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return false;  // exited: port taken?
      }
      timeval tv{0, 200000};
      std::unique_ptr<redisContext, ContextFree> c(redisConnectWithTimeout("127.0.0.1", port_, tv));
      if (c && !c->err) {
        ReplyPtr r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
        if (r) return true;  // PONG, or NOAUTH from a server with a password: it is up
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  void signal_and_reap(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // a paused server cannot act on SIGTERM
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  std::vector<std::string> extra_;
  std::string password_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = 0;
  bool restarted_ = false;
};

}  // namespace el::test
