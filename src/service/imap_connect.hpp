// Opens a logged-in IMAP client for a mailbox's settings: connect, TLS/STARTTLS, login, ID.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <memory>

#include "core/types.hpp"
#include "imap/client.hpp"

namespace el::service {

struct ImapTimeouts {
  std::chrono::milliseconds connect{30000};
  std::chrono::milliseconds command{30000};
  std::chrono::milliseconds done{10000};
  std::size_t max_literal = 64u << 20;
};

// Runs on the calling coroutine's executor (a strand): the client must be used only there.
// Throws imap::Error.
boost::asio::awaitable<std::unique_ptr<imap::Client>> open_imap(const core::ImapSettings& s,
                                                                const ImapTimeouts& t);

}  // namespace el::service
