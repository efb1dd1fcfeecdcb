// `email-listener serve`: the only place that knows every adapter. Embedded default: memory
// registry (optionally a state file), in-process queue, webhook sink.
#include "app/serve.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <thread>

#include "core/log.hpp"
#include "delivery/webhook.hpp"
#include "el/version.hpp"
#include "http/server.hpp"
#include "queue/inproc_queue.hpp"
#include "service/fetcher.hpp"
#include "service/service.hpp"
#include "store/memory_registry.hpp"

namespace el::app {

namespace net = boost::asio;

int serve(const Config& cfg) {
  log::configure(cfg.log_level, cfg.log_format);
  net::io_context ioc(static_cast<int>(cfg.threads));

  store::MemoryRegistryOptions ropts;
  ropts.state_file = cfg.state_file;
  if (!cfg.secret_key.empty())
    ropts.secret_box = std::make_shared<const core::SecretBox>(
        core::SecretBox::from_base64(cfg.secret_key.reveal(), cfg.secret_key_old.reveal()));
  store::MemoryRegistry registry(ropts);
  delivery::WebhookSink sink(ioc.get_executor(), cfg.webhook);
  service::Fetcher fetcher(ioc.get_executor(), registry, sink, cfg.service, cfg.threads);
  queue::InprocQueue tasks(
      ioc.get_executor(), [&fetcher](const queue::FetchTask& t) { return fetcher.run(t); },
      cfg.service.fetch_concurrency);
  service::MailboxService svc(ioc, registry, tasks, sink, &fetcher, cfg.service);

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
  log::info("started", {{"version", kVersion},
                        {"listen", cfg.listen_host + ":" + std::to_string(server.port())},
                        {"state_file", cfg.state_file.empty() ? "(memory only)" : cfg.state_file},
                        {"credentials", cfg.secret_key.empty() ? "plain" : "encrypted"},
                        {"mailboxes", std::to_string(registry.size())},
                        {"threads", std::to_string(cfg.threads)}});

  // Graceful shutdown: stop accepting, end IDLE with DONE and log out, stop retries, then wait
  // (bounded) for the sessions to finish before the io_context stops.
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
    svc.stop();
    sink.stop();
    fetcher.stop();
    *deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    wait_sessions();
  });

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < cfg.threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  try {
    registry.flush();
  } catch (const std::exception& e) {
    log::error("state_flush_failed", {{"error", e.what()}});
    return 1;
  }
  return 0;
}

}  // namespace el::app
