// IMAP client on one Transport: greeting, STARTTLS, CAPABILITY, login, SELECT/EXAMINE,
// UID SEARCH, UID FETCH BODY.PEEK[], IDLE/DONE, NOOP, LOGOUT.
// Not thread-safe: one coroutine uses a Client at a time, on the transport's executor.
// Every command has a deadline; failures throw imap::Error (see error.hpp for the kinds).
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/secret.hpp"
#include "imap/transport.hpp"

namespace el::imap {

struct ClientOptions {
  std::chrono::milliseconds command_timeout{30000};  // any tagged command
  std::chrono::milliseconds done_timeout{10000};     // DONE must be answered within this
  std::size_t max_literal = 64 * 1024 * 1024;        // larger literal: Error{protocol}
};

struct SelectInfo {
  std::uint32_t uidvalidity = 0;
  std::uint32_t uidnext = 0;  // 0 if the server did not say
  std::uint32_t exists = 0;
};

struct FetchedMessage {
  std::uint32_t uid = 0;
  std::vector<std::string> flags;  // as sent, e.g. "\\Seen"
  std::string internal_date;       // as sent: "17-Jul-1996 02:44:25 -0700"
  std::uint64_t size = 0;          // RFC822.SIZE
  std::string body;                // BODY[] literal
};

// One folder as LIST reports it.
struct FolderInfo {
  std::string name;                     // decoded from modified UTF-7 to UTF-8
  std::string delimiter;                // hierarchy delimiter ("/" or "."), empty if NIL
  std::vector<std::string> attributes;  // as sent, e.g. "\\HasNoChildren", "\\Sent", "\\Noselect"
  std::string special_use;  // RFC 6154 role among the attributes ("\\Sent"...), empty if none;
                            // INBOX has none
  bool selectable() const;  // no \Noselect / \NonExistent
};

// STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN); a value the server left out is 0.
struct StatusInfo {
  std::uint32_t messages = 0;
  std::uint32_t uidnext = 0;
  std::uint32_t uidvalidity = 0;
  std::uint32_t unseen = 0;
};

struct AppendResult {
  std::uint32_t uidvalidity = 0;  // from APPENDUID (UIDPLUS); 0 when the server did not say
  std::uint32_t uid = 0;
};

struct IdleResult {
  bool new_mail = false;     // EXISTS grew (or RECENT > 0) while idling
  bool expunged = false;     // EXPUNGE seen
  bool interrupted = false;  // interrupt() ended it
  // Folders an unsolicited STATUS named (NOTIFY, RFC 5465): they changed. Ends the IDLE.
  std::vector<std::string> notified;
  std::uint32_t exists = 0;
};

class Client {
 public:
  explicit Client(std::unique_ptr<Transport> transport, ClientOptions opts = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Reads the greeting (PREAUTH accepted), optionally runs STARTTLS (requires the capability,
  // else Error{tls}), then CAPABILITY. BYE greeting: Error{bye}.
  net::awaitable<void> start(bool starttls);
  bool has_capability(std::string_view cap) const;  // case-insensitive, e.g. "IDLE", "AUTH=PLAIN"
  const std::set<std::string>& capabilities() const { return caps_; }

  // AUTHENTICATE PLAIN (with SASL-IR when offered) if AUTH=PLAIN is advertised, else LOGIN.
  // A refusal throws Error{auth}. Refreshes capabilities if the server sends new ones.
  net::awaitable<void> login(std::string_view user, const core::Secret& password);
  // AUTHENTICATE XOAUTH2 (Google, Microsoft): "user=<u>^Aauth=Bearer <token>^A^A" as SASL-IR
  // when offered. A refusal (a "+" with the error JSON is answered with an empty line, then NO)
  // throws Error{auth} whose message includes the server's error status when it sent one.
  net::awaitable<void> login_xoauth2(std::string_view user, const core::Secret& access_token);
  // AUTHENTICATE OAUTHBEARER (RFC 7628): "n,a=<u>,^Ahost=<h>^Aport=<p>^Aauth=Bearer <t>^A^A".
  net::awaitable<void> login_oauthbearer(std::string_view user, std::string_view host,
                                         std::uint16_t port, const core::Secret& access_token);
  // ID (RFC 2971) when the server offers it; otherwise does nothing.
  net::awaitable<void> id(const std::vector<std::pair<std::string, std::string>>& fields);
  // SELECT, or EXAMINE when read_only. Folder names are quoted and modified-UTF-7 encoded.
  net::awaitable<SelectInfo> select(std::string_view folder, bool read_only);
  // LIST "" "*", with RETURN (SPECIAL-USE) when the server offers SPECIAL-USE (RFC 6154) and
  // LIST-EXTENDED, else XLIST-free plain LIST (attributes may then still carry the roles).
  net::awaitable<std::vector<FolderInfo>> list_folders();
  // NOTIFY SET (mailboxes (<folders>) (MessageNew MessageExpunge)) (RFC 5465): the server then
  // sends an unsolicited STATUS when one of them changes, which ends idle() (see
  // IdleResult::notified). Requires the NOTIFY capability, else Error{no}.
  net::awaitable<void> notify_set(const std::vector<std::string>& folders);
  // Folders named by unsolicited STATUS responses since the last call (or idle()).
  std::vector<std::string> take_notified();
  // STATUS <folder> (MESSAGES UIDNEXT UIDVALIDITY UNSEEN). A NO (no such folder): Error{no}.
  net::awaitable<StatusInfo> status(std::string_view folder);
  // APPEND <folder> (<flags>) <literal>: LITERAL+ / LITERAL- when offered (non-synchronizing),
  // else waits for the "+" continuation. NO: Error{no} (e.g. [TRYCREATE]).
  net::awaitable<AppendResult> append(std::string_view folder,
                                      const std::vector<std::string>& flags,
                                      std::string_view message);
  // UID SEARCH <criteria> (criteria passed verbatim, e.g. "UID 5:*", "SINCE 1-Feb-2024").
  net::awaitable<std::vector<std::uint32_t>> uid_search(std::string_view criteria);
  // UID FETCH <set> (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[...]); never sets \Seen.
  // what: the whole message (body = BODY[]), its header only (body = BODY[HEADER]), or no body
  // (UID, INTERNALDATE and RFC822.SIZE only; body empty). Messages come back in the order the
  // server sent them.
  enum class FetchBody { full, header, none };
  net::awaitable<std::vector<FetchedMessage>> uid_fetch(std::string_view uid_set,
                                                        FetchBody what = FetchBody::full);
  // IDLE until new mail, an expunge, interrupt(), or max_duration; then DONE and the tagged OK
  // within done_timeout (else Error{timeout}). Requires the IDLE capability.
  net::awaitable<IdleResult> idle(std::chrono::steady_clock::duration max_duration);
  // Ends a pending idle() early (interrupted = true). Call on the client's executor.
  void interrupt();
  // NOOP; answers within command_timeout or Error{timeout}. Returns true if EXISTS grew since
  // the last SELECT/IDLE/NOOP.
  net::awaitable<bool> noop();
  // LOGOUT, best effort: never throws.
  net::awaitable<void> logout();

  std::uint32_t exists() const { return exists_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::set<std::string> caps_;
  std::uint32_t exists_ = 0;
};

// INTERNALDATE "17-Jul-1996 02:44:25 -0700" -> time point; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_internal_date(std::string_view s);
// IMAP SEARCH date "1-Feb-2024" for a time point (UTC day).
std::string format_search_date(std::chrono::system_clock::time_point t);

}  // namespace el::imap
