// Fetcher: download, parse, deliver, checkpoint; one fetch task at a time per folder.
#include "service/fetcher.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "imap/client.hpp"
#include "mime/message.hpp"
#include "service/imap_connect.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
using queue::TaskResult;
using Clock = std::chrono::steady_clock;

std::optional<core::WebhookTarget> webhook_for(const core::MailboxConfig& cfg,
                                               const ServiceOptions& opts) {
  if (cfg.webhook) return cfg.webhook;
  return opts.default_webhook;
}

namespace {
std::string pool_key(std::string_view mailbox, std::string_view folder) {
  std::string k(mailbox);
  k += '\0';
  k += folder;
  return k;
}

std::string join_uids(const std::vector<std::uint32_t>& uids, std::size_t from, std::size_t to) {
  std::string s;
  for (std::size_t i = from; i < to; ++i) {
    if (!s.empty()) s += ',';
    s += std::to_string(uids[i]);
  }
  return s;
}
}  // namespace

struct Fetcher::Impl : std::enable_shared_from_this<Impl> {
  struct Pooled {
    std::unique_ptr<imap::Client> client;
    net::any_io_executor ex;  // the strand the client is bound to
    std::uint64_t epoch = 0;
    std::uint32_t uidvalidity = 0;
    Clock::time_point last_used;
  };

  net::any_io_executor ex;
  store::Registry& registry;
  delivery::EventSink& sink;
  ServiceOptions opts;
  Credentials* credentials = nullptr;
  net::thread_pool cpu;
  std::mutex mu;
  std::unordered_map<std::string, Pooled> pool;
  net::steady_timer sweep_timer;
  bool stopped = false;

  Impl(net::any_io_executor e, store::Registry& r, delivery::EventSink& s, ServiceOptions o,
       std::size_t threads)
      : ex(net::make_strand(e)),
        registry(r),
        sink(s),
        opts(std::move(o)),
        cpu(threads ? threads : 1),
        sweep_timer(e) {}

  std::optional<Pooled> take(const std::string& key, const net::any_io_executor& strand,
                             std::uint64_t epoch) {
    std::lock_guard lk(mu);
    auto it = pool.find(key);
    if (it == pool.end()) return std::nullopt;
    Pooled p = std::move(it->second);
    pool.erase(it);
    if (p.ex != strand || p.epoch != epoch) {
      close_later(std::move(p));
      return std::nullopt;
    }
    return p;
  }

  void put(const std::string& key, Pooled p) {
    p.last_used = Clock::now();
    std::lock_guard lk(mu);
    if (stopped) {
      close_later(std::move(p));
      return;
    }
    auto [it, inserted] = pool.try_emplace(key, std::move(p));
    if (!inserted) close_later(std::move(p));
  }

  // LOGOUT on the client's own strand, without waiting for it.
  static void close_later(Pooled p) {
    auto client = std::shared_ptr<imap::Client>(std::move(p.client));
    net::co_spawn(
        p.ex, [client]() -> net::awaitable<void> { co_await client->logout(); }, net::detached);
  }

  net::awaitable<void> sweep_loop() {
    auto self = shared_from_this();
    while (true) {
      sweep_timer.expires_after(std::chrono::seconds(5));
      (void)co_await sweep_timer.async_wait(net::as_tuple(net::use_awaitable));
      std::lock_guard lk(mu);
      if (stopped) co_return;
      const auto now = Clock::now();
      for (auto it = pool.begin(); it != pool.end();) {
        if (now - it->second.last_used > opts.fetch.pool_idle) {
          close_later(std::move(it->second));
          it = pool.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  net::awaitable<TaskResult> run(const queue::FetchTask& task) {
    auto self = shared_from_this();
    TaskResult result;
    result.last_uid = task.after_uid;
    std::optional<store::MailboxRecord> rec;
    try {
      rec = co_await store::call(registry, [&] { return registry.get(task.mailbox_id); });
    } catch (const store::Unavailable& e) {
      result.status = TaskResult::Status::retry_later;
      result.error = std::string("registry: ") + e.what();
      co_return result;
    }
    if (!rec || rec->epoch != task.epoch) {
      result.status = TaskResult::Status::stale;
      co_return result;
    }
    auto target = webhook_for(rec->config, opts);
    if (!target && opts.webhook_sink) {
      result.status = TaskResult::Status::retry_later;
      result.error = "no webhook configured for this mailbox";
      co_return result;
    }
    if (!target) target.emplace();  // the sink does not use it
    std::uint32_t last = task.after_uid;
    if (auto* cp = rec->checkpoint(task.folder); cp && cp->uidvalidity == task.uidvalidity)
      last = std::max(last, cp->last_uid);
    result.last_uid = last;

    if (task.borrowed_connection) {
      // The session's own connection: its view is fresh (it just left IDLE or selected).
      try {
        co_await download(*task.borrowed_connection, task, *target, result);
      } catch (const imap::Error& e) {
        result.status = TaskResult::Status::retry_later;
        result.connection_failed = true;
        result.error = std::string("fetch: ") + e.what();
      }
      co_return result;
    }

    const auto strand = co_await net::this_coro::executor;
    const std::string key = pool_key(task.mailbox_id, task.folder);
    std::optional<Pooled> conn = take(key, strand, task.epoch);
    try {
      if (!conn) {
        ImapTimeouts t{opts.fetch.connect_timeout, opts.fetch.command_timeout,
                       opts.session.done_timeout, opts.fetch.max_message_bytes};
        Pooled p;
        p.client = co_await open_imap(rec->config, t, credentials);
        p.ex = strand;
        p.epoch = task.epoch;
        auto info = co_await p.client->select(task.folder, /*read_only=*/true);
        p.uidvalidity = info.uidvalidity;
        conn = std::move(p);
      } else {
        // A pooled connection's view of the folder is as old as its last command: Dovecot
        // (and others) apply new mail to the view only when a command ends. NOOP first, so the
        // search below sees what the session was just told about.
        co_await conn->client->noop();
      }
      if (conn->uidvalidity != task.uidvalidity) {
        result.status = TaskResult::Status::reset;
        result.error = "uidvalidity changed";
        co_return result;  // the connection is dropped with `conn`
      }
      co_await download(*conn->client, task, *target, result);
      if (result.status != TaskResult::Status::stale) put(key, std::move(*conn));
    } catch (const imap::Error& e) {
      result.status = TaskResult::Status::retry_later;
      result.error = std::string("fetch: ") + e.what();
      log::warn("fetch_failed", {{"mailbox", task.mailbox_id},
                                 {"folder", task.folder},
                                 {"kind", imap::to_string(e.kind())},
                                 {"error", e.what()}});
    }
    co_return result;
  }

  // One batch in UID order: sizes first, then whole messages up to --max-message-bytes and the
  // header of larger ones, so one huge message can neither exhaust memory nor block the folder.
  net::awaitable<std::vector<imap::FetchedMessage>> fetch_batch(imap::Client& client,
                                                                const std::string& uid_set) {
    using FetchBody = imap::Client::FetchBody;
    auto sizes = co_await client.uid_fetch(uid_set, FetchBody::none);
    std::vector<std::uint32_t> whole, header;
    for (const auto& s : sizes)
      (s.size > opts.fetch.max_message_bytes ? header : whole).push_back(s.uid);
    std::vector<imap::FetchedMessage> out;
    if (!whole.empty()) out = co_await client.uid_fetch(join_uids(whole, 0, whole.size()));
    if (!header.empty()) {
      auto heads =
          co_await client.uid_fetch(join_uids(header, 0, header.size()), FetchBody::header);
      for (auto& h : heads) {
        for (const auto& s : sizes)
          if (s.uid == h.uid) h.size = std::max(h.size, s.size);
        out.push_back(std::move(h));
      }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.uid < b.uid; });
    co_return out;
  }

  // True when the task's epoch is still the mailbox's; otherwise sets result (stale, or
  // retry_later when the registry cannot be asked) and returns false.
  net::awaitable<bool> current_epoch(const queue::FetchTask& task, TaskResult& result) {
    std::optional<std::uint64_t> epoch;
    try {
      epoch = co_await store::call(registry, [&] { return registry.epoch(task.mailbox_id); });
    } catch (const store::Unavailable& e) {
      metrics::global().registry_errors.fetch_add(1, std::memory_order_relaxed);
      result.status = TaskResult::Status::retry_later;
      result.error = std::string("registry: ") + e.what();
      co_return false;
    }
    if (epoch != task.epoch) {
      result.status = TaskResult::Status::stale;
      log::info("fetch_task_stale", {{"mailbox", task.mailbox_id},
                                     {"folder", task.folder},
                                     {"task_epoch", std::to_string(task.epoch)},
                                     {"epoch", epoch ? std::to_string(*epoch) : "removed"}});
      co_return false;
    }
    co_return true;
  }

  // Downloads, parses, delivers and checkpoints every message above result.last_uid, in UID
  // order, in batches. Sets result.status; throws imap::Error when the connection fails.
  net::awaitable<void> download(imap::Client& client, const queue::FetchTask& task,
                                const core::WebhookTarget& target, TaskResult& result) {
    std::uint32_t last = result.last_uid;
    auto uids = co_await client.uid_search("UID " + std::to_string(last + 1) + ":*");
    // "n:*" matches the highest UID even when it is below n.
    std::erase_if(uids, [&](std::uint32_t u) { return u <= last; });
    std::sort(uids.begin(), uids.end());
    uids.erase(std::unique(uids.begin(), uids.end()), uids.end());

    mime::ParseOptions popts;
    popts.max_attachment_bytes = opts.fetch.max_attachment_bytes;
    const std::size_t batch = std::max<std::size_t>(1, opts.fetch.batch);
    auto& m = metrics::global();
    for (std::size_t i = 0; i < uids.size(); i += batch) {
      const std::size_t end = std::min(uids.size(), i + batch);
      auto msgs = co_await fetch_batch(client, join_uids(uids, i, end));
      for (auto& msg : msgs) {
        if (msg.uid <= last) continue;
        // Over --max-message-bytes only the header was downloaded: deliver it, marked.
        const bool header_only = msg.size > opts.fetch.max_message_bytes;
        m.fetch_bytes.fetch_add(msg.body.size(), std::memory_order_relaxed);
        m.messages_fetched.fetch_add(1, std::memory_order_relaxed);
        mime::MessageMeta meta;
        meta.uid = msg.uid;
        meta.folder = task.folder;
        meta.flags = msg.flags;
        if (auto t = imap::parse_internal_date(msg.internal_date))
          meta.internal_date = core::format_rfc3339(*t);
        // Parsing is CPU work: keep it off the I/O threads.
        auto data = co_await net::co_spawn(
            cpu,
            [&]() -> net::awaitable<boost::json::object> {
              co_return mime::to_json(msg.body, meta, popts);
            },
            net::use_awaitable);
        msg.body.clear();
        msg.body.shrink_to_fit();
        if (data.contains("parse_errors")) m.parse_errors.fetch_add(1, std::memory_order_relaxed);
        if (header_only) {
          data["size"] = msg.size;
          data["truncated"] = true;
          log::warn("message_over_size_limit", {{"mailbox", task.mailbox_id},
                                                {"folder", task.folder},
                                                {"uid", std::to_string(msg.uid)},
                                                {"size", std::to_string(msg.size)}});
        }
        core::Event ev;
        ev.id = core::message_event_id(task.mailbox_id, task.folder, task.uidvalidity, msg.uid);
        ev.type = "message.new";
        ev.mailbox_id = task.mailbox_id;
        ev.created_at = core::format_rfc3339(std::chrono::system_clock::now());
        ev.data = std::move(data);
        ev.data["uidvalidity"] = task.uidvalidity;
        // Fencing: deliver only while the task's epoch is the mailbox's epoch. A node that was
        // frozen past its lease, or a late task, finds it moved (another owner claimed it, or
        // the settings changed) and stops before delivering. The window between this check
        // and the delivery can only produce a duplicate under the same event id.
        const auto checked = co_await current_epoch(task, result);
        if (!checked) co_return;
        const bool accepted = co_await sink.deliver(ev, target);  // not in the `if`: GCC 12
        if (!accepted) {
          result.status = TaskResult::Status::retry_later;
          result.error = "event not accepted by the sink";
          co_return;
        }
        bool saved = false;
        try {
          saved = co_await store::call(registry, [&] {
            return registry.save_checkpoint(task.mailbox_id, task.epoch,
                                            {task.folder, task.uidvalidity, msg.uid}, 1);
          });
        } catch (const store::Unavailable& e) {
          // Delivered but not saved: the next task delivers it again under the same id.
          metrics::global().registry_errors.fetch_add(1, std::memory_order_relaxed);
          result.status = TaskResult::Status::retry_later;
          result.error = std::string("checkpoint not saved: ") + e.what();
          co_return;
        }
        if (!saved) {
          result.status = TaskResult::Status::stale;
          co_return;
        }
        last = msg.uid;
        result.last_uid = last;
        ++result.delivered;
        log::debug("message_delivered", {{"mailbox", task.mailbox_id},
                                         {"folder", task.folder},
                                         {"uid", std::to_string(msg.uid)},
                                         {"event_id", ev.id}});
      }
    }
    result.status = TaskResult::Status::done;
  }
};

Fetcher::Fetcher(net::any_io_executor ex, store::Registry& registry, delivery::EventSink& sink,
                 ServiceOptions opts, std::size_t cpu_threads, Credentials* credentials)
    : impl_(std::make_shared<Impl>(ex, registry, sink, std::move(opts), cpu_threads)) {
  impl_->credentials = credentials;
  mime::initialize();
  net::co_spawn(impl_->ex, impl_->sweep_loop(), net::detached);
}

Fetcher::~Fetcher() {
  stop();
  impl_->cpu.join();
}

net::awaitable<TaskResult> Fetcher::run(const queue::FetchTask& task) {
  auto impl = impl_;
  co_return co_await impl->run(task);
}

void Fetcher::forget(std::string_view mailbox_id) {
  std::lock_guard lk(impl_->mu);
  const std::string prefix = std::string(mailbox_id) + '\0';
  for (auto it = impl_->pool.begin(); it != impl_->pool.end();) {
    if (it->first.compare(0, prefix.size(), prefix) == 0) {
      Impl::close_later(std::move(it->second));
      it = impl_->pool.erase(it);
    } else {
      ++it;
    }
  }
}

void Fetcher::stop() {
  std::lock_guard lk(impl_->mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  for (auto& [k, p] : impl_->pool) Impl::close_later(std::move(p));
  impl_->pool.clear();
  net::post(impl_->ex, [impl = impl_] { impl->sweep_timer.cancel(); });
}

}  // namespace el::service
