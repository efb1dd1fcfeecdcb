// Starts this binary's private RabbitMQ (see broker.hpp) before the first test and stops it after
// the last. Environment of the node (all under one temp dir, so nothing of /etc/rabbitmq or
// /var/lib/rabbitmq is read or written):
//   HOME (the Erlang cookie), RABBITMQ_NODENAME=el-test-<pid>@localhost,
//   RABBITMQ_NODE_IP_ADDRESS=127.0.0.1, RABBITMQ_NODE_PORT, RABBITMQ_DIST_PORT, ERL_EPMD_PORT
//   (a private epmd, started first in the node's process group), RABBITMQ_MNESIA_BASE,
//   RABBITMQ_LOG_BASE, RABBITMQ_CONFIG_FILE / RABBITMQ_ADVANCED_CONFIG_FILE /
//   RABBITMQ_CONF_ENV_FILE (absent files: defaults), RABBITMQ_ENABLED_PLUGINS_FILE (none: faster
//   start), RABBITMQ_PLUGINS_EXPAND_DIR, RABBITMQ_PID_FILE, RABBITMQ_CTL_DIST_PORT_MIN/MAX=0.
// ELTEST_KEEP=1 keeps the directory (logs) after the run.
#include "broker.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "amqp/connection.hpp"

extern char** environ;

namespace el::test {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The scripts themselves, not /usr/sbin's wrappers (those switch to the rabbitmq user).
constexpr const char* kServer = "/usr/lib/rabbitmq/bin/rabbitmq-server";
constexpr const char* kCtl = "/usr/lib/rabbitmq/bin/rabbitmqctl";
constexpr auto kStartTimeout = 60s;

std::string find_epmd() {
  if (::access("/usr/bin/epmd", X_OK) == 0) return "/usr/bin/epmd";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/erlang", ec)) {
    const auto p = e.path() / "bin" / "epmd";
    if (e.path().filename().string().rfind("erts-", 0) == 0 && ::access(p.c_str(), X_OK) == 0) {
      return p.string();
    }
  }
  return {};
}

bool tcp_open(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Our variables replace any inherited RABBITMQ_* / ERL_* (an ERL_AFLAGS would change the node).
std::vector<std::string> child_env(const std::vector<std::pair<std::string, std::string>>& ours) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    if (kv.rfind("RABBITMQ_", 0) == 0 || kv.rfind("ERL_", 0) == 0 || kv.rfind("HOME=", 0) == 0) {
      continue;
    }
    env.emplace_back(kv);
  }
  for (const auto& [k, v] : ours) env.push_back(k + "=" + v);
  return env;
}

// fork + exec with only async-signal-safe calls in the child. pgid 0: a new process group led
// by the child; otherwise the child joins group pgid (both stay in our session: setsid would
// make joining impossible). The child dies with this process (PDEATHSIG survives exec), so a
// crashed test binary leaves no broker behind.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, pid_t pgid,
            const std::string& out_path) {
  std::vector<char*> av;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  std::vector<char*> ev;
  for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (::setpgid(0, pgid) != 0) ::_exit(126);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    if (in >= 0) ::dup2(in, 0);
    ::execve(av[0], av.data(), ev.data());
    ::_exit(127);
  }
  return pid;
}

// waitpid with a deadline; true when the child ended (or was already reaped).
bool wait_exit(pid_t pid, std::chrono::milliseconds timeout, int* status = nullptr) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      if (status != nullptr) *status = st;
      return true;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

std::string tail(const std::string& path, std::size_t n = 4000) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  auto s = ss.str();
  return s.size() > n ? s.substr(s.size() - n) : s;
}

Broker g_broker;

std::vector<std::pair<std::string, std::string>> node_env(const std::string& dir,
                                                          std::uint16_t port,
                                                          std::uint16_t dist_port,
                                                          std::uint16_t epmd_port) {
  return {
      {"HOME", dir},
      {"RABBITMQ_NODENAME", "el-test-" + std::to_string(::getpid()) + "@localhost"},
      {"RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"},
      {"RABBITMQ_NODE_PORT", std::to_string(port)},
      {"RABBITMQ_DIST_PORT", std::to_string(dist_port)},
      {"ERL_EPMD_PORT", std::to_string(epmd_port)},
      {"ERL_EPMD_ADDRESS", "127.0.0.1"},
      {"RABBITMQ_MNESIA_BASE", dir + "/mnesia"},
      {"RABBITMQ_LOG_BASE", dir + "/log"},
      {"RABBITMQ_CONFIG_FILE", dir + "/rabbitmq"},
      {"RABBITMQ_ADVANCED_CONFIG_FILE", dir + "/advanced.config"},
      {"RABBITMQ_CONF_ENV_FILE", dir + "/rabbitmq-env.conf"},
      {"RABBITMQ_ENABLED_PLUGINS_FILE", dir + "/enabled_plugins"},
      {"RABBITMQ_PLUGINS_EXPAND_DIR", dir + "/plugins-expand"},
      {"RABBITMQ_PID_FILE", dir + "/rabbitmq.pid"},
      // The CLI's own distribution listener: any free port, not the fixed 35672-35682.
      {"RABBITMQ_CTL_DIST_PORT_MIN", "0"},
      {"RABBITMQ_CTL_DIST_PORT_MAX", "0"},
  };
}

}  // namespace

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind failed");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

Broker& broker() { return g_broker; }

std::string Broker::url(std::string_view vhost) const {
  return "amqp://guest:guest@127.0.0.1:" + std::to_string(port_) + "/" + std::string(vhost);
}

void Broker::start() {
  const auto t0 = Clock::now();
  if (::access(kServer, X_OK) != 0 || ::access(kCtl, X_OK) != 0) {
    throw std::runtime_error(std::string(kServer) +
                             " not found: run scripts/install-test-deps.sh (as root) to install "
                             "rabbitmq-server");
  }
  const auto epmd = find_epmd();
  if (epmd.empty()) throw std::runtime_error("epmd not found: run scripts/install-test-deps.sh");

  std::string tmpl = (fs::temp_directory_path() / "el-rabbitmq-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  fs::create_directories(dir_ + "/log");
  std::ofstream(dir_ + "/enabled_plugins") << "[].\n";

  port_ = free_port();
  do {
    dist_port_ = free_port();
    epmd_port_ = free_port();
  } while (dist_port_ == port_ || epmd_port_ == port_ || epmd_port_ == dist_port_);
  const auto env = child_env(node_env(dir_, port_, dist_port_, epmd_port_));
  const auto out = dir_ + "/server.out";

  // Our own epmd, in the node's process group: the node would otherwise start a daemon epmd
  // that outlives it. It must listen before the node looks for it.
  epmd_ = spawn({epmd, "-port", std::to_string(epmd_port_), "-address", "127.0.0.1"}, env, 0,
                dir_ + "/epmd.out");
  const auto epmd_deadline = Clock::now() + 10s;
  while (!tcp_open(epmd_port_)) {
    if (Clock::now() > epmd_deadline || wait_exit(epmd_, 0ms)) {
      throw std::runtime_error("epmd did not start: " + tail(dir_ + "/epmd.out"));
    }
    std::this_thread::sleep_for(10ms);
  }
  server_ = spawn({kServer}, env, epmd_, out);

  amqp::Url u;
  u.host = "127.0.0.1";
  u.port = port_;
  amqp::ConnectOptions co;
  co.timeout = 2s;
  const auto deadline = Clock::now() + kStartTimeout;
  std::string last;
  for (;;) {
    int status = 0;
    if (wait_exit(server_, 0ms, &status)) {
      server_ = -1;
      throw std::runtime_error("rabbitmq-server exited (status " + std::to_string(status) +
                               ") in " + dir_ + ":\n" + tail(out));
    }
    if (tcp_open(port_)) {
      try {
        amqp::Connection c(u, co);  // a full handshake and login: the node is ready
        c.close();
        break;
      } catch (const amqp::Error& e) {
        last = e.what();
      }
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("rabbitmq-server not ready after 60 s (" + last + ") in " + dir_ +
                               ":\n" + tail(out));
    }
    std::this_thread::sleep_for(25ms);
  }
  startup_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("[  broker  ] RabbitMQ on 127.0.0.1:%u ready in %.2f s (%s)\n", port_,
              startup_seconds_, dir_.c_str());
  std::fflush(stdout);
}

void Broker::ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{kCtl};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto out = dir_ + "/ctl.out";
  std::error_code ec;
  fs::remove(out, ec);
  const pid_t pid = spawn(argv, child_env(node_env(dir_, port_, dist_port_, epmd_port_)), 0, out);
  int status = 0;
  if (!wait_exit(pid, 30s, &status)) {
    ::kill(pid, SIGKILL);
    wait_exit(pid, 5s);
    throw std::runtime_error("rabbitmqctl timed out: " + tail(out));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("rabbitmqctl failed: " + tail(out));
  }
}

void Broker::stop() {
  if (epmd_ <= 0) return;
  const auto t0 = Clock::now();
  if (server_ > 0) {
    const auto env = child_env(node_env(dir_, port_, dist_port_, epmd_port_));
    const pid_t ctl = spawn({kCtl, "stop"}, env, 0, dir_ + "/ctl.out");
    if (!wait_exit(ctl, 20s)) {
      ::kill(ctl, SIGKILL);
      wait_exit(ctl, 5s);
    }
    wait_exit(server_, 10s);
  }
  // Whatever is left of the node's group (epmd, the CLI's helpers): gone.
  ::kill(-epmd_, SIGTERM);
  if (!wait_exit(epmd_, 2s)) ::kill(-epmd_, SIGKILL);
  wait_exit(epmd_, 5s);
  if (server_ > 0) {
    ::kill(server_, SIGKILL);
    wait_exit(server_, 5s);
  }
  epmd_ = server_ = -1;
  std::printf("[  broker  ] stopped in %.2f s\n",
              std::chrono::duration<double>(Clock::now() - t0).count());
  const char* keep = std::getenv("ELTEST_KEEP");
  if (keep == nullptr || std::string_view(keep).empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

namespace {

class BrokerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    try {
      g_broker.start();
    } catch (const std::exception& e) {
      g_broker.stop();
      FAIL() << e.what();
    }
  }
  void TearDown() override { g_broker.stop(); }
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new BrokerEnvironment);

}  // namespace

}  // namespace el::test
