// `email-listener serve`: the only place that knows every adapter. Embedded default: memory
// registry (optionally a state file), in-process queue, webhook sink. In a fleet: Redis
// registry, RabbitMQ tasks, webhook and/or RabbitMQ exchange sinks, role api | worker | all.
#include "app/serve.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <thread>

#include "core/log.hpp"
#include "delivery/amqp_sink.hpp"
#include "delivery/fanout_sink.hpp"
#include "delivery/webhook.hpp"
#include "el/version.hpp"
#include "http/server.hpp"
#include "queue/amqp_queue.hpp"
#include "queue/inproc_queue.hpp"
#include "service/credentials.hpp"
#include "service/fetcher.hpp"
#include "service/service.hpp"
#include "store/memory_registry.hpp"
#include "store/redis_registry.hpp"

namespace el::app {

namespace net = boost::asio;

namespace {

std::shared_ptr<const core::SecretBox> secret_box(const Config& cfg) {
  if (cfg.secret_key.empty()) return nullptr;
  return std::make_shared<const core::SecretBox>(
      core::SecretBox::from_base64(cfg.secret_key.reveal(), cfg.secret_key_old.reveal()));
}

std::unique_ptr<store::Registry> make_registry(const Config& cfg) {
  if (!cfg.redis_store()) {
    store::MemoryRegistryOptions o;
    o.state_file = cfg.state_file;
    o.secret_box = secret_box(cfg);
    return std::make_unique<store::MemoryRegistry>(o);
  }
  store::RedisRegistryOptions o;
  o.url = cfg.store.reveal();
  o.prefix = cfg.store_prefix;
  o.secret_box = secret_box(cfg);
  o.connections = std::max<std::size_t>(2, cfg.threads);
  auto r = std::make_unique<store::RedisRegistry>(o);
  if (!r->ping()) {  // not fatal: the node starts, is not ready, and retries
    log::warn("registry_unreachable", {{"store", "redis"}});
    return r;
  }
  // A node with a missing or wrong key would claim mailboxes it cannot read: check that the
  // key opens a stored record before joining (throws with a message naming EL_SECRET_KEY).
  try {
    (void)r->list("", 1);
  } catch (const store::Unavailable&) {
  }
  return r;
}

queue::AmqpQueueOptions queue_options(const Config& cfg) {
  queue::AmqpQueueOptions o;
  o.url = cfg.queue.reveal();
  o.type = cfg.queue_type;
  o.node_id = cfg.service.ownership.node_id;
  o.prefetch = cfg.worker_prefetch;
  o.max_attempts = cfg.task_max_attempts;
  o.max_wait = cfg.task_max_wait;
  return o;
}

}  // namespace

int serve(const Config& cfg) {
  log::configure(cfg.log_level, cfg.log_format);
  net::io_context ioc(static_cast<int>(cfg.threads));
  auto service_opts = cfg.service;
  service_opts.ownership.version = kVersion;
  service_opts.ownership.start_spread = service_opts.session.start_spread;
  // A dead node's sends are taken over on the scale of its mailboxes: two leases (at least three
  // scans, which renew the claims of running sends).
  service_opts.send.claim = std::max<std::chrono::milliseconds>(
      2 * service_opts.ownership.lease, 3 * service_opts.send.scan_interval);
  const auto& role = service_opts.ownership.role;

  std::unique_ptr<store::Registry> registry;
  try {
    registry = make_registry(cfg);
  } catch (const std::exception& e) {
    log::error("registry_failed", {{"error", e.what()}});
    return 1;
  }

  // Sinks: the webhook, RabbitMQ exchanges, or several.
  delivery::WebhookSink webhook(ioc.get_executor(), cfg.webhook);
  std::vector<std::unique_ptr<delivery::AmqpSink>> amqp_sinks;
  std::vector<delivery::EventSink*> sinks;
  if (service_opts.webhook_sink) sinks.push_back(&webhook);
  for (const auto& url : cfg.amqp_sinks) {
    delivery::AmqpSinkOptions o;
    o.url = url.reveal();
    o.max_attempts = cfg.webhook.max_attempts;
    o.max_total = cfg.webhook.max_total;
    o.backoff_initial = cfg.webhook.backoff_initial;
    o.backoff_max = cfg.webhook.backoff_max;
    amqp_sinks.push_back(std::make_unique<delivery::AmqpSink>(ioc.get_executor(), o));
    sinks.push_back(amqp_sinks.back().get());
  }
  delivery::FanoutSink fanout(sinks);
  delivery::EventSink& sink = sinks.size() == 1 ? *sinks[0] : fanout;

  // Tasks: run here (in-process), or through RabbitMQ with this node as fallback.
  // OAuth2 tokens of every mailbox, shared by sessions, downloads and sends.
  service::CredentialsOptions copts;
  copts.default_webhook = service_opts.default_webhook;
  copts.http.ca_file = cfg.webhook.ca_file;
  copts.http.tls_insecure = cfg.webhook.tls_insecure;
  service::Credentials credentials(*registry, copts);
  service::Fetcher fetcher(ioc.get_executor(), *registry, sink, service_opts, cfg.threads,
                           &credentials);
  queue::InprocQueue local(
      ioc.get_executor(), [&fetcher](const queue::FetchTask& t) { return fetcher.run(t); },
      service_opts.fetch_concurrency);
  std::unique_ptr<queue::AmqpTaskQueue> amqp_queue;
  std::unique_ptr<queue::AmqpWorker> worker;
  queue::TaskQueue* tasks = &local;
  if (cfg.amqp_queue()) {
    if (role != "worker") {
      amqp_queue =
          std::make_unique<queue::AmqpTaskQueue>(ioc.get_executor(), queue_options(cfg), local);
      tasks = amqp_queue.get();
    }
    if (role != "api") {
      worker = std::make_unique<queue::AmqpWorker>(
          ioc.get_executor(), queue_options(cfg),
          [&fetcher](const queue::FetchTask& t) { return fetcher.run(t); });
    }
  }
  service::MailboxService svc(ioc, *registry, *tasks, sink, &fetcher, service_opts, &credentials);

  http::ServerOptions sopts;
  sopts.address = cfg.listen_host;
  sopts.port = cfg.listen_port;
  sopts.tokens = cfg.api_tokens;
  http::ApiServer server(ioc, sopts, svc);
  try {
    server.start();
  } catch (const std::exception& e) {
    log::error("listen_failed", {{"address", cfg.listen_host},
                                 {"port", std::to_string(cfg.listen_port)},
                                 {"error", e.what()}});
    return 1;
  }
  svc.start();
  if (worker) worker->start();
  log::info("started", {{"version", kVersion},
                        {"node", service_opts.ownership.node_id},
                        {"role", role},
                        {"listen", cfg.listen_host + ":" + std::to_string(server.port())},
                        {"store", cfg.redis_store() ? "redis" : "memory"},
                        {"state_file", cfg.state_file.empty() ? "(none)" : cfg.state_file},
                        {"queue", cfg.amqp_queue() ? "amqp (" + cfg.queue_type + ")" : "inproc"},
                        {"sinks", std::to_string(sinks.size())},
                        {"credentials", cfg.secret_key.empty() ? "plain" : "encrypted"},
                        {"threads", std::to_string(cfg.threads)}});

  // Graceful shutdown: stop accepting, hand the mailboxes over (sessions end IDLE with DONE and
  // log out, leases are released at once), let a worker finish its tasks, then wait (bounded)
  // for the sessions to finish before the io_context stops.
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  net::steady_timer grace(ioc);
  auto deadline = std::make_shared<std::chrono::steady_clock::time_point>();
  std::function<void()> wait_sessions = [&] {
    if (svc.sessions_ended() || std::chrono::steady_clock::now() > *deadline) {
      log::info("stopped", {{"sessions_ended", svc.sessions_ended() ? "true" : "false"}});
      ioc.stop();
      return;
    }
    grace.expires_after(std::chrono::milliseconds(50));
    grace.async_wait([&](boost::system::error_code) { wait_sessions(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("shutdown", {{"signal", std::to_string(sig)}});
    server.stop();
    net::co_spawn(
        ioc,
        [&]() -> net::awaitable<void> {
          co_await svc.shutdown();
          if (worker) worker->stop();
          if (amqp_queue) amqp_queue->stop();
          sink.stop();
          fetcher.stop();
          *deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
          wait_sessions();
        },
        net::detached);
  });

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < cfg.threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  try {
    registry->flush();
  } catch (const std::exception& e) {
    log::error("state_flush_failed", {{"error", e.what()}});
    return 1;
  }
  return 0;
}

}  // namespace el::app
