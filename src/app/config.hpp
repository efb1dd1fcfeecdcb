// Configuration of `email-listener serve`: flags, EL_* environment variables and a JSON file,
// typed and validated; unknown keys and bad values are refused with a message naming them.
#pragma once
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "delivery/webhook.hpp"
#include "service/options.hpp"

namespace el::app {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Config {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8080;
  std::vector<std::string> api_tokens;
  bool insecure_no_auth = false;
  std::string state_file;
  core::Secret secret_key;      // base64 of 32 bytes: seals credentials in the state file
  core::Secret secret_key_old;  // rotation: still opens, never seals
  log::Level log_level = log::Level::info;
  log::Format log_format = log::Format::text;
  unsigned threads = 0;  // 0: CPU count
  delivery::WebhookOptions webhook;
  service::ServiceOptions service;
  // Scale-out (issue 3). URLs are secrets: they may carry passwords.
  core::Secret store{"memory"};  // memory | redis://[user:password@]host:port/db
  std::string store_prefix = "el:";
  core::Secret queue{"inproc"};  // inproc | amqp://user:password@host:port/vhost
  std::string queue_type = "quorum";
  std::size_t task_max_attempts = 5;
  std::chrono::milliseconds task_max_wait{30000};
  std::size_t worker_prefetch = 16;
  std::vector<core::Secret> amqp_sinks;  // amqp://user:password@host:port/vhost/exchange
  bool allow_plaintext_secrets = false;
  bool redis_store() const { return store.reveal() != "memory"; }
  bool amqp_queue() const { return queue.reveal() != "inproc"; }
  bool help = false;
};

// args: the arguments after "serve". env: the process environment (KEY -> value).
// Precedence: flag > environment > file. Throws ConfigError.
Config parse_serve_config(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env);
std::string serve_usage();

// Helpers exposed for tests.
std::chrono::milliseconds parse_duration(const std::string& s);  // "500ms" "10s" "5m" "1h" "30"
std::uint64_t parse_size(const std::string& s);                  // "1024" "10K" "10M" "1G"
bool is_loopback(const std::string& host);

}  // namespace el::app
