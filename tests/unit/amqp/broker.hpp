// A private RabbitMQ for this test binary: one node on free loopback ports in a temporary
// directory, started once by a gtest global Environment (broker.cpp) and stopped at the end.
// Never the system service, never the default ports.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace el::test {

class Broker {
 public:
  // Throws std::runtime_error with the node's log tail when it does not come up in time.
  void start();
  void stop();  // rabbitmqctl stop, then the process group is killed; the directory removed
  std::uint16_t port() const { return port_; }
  // amqp://guest:guest@127.0.0.1:PORT/<vhost> (guest may log in from loopback).
  std::string url(std::string_view vhost = "%2f") const;
  double startup_seconds() const { return startup_seconds_; }
  // Runs `rabbitmqctl args...` against this node; throws std::runtime_error with its output when
  // it fails.
  void ctl(const std::vector<std::string>& args) const;

 private:
  std::string dir_;
  std::uint16_t port_ = 0;
  std::uint16_t dist_port_ = 0;
  std::uint16_t epmd_port_ = 0;
  pid_t epmd_ = -1;    // process group leader: epmd, then the node joins its group
  pid_t server_ = -1;  // rabbitmq-server (exec'd into the Erlang VM)
  double startup_seconds_ = 0;
};

// This binary's broker (running while tests run).
Broker& broker();

// A TCP port on 127.0.0.1 that nothing listens on right now.
std::uint16_t free_port();

}  // namespace el::test
