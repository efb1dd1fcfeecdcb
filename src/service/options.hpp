// Options of the service layer (sessions and fetching), filled by app/ from configuration.
#pragma once
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "core/types.hpp"

namespace el::service {

using std::chrono::milliseconds;

struct SessionOptions {
  milliseconds connect_timeout{30000};
  milliseconds command_timeout{30000};
  milliseconds done_timeout{10000};
  milliseconds idle_refresh{25 * 60 * 1000};     // IDLE is re-issued before this
  milliseconds recheck_interval{5 * 60 * 1000};  // folders are re-checked for missed pushes
  milliseconds poll_interval{60000};             // NOOP polling without IDLE
  milliseconds backoff_initial{1000};            // reconnect
  milliseconds backoff_max{5 * 60 * 1000};
  milliseconds auth_retry{10 * 60 * 1000};
  // At start-up, sessions start at a random delay up to this (no stampede); 0: automatic,
  // 5 ms per mailbox, at most 60 s.
  milliseconds start_spread{0};
  // Download on the folder's own IDLE connection (leave IDLE, fetch, IDLE again): one
  // connection per folder and the lowest latency. false: a second, pooled connection downloads
  // while the first stays in IDLE.
  bool fetch_on_idle_connection = true;
  // Folders of one mailbox with an IDLE connection each (INBOX first, then in order); the
  // others are polled with STATUS on one more connection every status_poll_interval.
  std::size_t max_idle_connections = 5;
  milliseconds status_poll_interval{60000};
  // Those folders are watched with NOTIFY (RFC 5465) on the poller's connection where the
  // server offers it; STATUS polling otherwise.
  bool use_notify = true;
  milliseconds folder_rescan{10 * 60 * 1000};  // "folders": "all" looks for new folders
};

struct FetchOptions {
  std::size_t batch = 20;                     // messages per UID FETCH
  std::size_t max_message_bytes = 64u << 20;  // larger literal: the connection is dropped
  std::size_t max_attachment_bytes = 10u << 20;
  milliseconds connect_timeout{30000};
  milliseconds command_timeout{60000};
  milliseconds pool_idle{30000};  // a download connection unused this long is logged out
};

// Who serves which mailbox when several nodes share a registry (ARCHITECTURE §5).
struct OwnershipOptions {
  std::string node_id;           // unique in the fleet (a StatefulSet pod name)
  std::string role = "all";      // api | worker | all; workers hold no mailboxes
  std::size_t capacity = 10000;  // most mailboxes this node holds
  milliseconds lease{15000};     // a dead node's mailboxes are taken over after this
  std::string version;           // shown in GET /v1/nodes
  // The sessions of mailboxes claimed together start at random times within this window (0:
  // 5 ms per mailbox, at most 60 s); filled from SessionOptions::start_spread.
  milliseconds start_spread{0};
};

// Sending mail (POST /v1/mailboxes/{id}/send).
struct SendOptions {
  std::chrono::seconds retention{24 * 3600};  // sends and their Idempotency-Keys are kept
  std::uint32_t max_attempts = 10;            // temporary failures, then message.send_failed
  milliseconds backoff_initial{5000};
  milliseconds backoff_max{10 * 60 * 1000};
  milliseconds claim{60000};  // a node running a send holds it this long, renewed (serve: 2 leases)
  milliseconds scan_interval{5000};  // looks for sends no node runs (after a crash)
  milliseconds connect_timeout{30000};
  milliseconds command_timeout{60000};
  milliseconds data_timeout{10 * 60 * 1000};
  milliseconds probe_timeout{10000};  // EHLO probe that learns a server's SIZE limit
  std::size_t max_concurrent = 64;    // sends running at once on this node
  // Sends of one mailbox at once on this node: each holds an SMTP and, briefly, an IMAP
  // connection, and providers cap connections per account (Dovecot: 10 per user and IP).
  std::size_t max_per_mailbox = 3;
  std::string helo_name;  // EHLO name; empty: the host name
};

struct ToolOptions {
  milliseconds validate_timeout{15000};  // each step of a credential check
  std::size_t max_folders = 1000;        // folders listed with counts
};

struct ServiceOptions {
  SessionOptions session;
  FetchOptions fetch;
  OwnershipOptions ownership;
  std::optional<core::WebhookTarget> default_webhook;
  // Events go to a webhook (the default sink), so every mailbox needs one; false when the only
  // sink is a RabbitMQ exchange.
  bool webhook_sink = true;
  std::size_t fetch_concurrency = 64;  // tasks running at once in this process
  SendOptions send;
  ToolOptions tools;
};

}  // namespace el::service
