// A scripted MailboxApi for the http tests: records every call, answers with a chosen Outcome.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "service/api.hpp"

namespace el::http::testing {

namespace net = boost::asio;

class FakeApi : public service::MailboxApi {
 public:
  // Server tests call from io_context threads while the test thread reads: guard everything.
  struct Recorded {
    std::vector<std::string> calls;
    std::optional<core::MailboxConfig> cfg;
    service::UpdateMask mask;
    std::string id;
    std::string cursor;
    std::size_t limit = 0;
    std::optional<service::SendRequest> send;
    std::optional<service::SyncRequest> sync;
  };

  FakeApi() { next_.body = {{"id", "mb1"}, {"state", "connecting"}}; }

  void answer(service::Outcome o) {
    std::lock_guard lock(mu_);
    next_ = std::move(o);
  }
  void throw_next() {
    std::lock_guard lock(mu_);
    throw_ = true;
  }
  void set_ready(bool r) {
    std::lock_guard lock(mu_);
    ready_ = r;
  }
  Recorded recorded() const {
    std::lock_guard lock(mu_);
    return rec_;
  }
  std::vector<std::string> calls() const { return recorded().calls; }

  net::awaitable<service::Outcome> add_mailbox(core::MailboxConfig cfg) override {
    co_return record("add", [&](Recorded& r) { r.cfg = std::move(cfg); });
  }
  net::awaitable<service::Outcome> get_mailbox(std::string id) override {
    co_return record("get", [&](Recorded& r) { r.id = std::move(id); });
  }
  net::awaitable<service::Outcome> list_mailboxes(std::string cursor, std::size_t limit) override {
    co_return record("list", [&](Recorded& r) {
      r.cursor = std::move(cursor);
      r.limit = limit;
    });
  }
  net::awaitable<service::Outcome> update_mailbox(core::MailboxConfig cfg,
                                                  service::UpdateMask mask) override {
    co_return record("update", [&](Recorded& r) {
      r.cfg = std::move(cfg);
      r.mask = mask;
    });
  }
  net::awaitable<service::Outcome> remove_mailbox(std::string id) override {
    co_return record("remove", [&](Recorded& r) { r.id = std::move(id); });
  }
  net::awaitable<service::Outcome> send_message(std::string id, service::SendRequest req) override {
    co_return record("send", [&](Recorded& r) {
      r.id = std::move(id);
      r.send = std::move(req);
    });
  }
  net::awaitable<service::Outcome> get_send(std::string id) override {
    co_return record("get_send", [&](Recorded& r) { r.id = std::move(id); });
  }
  net::awaitable<service::Outcome> list_folders(std::string id) override {
    co_return record("folders", [&](Recorded& r) { r.id = std::move(id); });
  }
  net::awaitable<service::Outcome> sync_mailbox(std::string id, service::SyncRequest req) override {
    co_return record("sync", [&](Recorded& r) {
      r.id = std::move(id);
      r.sync = std::move(req);
    });
  }
  net::awaitable<service::Outcome> validate(core::MailboxConfig cfg) override {
    co_return record("validate", [&](Recorded& r) { r.cfg = std::move(cfg); });
  }
  net::awaitable<service::Outcome> list_nodes() override {
    co_return record("nodes", [](Recorded&) {});
  }
  boost::json::object readiness() const override {
    std::lock_guard lock(mu_);
    return {{"status", ready_ ? "ready" : "not_ready"}, {"checks", boost::json::object{}}};
  }
  std::string metrics_text() const override {
    return "# TYPE el_mailboxes gauge\nel_mailboxes{state=\"idle\"} 3\n";
  }

 private:
  template <class F>
  service::Outcome record(const char* name, F&& f) {
    std::lock_guard lock(mu_);
    rec_.calls.emplace_back(name);
    f(rec_);
    if (throw_) {
      throw_ = false;
      throw std::runtime_error("scripted failure");
    }
    return next_;
  }

  mutable std::mutex mu_;
  Recorded rec_;
  service::Outcome next_;
  bool throw_ = false;
  bool ready_ = true;
};

}  // namespace el::http::testing
