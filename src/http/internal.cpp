// Small helpers behind the router: id syntax, constant-time token check, Prometheus text.
#include "http/internal.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <charconv>
#include <stdexcept>

namespace el::http::internal {

bool valid_mailbox_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {
using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view s) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != d.size()) {
    throw std::runtime_error("sha256 failed");
  }
  return d;
}
}  // namespace

bool token_matches(std::string_view presented, const std::vector<std::string>& tokens) {
  // Hashing first makes the comparison length-independent; CRYPTO_memcmp does not short-circuit.
  const Digest p = sha256(presented);
  bool any = false;
  for (const auto& t : tokens) {
    if (t.empty()) continue;  // an empty configured token must never match an empty header
    const Digest d = sha256(t);
    any |= CRYPTO_memcmp(p.data(), d.data(), d.size()) == 0;
  }
  return any;
}

namespace {
std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void counter(std::string& out, std::string_view name, std::string_view help,
             const std::atomic<std::uint64_t>& v) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " counter\n";
  out += name;
  out += ' ';
  out += std::to_string(v.load(std::memory_order_relaxed));
  out += '\n';
}
}  // namespace

std::string render_metrics(const metrics::Registry& r) {
  std::string out;
  out.reserve(4096);
  counter(out, "el_events_delivered_total", "Events the webhook accepted with a 2xx.",
          r.events_delivered);
  counter(out, "el_events_failed_total", "Delivery attempts that did not get a 2xx.",
          r.events_failed);
  counter(out, "el_events_dropped_total",
          "Events given up after all attempts (retried on a later pass).", r.events_dropped);
  counter(out, "el_imap_reconnects_total", "IMAP sessions re-established after a failure.",
          r.imap_reconnects);
  counter(out, "el_imap_auth_failures_total", "IMAP logins the server refused.",
          r.imap_auth_failures);
  counter(out, "el_fetch_bytes_total", "Message bytes fetched over IMAP.", r.fetch_bytes);
  counter(out, "el_messages_fetched_total", "Messages fetched over IMAP.", r.messages_fetched);
  counter(out, "el_tasks_published_total",
          "Fetch tasks this api node published to RabbitMQ (broker-confirmed).", r.tasks_published);
  counter(out, "el_tasks_run_locally_total",
          "Fetch tasks run on this node for lack of a worker (none, broker down, too slow).",
          r.tasks_run_locally);
  counter(out, "el_tasks_consumed_total", "Fetch tasks this worker ran and acknowledged.",
          r.tasks_consumed);
  counter(out, "el_tasks_dead_lettered_total", "Fetch tasks moved to the dead-letter queue.",
          r.tasks_dead_lettered);
  counter(out, "el_amqp_errors_total", "RabbitMQ connection or channel failures.", r.amqp_errors);
  counter(out, "el_events_published_total", "Events the RabbitMQ sink published (confirmed).",
          r.events_published);
  counter(out, "el_registry_errors_total", "Registry calls that failed (Redis unreachable).",
          r.registry_errors);
  counter(out, "el_ownership_claims_total", "Mailbox leases this node claimed.",
          r.ownership_claims);
  counter(out, "el_ownership_losses_total",
          "Mailbox leases this node lost (expired and taken, or removed).", r.ownership_losses);
  counter(out, "el_ownership_releases_total",
          "Mailbox leases this node handed back (rebalancing, shutdown).", r.ownership_releases);
  counter(out, "el_parse_errors_total", "Messages or responses that failed to parse.",
          r.parse_errors);

  // Registry buckets count each range separately; Prometheus wants cumulative counts. _count is
  // the +Inf total of the same reads, so the exposition stays self-consistent while writers race.
  const auto& h = r.webhook_latency;
  constexpr std::string_view name = "el_webhook_latency_seconds";
  out += "# HELP el_webhook_latency_seconds Time from sending a webhook request to its answer.\n";
  out += "# TYPE el_webhook_latency_seconds histogram\n";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i].load(std::memory_order_relaxed);
    out += name;
    out += "_bucket{le=\"";
    out += i < metrics::Histogram::kBounds.size() ? format_double(metrics::Histogram::kBounds[i])
                                                  : std::string("+Inf");
    out += "\"} ";
    out += std::to_string(cumulative);
    out += '\n';
  }
  out += name;
  out += "_sum ";
  out += format_double(static_cast<double>(h.sum_micros.load(std::memory_order_relaxed)) / 1e6);
  out += '\n';
  out += name;
  out += "_count ";
  out += std::to_string(cumulative);
  out += '\n';
  return out;
}

std::string truncate_utf8(std::string_view s, std::size_t max) {
  if (s.size() <= max) return std::string(s);
  std::size_t n = max;
  // Back up over continuation bytes (10xxxxxx) to the start of the sequence that did not fit.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

}  // namespace el::http::internal
