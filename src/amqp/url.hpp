// Where a RabbitMQ connection goes: amqp:// URLs of the task queue and of the event sinks.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "core/secret.hpp"

namespace el::amqp {

struct Url {
  std::string host;
  std::uint16_t port = 5672;
  std::string user = "guest";
  core::Secret password{"guest"};
  std::string vhost = "/";
  std::string exchange;  // sink URLs only: the last path segment

  // host:port/vhost for logs and health details; never the credentials.
  std::string display() const;
};

// amqp://user:password@host:port/vhost, with the vhost percent-encoded ("%2f" = "/"); an empty
// or missing vhost is "/", missing credentials are guest/guest, the port defaults to 5672.
// Throws std::invalid_argument saying what is wrong (never quoting the password).
Url parse_url(std::string_view url);

// amqp://user:password@host:port/vhost/exchange: the last path segment is the exchange; a
// single segment is an exchange on the vhost "/".
Url parse_exchange_url(std::string_view url);

}  // namespace el::amqp
