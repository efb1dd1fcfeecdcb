// OAuth2 access tokens per mailbox: cache, proactive and forced refresh, persistence.
#include "service/credentials.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "store/call.hpp"

namespace el::service {

namespace net = boost::asio;
using SysClock = std::chrono::system_clock;
using Steady = std::chrono::steady_clock;

bool uses_oauthbearer(const core::MailboxConfig& cfg) {
  return cfg.oauth2 && cfg.oauth2->mechanism == "oauthbearer";
}

Credentials::Credentials(store::Registry& registry, CredentialsOptions opts)
    : registry_(registry), opts_(std::move(opts)) {}

void Credentials::forget(const std::string& mailbox_id) {
  std::lock_guard lk(mu_);
  cache_.erase(mailbox_id);
}

std::uint64_t Credentials::refreshes() const {
  std::lock_guard lk(mu_);
  return refreshes_;
}

net::awaitable<core::Secret> Credentials::access_token(const core::MailboxConfig& cfg, bool force) {
  const auto& a = *cfg.oauth2;
  const auto asked_at = Steady::now();
  const auto deadline = asked_at + opts_.http.timeout + std::chrono::seconds(5);
  for (;;) {
    Entry snapshot;
    bool wait = false;
    {
      std::lock_guard lk(mu_);
      auto& e = cache_[cfg.id];
      // New settings from the application win over what this node refreshed before.
      if (e.source != a.access_token.reveal() && e.token != a.access_token &&
          (e.token.empty() || !a.access_token.empty())) {
        e = Entry{};
        e.source = a.access_token.reveal();
        e.token = a.access_token;
        e.expires_at = a.expires_at;
        e.refresh_token = a.refresh_token;
      }
      if (e.busy) {
        wait = true;
      } else {
        const bool expiring =
            e.token.empty() ||
            (e.expires_at && *e.expires_at - opts_.refresh_margin <= SysClock::now());
        // Someone refreshed after we were refused: use theirs.
        const bool fresh_enough = e.refreshed_at > asked_at - std::chrono::seconds(2);
        const bool need = (force && !fresh_enough) || (expiring && a.can_refresh());
        if (!need) co_return e.token;
        e.busy = true;
        snapshot = e;
      }
    }
    if (wait) {
      if (Steady::now() > deadline)
        throw oauth::RefreshError(oauth::RefreshErrorKind::unavailable,
                                  "another token refresh of this mailbox did not finish");
      net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(20));
      co_await t.async_wait(net::use_awaitable);
      continue;
    }
    std::exception_ptr failure;
    try {
      co_await refresh(cfg, std::move(snapshot));
    } catch (...) {
      failure = std::current_exception();
    }
    {
      std::lock_guard lk(mu_);
      cache_[cfg.id].busy = false;
    }
    if (failure) std::rethrow_exception(failure);
    force = false;  // done: the loop returns the new token
  }
}

net::awaitable<void> Credentials::refresh(const core::MailboxConfig& cfg, Entry snapshot) {
  const auto& a = *cfg.oauth2;
  auto ex = co_await net::this_coro::executor;
  oauth::Token token;
  if (!a.refresh_url.empty()) {
    core::Secret signing;
    if (cfg.webhook) {
      signing = cfg.webhook->secret;
    } else if (opts_.default_webhook) {
      signing = opts_.default_webhook->secret;
    }
    token =
        co_await oauth::ask_application(ex, a.refresh_url, cfg.id, cfg.email, signing, opts_.http);
  } else if (!a.token_url.empty() && !snapshot.refresh_token.empty()) {
    oauth::RefreshGrant grant;
    grant.token_url = a.token_url;
    grant.client_id = a.client_id;
    grant.client_secret = a.client_secret;
    grant.refresh_token = snapshot.refresh_token;
    token = co_await oauth::refresh(ex, grant, opts_.http);
  } else {
    throw oauth::RefreshError(oauth::RefreshErrorKind::refused,
                              "the access token was refused and the mailbox has no "
                              "oauth2.refresh_token with token_url, nor refresh_url");
  }
  core::OAuth2Settings saved;
  saved.access_token = token.access_token;
  saved.expires_at = token.expires_at;
  saved.refresh_token = token.refresh_token.empty() ? snapshot.refresh_token : token.refresh_token;
  {
    std::lock_guard lk(mu_);
    auto& e = cache_[cfg.id];
    e.token = saved.access_token;
    e.expires_at = saved.expires_at;
    e.refresh_token = saved.refresh_token;
    e.refreshed_at = Steady::now();
    ++refreshes_;
  }
  log::info("oauth2_token_refreshed",
            {{"mailbox", cfg.id},
             {"via", a.refresh_url.empty() ? "token_url" : "refresh_url"},
             {"expires_at", saved.expires_at ? core::format_rfc3339(*saved.expires_at) : ""}});
  if (!opts_.persist) co_return;
  try {
    const std::string id = cfg.id;
    co_await store::call(registry_, [&] { return registry_.save_tokens(id, saved); });
  } catch (const std::exception& e) {
    // The token works for this node now; the next refresh saves again.
    log::warn("oauth2_token_not_saved", {{"mailbox", cfg.id}, {"error", e.what()}});
  }
}

}  // namespace el::service
