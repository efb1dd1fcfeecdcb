// Configuration: one table of options drives flags, environment variables and the file.
#include "app/config.hpp"

#include <unistd.h>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "core/secret_box.hpp"

namespace el::app {

namespace json = boost::json;
using std::chrono::milliseconds;

std::chrono::milliseconds parse_duration(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0 || i > 12)
    throw ConfigError("not a duration: \"" + s + "\" (e.g. 500ms, 10s, 5m, 1h)");
  const long long n = std::stoll(s.substr(0, i));
  const std::string unit = s.substr(i);
  long long mul;
  if (unit == "ms")
    mul = 1;
  else if (unit.empty() || unit == "s")
    mul = 1000;
  else if (unit == "m")
    mul = 60'000;
  else if (unit == "h")
    mul = 3'600'000;
  else
    throw ConfigError("not a duration: \"" + s + "\" (e.g. 500ms, 10s, 5m, 1h)");
  return milliseconds(n * mul);
}

std::uint64_t parse_size(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0 || i > 15) throw ConfigError("not a size: \"" + s + "\" (e.g. 1024, 10K, 10M, 1G)");
  std::uint64_t n = std::stoull(s.substr(0, i));
  const std::string unit = s.substr(i);
  if (unit.empty() || unit == "B") return n;
  if (unit == "K" || unit == "KiB") return n << 10;
  if (unit == "M" || unit == "MiB") return n << 20;
  if (unit == "G" || unit == "GiB") return n << 30;
  throw ConfigError("not a size: \"" + s + "\" (e.g. 1024, 10K, 10M, 1G)");
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

namespace {

enum class Kind { flag, value, list };

struct Option {
  std::string name;  // flag name without dashes: "webhook-url"
  Kind kind;
  std::string help;
  std::function<void(Config&, const std::string&)> set;
};

long long parse_int(const std::string& s, long long lo, long long hi) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    throw ConfigError("not a whole number from " + std::to_string(lo) + " to " +
                      std::to_string(hi) + ": \"" + s + "\"");
  return v;
}

bool parse_bool(const std::string& s) {
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  throw ConfigError("not a boolean: \"" + s + "\" (true or false)");
}

void set_listen(Config& c, const std::string& v) {
  // host:port or [v6]:port
  std::string host, port;
  if (!v.empty() && v[0] == '[') {
    auto close = v.find(']');
    if (close == std::string::npos || close + 1 >= v.size() || v[close + 1] != ':')
      throw ConfigError("not HOST:PORT: \"" + v + "\"");
    host = v.substr(1, close - 1);
    port = v.substr(close + 2);
  } else {
    auto colon = v.rfind(':');
    if (colon == std::string::npos) throw ConfigError("not HOST:PORT: \"" + v + "\"");
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
  }
  if (host.empty()) throw ConfigError("not HOST:PORT: \"" + v + "\"");
  if (host == "localhost") host = "127.0.0.1";  // the server binds IP literals
  c.listen_host = host;
  c.listen_port = static_cast<std::uint16_t>(parse_int(port, 0, 65535));
}

void check_url(const std::string& v) {
  auto u = boost::urls::parse_absolute_uri(v);
  if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty())
    throw ConfigError("not an http(s) URL: \"" + v + "\"");
}

// Scheme, host and (for amqp sinks) the exchange; never echoes the URL, which may hold a password.
void check_service_url(const std::string& v, const char* scheme, const char* what) {
  auto u = boost::urls::parse_absolute_uri(v);
  if (!u || u->scheme() != scheme || u->host().empty())
    throw ConfigError(std::string("not a ") + scheme + ":// URL (" + what + ")");
}

std::vector<std::string> split_commas(const std::string& v) {
  std::vector<std::string> out;
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

const std::vector<Option>& options() {
  static const std::vector<Option> opts = {
      {"listen", Kind::value, "HOST:PORT of the HTTP API (127.0.0.1:8080)", set_listen},
      {"api-token", Kind::list, "accepted bearer token (repeat for several)",
       [](Config& c, const std::string& v) {
         for (auto& t : split_commas(v)) c.api_tokens.push_back(t);
       }},
      {"insecure-no-auth", Kind::flag, "allow a non-loopback listen address without tokens",
       [](Config& c, const std::string& v) { c.insecure_no_auth = parse_bool(v); }},
      {"webhook-url", Kind::value, "where events go unless a mailbox has its own webhook",
       [](Config& c, const std::string& v) {
         check_url(v);
         if (!c.service.default_webhook) c.service.default_webhook.emplace();
         c.service.default_webhook->url = v;
       }},
      {"webhook-secret", Kind::value, "HMAC-SHA256 key of the global webhook",
       [](Config& c, const std::string& v) {
         if (!c.service.default_webhook) c.service.default_webhook.emplace();
         c.service.default_webhook->secret = core::Secret(v);
       }},
      {"webhook-timeout", Kind::value, "one delivery attempt (10s)",
       [](Config& c, const std::string& v) { c.webhook.request_timeout = parse_duration(v); }},
      {"webhook-max-attempts", Kind::value, "attempts for one event (10)",
       [](Config& c, const std::string& v) {
         c.webhook.max_attempts = static_cast<int>(parse_int(v, 1, 1000));
       }},
      {"webhook-max-total", Kind::value, "time bound of the attempts for one event (15m)",
       [](Config& c, const std::string& v) { c.webhook.max_total = parse_duration(v); }},
      {"webhook-backoff-initial", Kind::value, "first retry delay (500ms)",
       [](Config& c, const std::string& v) { c.webhook.backoff_initial = parse_duration(v); }},
      {"webhook-backoff-max", Kind::value, "longest retry delay (60s)",
       [](Config& c, const std::string& v) { c.webhook.backoff_max = parse_duration(v); }},
      {"webhook-ca-file", Kind::value, "extra CA for https webhooks",
       [](Config& c, const std::string& v) { c.webhook.ca_file = v; }},
      {"state-file", Kind::value, "persist the registry and checkpoints here",
       [](Config& c, const std::string& v) { c.state_file = v; }},
      {"secret-key", Kind::value,
       "32 bytes in base64: credentials in the state file are encrypted (AES-256-GCM)",
       [](Config& c, const std::string& v) { c.secret_key = core::Secret(v); }},
      {"secret-key-old", Kind::value, "the previous --secret-key while rotating (read only)",
       [](Config& c, const std::string& v) { c.secret_key_old = core::Secret(v); }},
      {"log-level", Kind::value, "debug, info, warn, error (info)",
       [](Config& c, const std::string& v) {
         if (!log::parse_level(v, c.log_level))
           throw ConfigError("not a log level: \"" + v + "\" (debug, info, warn, error)");
       }},
      {"log-format", Kind::value, "text or json (text)",
       [](Config& c, const std::string& v) {
         if (v == "text")
           c.log_format = log::Format::text;
         else if (v == "json")
           c.log_format = log::Format::json;
         else
           throw ConfigError("not a log format: \"" + v + "\" (text or json)");
       }},
      {"threads", Kind::value, "I/O threads (CPU count)",
       [](Config& c, const std::string& v) {
         c.threads = static_cast<unsigned>(parse_int(v, 1, 256));
       }},
      {"idle-refresh", Kind::value, "IDLE is re-issued before this (25m)",
       [](Config& c, const std::string& v) { c.service.session.idle_refresh = parse_duration(v); }},
      {"recheck-interval", Kind::value, "re-check folders for missed pushes (5m)",
       [](Config& c, const std::string& v) {
         c.service.session.recheck_interval = parse_duration(v);
       }},
      {"poll-interval", Kind::value, "NOOP polling without IDLE (60s)",
       [](Config& c, const std::string& v) {
         c.service.session.poll_interval = parse_duration(v);
       }},
      {"connect-timeout", Kind::value, "TCP connect and TLS handshake (30s)",
       [](Config& c, const std::string& v) {
         c.service.session.connect_timeout = c.service.fetch.connect_timeout = parse_duration(v);
       }},
      {"command-timeout", Kind::value, "any IMAP command (30s)",
       [](Config& c, const std::string& v) {
         c.service.session.command_timeout = parse_duration(v);
       }},
      {"done-timeout", Kind::value, "DONE must be answered within this (10s)",
       [](Config& c, const std::string& v) { c.service.session.done_timeout = parse_duration(v); }},
      {"backoff-initial", Kind::value, "first reconnect delay (1s)",
       [](Config& c, const std::string& v) {
         c.service.session.backoff_initial = parse_duration(v);
       }},
      {"backoff-max", Kind::value, "longest reconnect delay (5m)",
       [](Config& c, const std::string& v) { c.service.session.backoff_max = parse_duration(v); }},
      {"auth-retry", Kind::value, "retry interval after a refused login (10m)",
       [](Config& c, const std::string& v) { c.service.session.auth_retry = parse_duration(v); }},
      {"start-spread", Kind::value,
       "spread session starts over this at start-up (0: 5 ms per mailbox, max 60s)",
       [](Config& c, const std::string& v) { c.service.session.start_spread = parse_duration(v); }},
      {"max-attachment-bytes", Kind::value, "attachment content per message (10M)",
       [](Config& c, const std::string& v) {
         c.service.fetch.max_attachment_bytes = parse_size(v);
       }},
      {"max-message-bytes", Kind::value, "largest message downloaded (64M)",
       [](Config& c, const std::string& v) { c.service.fetch.max_message_bytes = parse_size(v); }},
      {"separate-fetch-connection", Kind::flag,
       "download on a second connection per folder, keeping the first in IDLE",
       [](Config& c, const std::string& v) {
         c.service.session.fetch_on_idle_connection = !parse_bool(v);
       }},
      {"max-idle-per-mailbox", Kind::value,
       "folders of one mailbox watched with their own IDLE connection; the others are polled "
       "with STATUS (5)",
       [](Config& c, const std::string& v) {
         c.service.session.max_idle_connections = static_cast<std::size_t>(parse_int(v, 1, 100));
       }},
      {"folder-poll-interval", Kind::value,
       "STATUS polling of folders beyond --max-idle-per-mailbox (60s)",
       [](Config& c, const std::string& v) {
         c.service.session.status_poll_interval = parse_duration(v);
       }},
      {"imap-notify", Kind::value,
       "watch folders beyond --max-idle-per-mailbox with IMAP NOTIFY where offered (true)",
       [](Config& c, const std::string& v) { c.service.session.use_notify = parse_bool(v); }},
      {"send-max-attempts", Kind::value,
       "SMTP attempts of one send on temporary failures before message.send_failed (10)",
       [](Config& c, const std::string& v) {
         c.service.send.max_attempts = static_cast<std::uint32_t>(parse_int(v, 1, 1000));
       }},
      {"send-concurrency-per-mailbox", Kind::value,
       "sends of one mailbox talking to its servers at once on a node (3)",
       [](Config& c, const std::string& v) {
         c.service.send.max_per_mailbox = static_cast<std::size_t>(parse_int(v, 1, 100));
       }},
      {"send-retry-initial", Kind::value, "first retry delay of a send (5s); doubles, jittered",
       [](Config& c, const std::string& v) { c.service.send.backoff_initial = parse_duration(v); }},
      {"send-retention", Kind::value,
       "how long sends and their Idempotency-Keys are remembered (24h)",
       [](Config& c, const std::string& v) {
         c.service.send.retention =
             std::chrono::duration_cast<std::chrono::seconds>(parse_duration(v));
       }},
      {"validate-timeout", Kind::value, "each step of POST /v1/mailboxes/validate (15s)",
       [](Config& c, const std::string& v) {
         c.service.tools.validate_timeout = parse_duration(v);
       }},
      {"fetch-batch", Kind::value, "messages per UID FETCH (20)",
       [](Config& c, const std::string& v) {
         c.service.fetch.batch = static_cast<std::size_t>(parse_int(v, 1, 1000));
       }},
      {"role", Kind::value, "api, worker or all (all)",
       [](Config& c, const std::string& v) {
         if (v != "api" && v != "worker" && v != "all")
           throw ConfigError("not a role: \"" + v + "\" (api, worker or all)");
         c.service.ownership.role = v;
       }},
      {"node-id", Kind::value, "this node's name in the fleet (the host name)",
       [](Config& c, const std::string& v) {
         if (v.empty() || v.size() > 128) throw ConfigError("must be 1-128 characters");
         c.service.ownership.node_id = v;
       }},
      {"capacity", Kind::value, "most mailboxes this node holds (10000)",
       [](Config& c, const std::string& v) {
         c.service.ownership.capacity = static_cast<std::size_t>(parse_int(v, 1, 10000000));
       }},
      {"lease", Kind::value, "mailbox lease; a dead node's mailboxes move after it (15s)",
       [](Config& c, const std::string& v) {
         c.service.ownership.lease = parse_duration(v);
         if (c.service.ownership.lease < milliseconds(300))
           throw ConfigError("must be at least 300ms");
       }},
      {"store", Kind::value, "memory, or redis://[user:password@]host:port/db (memory)",
       [](Config& c, const std::string& v) {
         if (v != "memory") check_service_url(v, "redis", "redis://[user:password@]host:port/db");
         c.store = core::Secret(v);
       }},
      {"store-prefix", Kind::value, "prefix of every Redis key (el:)",
       [](Config& c, const std::string& v) { c.store_prefix = v; }},
      {"allow-plaintext-secrets", Kind::flag, "allow a Redis store without --secret-key",
       [](Config& c, const std::string& v) { c.allow_plaintext_secrets = parse_bool(v); }},
      {"queue", Kind::value, "inproc, or amqp://user:password@host:port/vhost (inproc)",
       [](Config& c, const std::string& v) {
         if (v != "inproc") check_service_url(v, "amqp", "amqp://user:password@host:port/vhost");
         c.queue = core::Secret(v);
       }},
      {"queue-type", Kind::value, "quorum or classic RabbitMQ queues (quorum)",
       [](Config& c, const std::string& v) {
         if (v != "quorum" && v != "classic")
           throw ConfigError("not a queue type: \"" + v + "\" (quorum or classic)");
         c.queue_type = v;
       }},
      {"task-max-attempts", Kind::value, "deliveries of a task before it is dead-lettered (5)",
       [](Config& c, const std::string& v) {
         c.task_max_attempts = static_cast<std::size_t>(parse_int(v, 1, 1000));
       }},
      {"task-max-wait", Kind::value,
       "a task waiting longer for a worker runs on the api node (30s)",
       [](Config& c, const std::string& v) { c.task_max_wait = parse_duration(v); }},
      {"worker-prefetch", Kind::value, "tasks a worker holds at once (16)",
       [](Config& c, const std::string& v) {
         c.worker_prefetch = static_cast<std::size_t>(parse_int(v, 1, 10000));
       }},
      {"sink", Kind::value,
       "webhook and/or amqp://user:password@host:port/vhost/exchange (webhook)",
       [](Config& c, const std::string& v) {
         c.service.webhook_sink = false;
         c.amqp_sinks.clear();
         for (const auto& item : split_commas(v)) {
           if (item == "webhook") {
             c.service.webhook_sink = true;
             continue;
           }
           check_service_url(item, "amqp", "amqp://user:password@host:port/vhost/exchange");
           auto u = boost::urls::parse_absolute_uri(item);
           if (u->segments().size() < 2)
             throw ConfigError("an amqp sink URL ends with /vhost/exchange");
           c.amqp_sinks.emplace_back(item);
         }
         if (!c.service.webhook_sink && c.amqp_sinks.empty())
           throw ConfigError("no sink (webhook or an amqp:// exchange)");
       }},
      {"fetch-concurrency", Kind::value, "download tasks running at once (64)",
       [](Config& c, const std::string& v) {
         c.service.fetch_concurrency = static_cast<std::size_t>(parse_int(v, 1, 100000));
       }},
  };
  return opts;
}

const Option* find_option(const std::string& name) {
  for (const auto& o : options())
    if (o.name == name) return &o;
  return nullptr;
}

std::string env_name(const std::string& flag) {
  std::string e = "EL_";
  for (char ch : flag) e += ch == '-' ? '_' : static_cast<char>(std::toupper(ch));
  return e;
}

void apply(Config& c, const Option& o, const std::string& value, const std::string& where) {
  try {
    o.set(c, value);
  } catch (const ConfigError& e) {
    throw ConfigError(where + ": " + e.what());
  }
}

void apply_file(Config& c, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("--config: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  json::value doc;
  try {
    doc = json::parse(ss.str());
  } catch (const std::exception& e) {
    throw ConfigError("--config " + path + ": not valid JSON: " + e.what());
  }
  if (!doc.is_object()) throw ConfigError("--config " + path + ": must be a JSON object");
  for (const auto& [k, v] : doc.as_object()) {
    std::string flag(k);
    for (auto& ch : flag)
      if (ch == '_') ch = '-';
    const Option* o = find_option(flag);
    if (!o || flag == "config")
      throw ConfigError("--config " + path + ": unknown key \"" + std::string(k) + "\"");
    const std::string where = "--config " + path + ": key \"" + std::string(k) + "\"";
    auto scalar = [&](const json::value& x) -> std::string {
      if (x.is_string()) return std::string(x.as_string());
      if (x.is_bool()) return x.as_bool() ? "true" : "false";
      if (x.is_int64()) return std::to_string(x.as_int64());
      if (x.is_uint64()) return std::to_string(x.as_uint64());
      throw ConfigError(where + ": must be a string, number or boolean");
    };
    if (o->kind == Kind::list && v.is_array()) {
      for (const auto& item : v.as_array()) apply(c, *o, scalar(item), where);
    } else {
      apply(c, *o, scalar(v), where);
    }
  }
}

}  // namespace

std::string serve_usage() {
  std::string s =
      "usage: email-listener serve [options]\n\n"
      "Every option is also an environment variable (EL_ + name in upper case, '-' -> '_')\n"
      "and a key of the JSON file given with --config FILE (name with '_').\n"
      "Durations: 500ms, 10s, 5m, 1h. Sizes: 1024, 10K, 10M.\n\n"
      "  --config FILE                      JSON file with further settings\n";
  for (const auto& o : options()) {
    std::string left = "  --" + o.name + (o.kind == Kind::flag ? "" : " VALUE");
    if (left.size() < 37)
      left.resize(37, ' ');
    else
      left += ' ';
    s += left + o.help + "\n";
  }
  return s;
}

Config parse_serve_config(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env) {
  Config c;
  // 1. Split the flags first, to find --config.
  std::vector<std::pair<const Option*, std::string>> flags;
  std::string config_file;
  if (auto it = env.find("EL_CONFIG"); it != env.end()) config_file = it->second;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--help" || a == "-h") {
      c.help = true;
      return c;
    }
    if (a.rfind("--", 0) != 0) throw ConfigError("unexpected argument \"" + a + "\"");
    a = a.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (a == "config") {
      if (!has_value) {
        if (i + 1 >= args.size()) throw ConfigError("--config needs a value");
        value = args[++i];
      }
      config_file = value;
      continue;
    }
    const Option* o = find_option(a);
    if (!o) throw ConfigError("unknown option --" + a + " (see email-listener serve --help)");
    if (o->kind == Kind::flag) {
      if (!has_value) value = "true";
    } else if (!has_value) {
      if (i + 1 >= args.size()) throw ConfigError("--" + a + " needs a value");
      value = args[++i];
    }
    flags.emplace_back(o, value);
  }
  // 2. File, then environment, then flags: later ones win.
  if (!config_file.empty()) apply_file(c, config_file);
  for (const auto& [k, v] : env) {
    if (k.rfind("EL_", 0) != 0 || k == "EL_CONFIG") continue;
    const Option* match = nullptr;
    for (const auto& o : options())
      if (env_name(o.name) == k) match = &o;
    if (!match) throw ConfigError("unknown environment variable " + k);
    if (match->name == "api-token") c.api_tokens.clear();
    apply(c, *match, v, k);
  }
  bool tokens_from_flags = false;
  for (const auto& [o, v] : flags) {
    if (o->name == "api-token" && !tokens_from_flags) {
      c.api_tokens.clear();  // flags replace tokens from the file or environment
      tokens_from_flags = true;
    }
    apply(c, *o, v, "--" + o->name);
  }
  // 3. Cross-field checks.
  if (c.service.default_webhook && c.service.default_webhook->url.empty())
    throw ConfigError("--webhook-secret is set but --webhook-url is not");
  if (c.api_tokens.empty() && !is_loopback(c.listen_host) && !c.insecure_no_auth)
    throw ConfigError("--listen " + c.listen_host +
                      " is not a loopback address and no --api-token is configured; "
                      "set a token, or pass --insecure-no-auth to accept unauthenticated calls");
  if (c.service.session.recheck_interval.count() <= 0 ||
      c.service.session.idle_refresh.count() <= 0)
    throw ConfigError("--idle-refresh and --recheck-interval must be positive");
  if (!c.secret_key_old.empty() && c.secret_key.empty())
    throw ConfigError("--secret-key-old (EL_SECRET_KEY_OLD) needs --secret-key (EL_SECRET_KEY)");
  if (!c.secret_key.empty()) {
    try {
      (void)core::SecretBox::from_base64(c.secret_key.reveal(), c.secret_key_old.reveal());
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());  // names the variable, never echoes the key
    }
  }
  if (c.redis_store() && !c.state_file.empty())
    throw ConfigError(
        "--state-file is for the memory store; with --store redis:// Redis holds "
        "the state");
  if (c.redis_store() && c.secret_key.empty() && !c.allow_plaintext_secrets)
    throw ConfigError(
        "--store redis:// keeps mailbox credentials in Redis: set EL_SECRET_KEY "
        "(32 random bytes, base64) so they are encrypted, or pass "
        "--allow-plaintext-secrets to store them in clear");
  const auto& role = c.service.ownership.role;
  if (role == "worker" && (!c.redis_store() || !c.amqp_queue()))
    throw ConfigError(
        "--role worker needs a shared registry and queue: --store redis://... "
        "and --queue amqp://...");
  if (role != "all" && !c.redis_store())
    throw ConfigError("--role " + role + " is for a fleet: it needs --store redis://...");
  if (c.service.ownership.node_id.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
      throw ConfigError("cannot read the host name: set --node-id");
    c.service.ownership.node_id = host;
  }
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  return c;
}

}  // namespace el::app
