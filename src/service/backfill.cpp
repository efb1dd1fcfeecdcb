// Period synchronization: search, order by arrival, download, deliver as backfill.
#include "service/backfill.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <tuple>

#include "core/log.hpp"
#include "imap/client.hpp"
#include "mime/message.hpp"
#include "service/fetcher.hpp"
#include "service/imap_connect.hpp"
#include "service/mail_tools.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
namespace json = boost::json;
using SysClock = std::chrono::system_clock;

struct Backfill::Job {
  std::string id;
  core::MailboxConfig cfg;
  SyncRequest req;
  std::vector<std::string> folders;
  std::string state = "running";
  std::size_t total = 0;
  std::size_t done = 0;
  std::string started_at;
  std::string finished_at;
  std::string error;
  std::chrono::steady_clock::time_point saved_at{};

  json::object to_json(const std::string& node) const {
    json::object o{{"sync_id", id},
                   {"state", state},
                   {"since", core::format_rfc3339(req.since)},
                   {"done", done},
                   {"total", total},
                   {"started_at", started_at},
                   {"updated_at", core::format_rfc3339(SysClock::now())},
                   {"node", node}};
    if (req.until) o["until"] = core::format_rfc3339(*req.until);
    json::array fs;
    for (const auto& f : folders) fs.emplace_back(f);
    o["folders"] = std::move(fs);
    if (!finished_at.empty()) o["finished_at"] = finished_at;
    if (!error.empty()) o["error"] = error;
    return o;
  }
};

Backfill::Backfill(net::io_context& ioc, store::Registry& registry, delivery::EventSink& sink,
                   const ServiceOptions& opts, Credentials* credentials)
    : ioc_(ioc), registry_(registry), sink_(sink), opts_(opts), credentials_(credentials) {
  mime::initialize();
}

Backfill::~Backfill() {
  stop();
  cpu_.join();
}

void Backfill::stop() {
  std::lock_guard lk(mu_);
  stopped_ = true;
}

net::awaitable<void> Backfill::save(Job& job) {
  const std::string text = json::serialize(job.to_json(opts_.ownership.node_id));
  job.saved_at = std::chrono::steady_clock::now();
  try {
    const std::string id = job.cfg.id;
    co_await store::call(registry_, [&] { return registry_.put_sync(id, text); });
  } catch (const std::exception& e) {
    log::warn("sync_progress_not_saved", {{"mailbox", job.cfg.id}, {"error", e.what()}});
  }
}

net::awaitable<Outcome> Backfill::start(const core::MailboxConfig& cfg, SyncRequest req) {
  {
    std::lock_guard lk(mu_);
    if (stopped_) co_return Outcome::fail(Errc::unavailable, "the node is shutting down");
    if (running_.count(cfg.id))
      co_return Outcome::fail(Errc::conflict, "a sync of this mailbox is already running");
    running_.insert(cfg.id);
  }
  auto job = std::make_shared<Job>();
  job->id = core::random_event_id();
  job->cfg = cfg;
  job->req = std::move(req);
  job->folders = job->req.folders.empty() ? cfg.folders : job->req.folders;
  // INBOX is case-insensitive: the live spelling, so that event ids match live delivery's.
  for (auto& name : job->folders)
    if (is_inbox(name)) name = "INBOX";
  job->started_at = core::format_rfc3339(SysClock::now());
  co_await save(*job);
  auto self = shared_from_this();
  net::co_spawn(
      net::make_strand(ioc_),
      [self, job]() -> net::awaitable<void> {
        try {
          co_await self->run(job);
        } catch (const std::exception& e) {
          job->state = "failed";
          job->error = e.what();
        }
        job->finished_at = core::format_rfc3339(SysClock::now());
        co_await self->save(*job);
        log::info("sync_finished", {{"mailbox", job->cfg.id},
                                    {"sync", job->id},
                                    {"state", job->state},
                                    {"done", std::to_string(job->done)},
                                    {"total", std::to_string(job->total)},
                                    {"error", job->error}});
        std::lock_guard lk(self->mu_);
        self->running_.erase(job->cfg.id);
      },
      net::detached);
  Outcome out;
  out.body = job->to_json(opts_.ownership.node_id);
  co_return out;
}

net::awaitable<void> Backfill::run(std::shared_ptr<Job> job) {
  const auto& cfg = job->cfg;
  const auto& f = opts_.fetch;
  ImapTimeouts t{f.connect_timeout, f.command_timeout, opts_.session.done_timeout,
                 f.max_message_bytes};
  auto client = co_await open_imap(cfg, t, credentials_);
  if (job->req.folders.empty() && cfg.all_folders)
    job->folders = co_await resolve_folders(*client, cfg, 1000);

  // Candidates by IMAP date (day granularity), then exactly by INTERNALDATE.
  struct Item {
    SysClock::time_point at;
    std::size_t folder;
    std::uint32_t uid;
    std::uint64_t size;
  };
  std::vector<Item> items;
  std::vector<std::uint32_t> uidvalidity(job->folders.size());
  // IMAP compares dates in the server's time zone: a day of margin on each side, then the
  // exact INTERNALDATE filter below.
  std::string criteria =
      "SINCE " + imap::format_search_date(job->req.since - std::chrono::hours(24));
  if (job->req.until)
    criteria += " BEFORE " + imap::format_search_date(*job->req.until + std::chrono::hours(24));
  for (std::size_t i = 0; i < job->folders.size(); ++i) {
    auto info = co_await client->select(job->folders[i], /*read_only=*/true);
    uidvalidity[i] = info.uidvalidity;
    auto uids = co_await client->uid_search(criteria);
    if (uids.empty()) continue;
    std::sort(uids.begin(), uids.end());
    for (std::size_t b = 0; b < uids.size(); b += 500) {
      std::string set;
      for (std::size_t k = b; k < std::min(uids.size(), b + 500); ++k) {
        if (!set.empty()) set += ',';
        set += std::to_string(uids[k]);
      }
      auto metas = co_await client->uid_fetch(set, imap::Client::FetchBody::none);
      for (const auto& m : metas) {
        auto at = imap::parse_internal_date(m.internal_date);
        if (!at || *at < job->req.since) continue;
        if (job->req.until && *at >= *job->req.until) continue;
        items.push_back({*at, i, m.uid, m.size});
      }
    }
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return std::tie(a.at, a.folder, a.uid) < std::tie(b.at, b.folder, b.uid);
  });
  job->total = items.size();
  co_await save(*job);

  auto target = webhook_for(cfg, opts_);
  if (!target && opts_.webhook_sink) throw std::runtime_error("no webhook for this mailbox");
  if (!target) target.emplace();
  mime::ParseOptions popts;
  popts.max_attachment_bytes = f.max_attachment_bytes;
  std::size_t selected = job->folders.size();  // none yet
  const std::size_t batch = std::max<std::size_t>(1, f.batch);
  for (std::size_t i = 0; i < items.size();) {
    {
      std::lock_guard lk(mu_);
      if (stopped_) throw std::runtime_error("the node shut down during the sync");
    }
    // A run of messages of one folder, in arrival order.
    std::size_t end = i;
    while (end < items.size() && end - i < batch && items[end].folder == items[i].folder) ++end;
    const std::size_t folder = items[i].folder;
    if (selected != folder) {
      auto info = co_await client->select(job->folders[folder], /*read_only=*/true);
      if (info.uidvalidity != uidvalidity[folder])
        throw std::runtime_error("the UIDVALIDITY of " + job->folders[folder] +
                                 " changed during the sync; call it again");
      selected = folder;
    }
    // Over --max-message-bytes only the header is downloaded, as live delivery does.
    std::string set, big;
    for (std::size_t k = i; k < end; ++k) {
      std::string& s = items[k].size > f.max_message_bytes ? big : set;
      if (!s.empty()) s += ',';
      s += std::to_string(items[k].uid);
    }
    std::vector<imap::FetchedMessage> msgs;
    if (!set.empty()) msgs = co_await client->uid_fetch(set, imap::Client::FetchBody::full);
    if (!big.empty()) {
      auto heads = co_await client->uid_fetch(big, imap::Client::FetchBody::header);
      for (auto& h : heads) msgs.push_back(std::move(h));
    }
    for (std::size_t k = i; k < end; ++k) {
      auto it = std::find_if(msgs.begin(), msgs.end(),
                             [&](const auto& m) { return m.uid == items[k].uid; });
      if (it == msgs.end()) {
        ++job->done;  // expunged meanwhile
        continue;
      }
      mime::MessageMeta meta;
      meta.uid = it->uid;
      meta.folder = job->folders[folder];
      meta.flags = it->flags;
      meta.internal_date = core::format_rfc3339(items[k].at);
      auto& body = it->body;
      auto parse = [&]() -> net::awaitable<json::object> {
        co_return mime::to_json(body, meta, popts);
      };
      auto op = net::co_spawn(cpu_, std::move(parse), net::use_awaitable);
      auto data = co_await std::move(op);
      core::Event ev;
      ev.id = core::message_event_id(cfg.id, meta.folder, uidvalidity[folder], it->uid);
      ev.type = "message.new";
      ev.mailbox_id = cfg.id;
      ev.created_at = core::format_rfc3339(SysClock::now());
      ev.data = std::move(data);
      ev.data["uidvalidity"] = uidvalidity[folder];
      ev.data["backfill"] = true;
      if (it->size > f.max_message_bytes) {
        ev.data["size"] = it->size;
        ev.data["truncated"] = true;
      }
      ev.data["sync_id"] = job->id;
      const bool accepted = co_await sink_.deliver(ev, *target);
      if (!accepted)
        throw std::runtime_error("the sink did not accept an event; call the sync again");
      ++job->done;
      if (std::chrono::steady_clock::now() - job->saved_at > std::chrono::seconds(1))
        co_await save(*job);
    }
    i = end;
  }
  co_await client->logout();
  job->state = "done";
}

}  // namespace el::service
